"""auto's choice between executors of nearly the same speed survives a burst of load from elsewhere:
the contenders are re-timed in alternating rounds and far slower ones are dropped at once."""
import hashlib
import threading
import time

import torch
from torch import nn

from portable_poptorch.compilers import selection
from portable_poptorch.compilers.base import CompileContext, StepCompiler


class Sleeper(StepCompiler):
    """A fake executor whose calls take ``seconds``, the first ``disturbed_calls`` of them ``burst``."""

    def __init__(self, name: str, seconds: float, disturbed_calls: int = 0, burst: float = 0.0):
        self.name, self.seconds, self.disturbed_calls, self.burst = name, seconds, disturbed_calls, burst
        self.calls = 0
        self.compiled = 0

    def compile(self, model, example, ctx):
        self.compiled += 1

        def step(*args):
            self.calls += 1
            time.sleep(self.burst if self.calls <= self.disturbed_calls else self.seconds)
            return model(*args)
        return step


def choose(monkeypatch, *fakes: Sleeper) -> selection.Selection:
    monkeypatch.setattr(selection, "COMPILERS", {f.name: f for f in fakes})
    ctx = CompileContext(device=torch.device("cpu"), threads=1)
    return selection.select("auto", nn.Identity(), (torch.zeros(1),), ctx, "key")


def test_a_burst_during_the_first_timing_does_not_decide_a_near_tie(monkeypatch):
    steady = Sleeper("steady", 0.003)
    # truly faster, but the warm-up and first timing (about 60 calls) run during a burst of load
    disturbed = Sleeper("disturbed", 0.002, disturbed_calls=70, burst=0.0045)
    chosen = choose(monkeypatch, disturbed, steady)
    trials = {t["executor"]: t for t in chosen.trials}
    assert trials["disturbed"]["ms_per_call_first"] > trials["steady"]["ms_per_call_first"]
    assert chosen.name == "disturbed"
    assert trials["disturbed"]["ms_per_call"] < trials["steady"]["ms_per_call"]
    assert "alternating rounds" in chosen.reason


def test_a_far_slower_executor_is_dropped_without_re_timing(monkeypatch):
    fast, close, slow = Sleeper("fast", 0.002), Sleeper("close", 0.0024), Sleeper("slow", 0.008)
    chosen = choose(monkeypatch, slow, fast, close)
    trials = {t["executor"]: t for t in chosen.trials}
    assert chosen.name == "fast"
    assert trials["slow"]["ms_per_call"] == trials["slow"]["ms_per_call_first"]
    # "close" is 1.2x behind: after PRUNE_AFTER_ROUNDS rounds it drops out and the rounds end
    assert f"{selection.PRUNE_AFTER_ROUNDS} more alternating rounds," in chosen.reason
    # its warm-up and one timing of >= 0.25 s at 8 ms make about 42 calls; four more rounds would add ~130
    assert slow.calls < 80
    assert trials["close"]["ms_per_call"] > trials["fast"]["ms_per_call"]


def test_a_contender_clearly_behind_in_the_re_timing_drops_out_after_a_few_rounds(monkeypatch):
    fast, close, lagging = Sleeper("fast", 0.004), Sleeper("close", 0.0042), Sleeper("lagging", 0.0052)
    chosen = choose(monkeypatch, lagging, close, fast)
    trials = {t["executor"]: t for t in chosen.trials}
    assert chosen.name == "fast" and f"{selection.RETIME_ROUNDS} more alternating rounds," in chosen.reason
    # within CONTENDER_RATIO of the fastest, so re-timed, but PRUNE_RATIO behind: only the first rounds
    assert trials["lagging"]["paired_ratio_to_chosen"] > selection.PRUNE_RATIO
    assert 1.0 < trials["close"]["paired_ratio_to_chosen"] < selection.PRUNE_RATIO
    assert trials["fast"]["paired_ratio_to_chosen"] == 1.0
    assert lagging.calls < close.calls * 0.8


def test_a_choice_is_remembered_for_the_process_and_timed_afresh_for_another_key(monkeypatch):
    """Validating several checkpoints builds one inferenceModel each: the second has the same choice key
    (weights are not in it) and must not time every executor again."""
    fast, slow = Sleeper("fast", 0.002), Sleeper("slow", 0.006)
    first = choose(monkeypatch, slow, fast)
    calls = fast.calls + slow.calls
    second = choose(monkeypatch, slow, fast)
    assert first.name == second.name == "fast"
    assert "earlier in this process" in second.reason and "earlier" not in first.reason
    assert fast.calls + slow.calls == calls and fast.compiled == 2 and slow.compiled == 1
    assert all(t.get("cached") for t in second.trials) and len(second.trials) == len(first.trials)
    ctx = CompileContext(device=torch.device("cpu"), threads=1)
    other = selection.select("auto", nn.Identity(), (torch.zeros(1),), ctx, "another key")
    assert "earlier" not in other.reason and slow.compiled == 2
    selection.forget_choices()
    assert "earlier" not in choose(monkeypatch, slow, fast).reason


def test_the_cache_folder_choice_comes_before_the_remembered_one(monkeypatch, tmp_path):
    a, b = Sleeper("a", 0.002), Sleeper("b", 0.004)
    assert choose(monkeypatch, a, b).name == "a"
    (tmp_path / selection.CHOICES_FILE).write_text('{"key": {"executor": "b", "streams": 1, "trials": []}}')
    ctx = CompileContext(device=torch.device("cpu"), threads=1, cache_dir=str(tmp_path))
    chosen = selection.select("auto", nn.Identity(), (torch.zeros(1),), ctx, "key")
    assert chosen.name == "b" and str(tmp_path) in chosen.reason


def test_the_training_choice_is_remembered_for_the_process(monkeypatch):
    from portable_poptorch.compilers import training
    compiled = []
    monkeypatch.setattr(training, "_compile_now", lambda model, trial, ctx: compiled.append(model))
    monkeypatch.setattr(training, "uncompile", lambda model: None)
    monkeypatch.setattr(training.InductorCompiler, "environment_problem", lambda self, ctx: None)
    trials = []
    model = nn.Linear(2, 2)
    ctx = CompileContext(device=torch.device("cpu"), threads=1)
    first = training.select_training("auto", model, lambda: trials.append(1), ctx, "train-key")
    timed = len(trials)
    second = training.select_training("auto", model, lambda: trials.append(1), ctx, "train-key")
    assert timed >= 4 and len(trials) == timed
    assert second.name == first.name and "earlier in this process" in second.reason
    assert len(compiled) == (2 if first.name == "inductor" else 1)


def test_long_calls_are_timed_a_few_times_not_tens(monkeypatch):
    """A heavy model calls for seconds on a CPU: the first timing stops after FIRST_TIMING_MAX_S and the
    re-timing after RETIME_BUDGET_S (one round at least), so auto costs a few calls per executor."""
    monkeypatch.setattr(selection, "FIRST_TIMING_MAX_S", 0.5)
    monkeypatch.setattr(selection, "RETIME_BUDGET_S", 0.1)
    monkeypatch.setattr(selection, "WARM_CALL_BELOW_S", 0.25)
    a, b = Sleeper("a", 0.3), Sleeper("b", 0.33)
    chosen = choose(monkeypatch, a, b)
    # each: one warm-up call, two timed calls (0.6 s >= 0.5 s), one call in the single re-timing round
    # (no untimed call first: calls longer than WARM_CALL_BELOW_S are timed cold)
    assert a.calls == b.calls == 4
    assert chosen.name == "a" and "1 more alternating round," in chosen.reason


def test_short_calls_get_every_re_timing_round(monkeypatch):
    a, b = Sleeper("a", 0.002), Sleeper("b", 0.0021)
    chosen = choose(monkeypatch, a, b)
    assert f"{selection.RETIME_ROUNDS} more alternating rounds," in chosen.reason


class Spinning(StepCompiler):
    """A fake executor whose thread pool keeps a core busy for ``spin_s`` after each call returns, as ONNX
    Runtime's does (the burner hashes a large buffer, which releases the GIL, as a native pool would)."""

    def __init__(self, name: str, seconds: float, spin_s: float):
        self.name, self.seconds, self.spin_s = name, seconds, spin_s
        self.until = 0.0
        self.thread = None

    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def _burn(self):
        data = bytes(1 << 20)
        while time.perf_counter() < self.until:
            hashlib.sha256(data).digest()

    def compile(self, model, example, ctx):
        def step(*args):
            time.sleep(self.seconds)
            self.until = time.perf_counter() + self.spin_s
            if not self.busy():
                self.thread = threading.Thread(target=self._burn, daemon=True)
                self.thread.start()
            return model(*args)
        return step


class Crowded(StepCompiler):
    """A fake executor that is slower while another one's pool still occupies the cores."""

    def __init__(self, name: str, seconds: float, crowded_seconds: float, neighbour: Spinning):
        self.name, self.seconds, self.crowded_seconds, self.neighbour = name, seconds, crowded_seconds, neighbour

    def compile(self, model, example, ctx):
        def step(*args):
            time.sleep(self.crowded_seconds if self.neighbour.busy() else self.seconds)
            return model(*args)
        return step


def test_each_timing_waits_for_the_last_executors_spinning_pool(monkeypatch):
    """The faster executor wins although every call of the other leaves the cores busy for a while; timed
    without the wait it would not (so the test tells the two apart), and the wait ends once the process
    is idle, not after a fixed time."""
    def contenders():
        spinning = Spinning("spinning", 0.0026, spin_s=0.04)
        return spinning, Crowded("crowded", 0.002, crowded_seconds=0.0035, neighbour=spinning)
    selection.forget_choices()
    assert choose(monkeypatch, *contenders()).name == "crowded"
    selection.forget_choices()
    monkeypatch.setattr(selection, "_settle", lambda *a, **k: 0.0)
    assert choose(monkeypatch, *contenders()).name == "spinning"


def test_settle_waits_for_idle_windows_in_a_row_up_to_its_limit():
    """Busy windows (the process used the CPU while the wait slept) restart the count of idle ones."""
    def clock(busy_windows):
        used, reads = [0.0], [0]

        def read():   # two reads per window: the second of window k adds CPU time while k < busy_windows
            reads[0] += 1
            if reads[0] % 2 == 0 and reads[0] // 2 <= busy_windows:
                used[0] += 0.005
            return used[0]
        return read, reads
    read, reads = clock(busy_windows=0)
    selection._settle(max_s=1.0, window_s=0.001, cpu_clock=read)
    assert reads[0] == 2 * selection.IDLE_WINDOWS
    read, reads = clock(busy_windows=5)
    selection._settle(max_s=1.0, window_s=0.001, cpu_clock=read)
    assert reads[0] == 2 * (5 + selection.IDLE_WINDOWS)
    read, reads = clock(busy_windows=10 ** 6)
    waited = selection._settle(max_s=0.05, window_s=0.001, cpu_clock=read)
    assert 0.05 <= waited < 0.5
