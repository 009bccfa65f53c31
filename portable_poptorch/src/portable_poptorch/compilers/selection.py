"""Pick and build the step compiler for a run: the one asked for, or for ``auto`` the fastest here.

``auto`` compiles every compiler that can run the model on this device and times each on the first
micro-batch, as cuDNN's benchmark mode times convolution algorithms, then keeps the fastest. Executors
that can split the micro-batch into streams are timed with one stream and with one per thread unless
a stream count is asked for. On the CPU the trials run in a child process (``trial_process``) and
the run compiles only the chosen executor. With a cache folder the choice is stored (``choices.json``) next to the
artefacts and reused by later runs; without one it is remembered for the rest of the process, so
validating several checkpoints, or validating after every epoch, times the executors once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from .base import CompileContext, CompilerUnavailable, Step, StepCompiler, exception_summary, write_atomically
from .eager import EagerCompiler
from .inductor import InductorCompiler
from .onnx_runtime import OnnxRuntimeCompiler
from .openvino_runtime import OpenVinoCompiler
from .streams import candidate_counts, micro_batch
from . import trial_process

STANDARD_COMPILERS: Dict[str, StepCompiler] = {c.name: c for c in (
    EagerCompiler(), InductorCompiler(), OnnxRuntimeCompiler(), OpenVinoCompiler())}
COMPILERS: Dict[str, StepCompiler] = dict(STANDARD_COMPILERS)
EXECUTORS = ("auto",) + tuple(COMPILERS)
CHOICES_FILE = "choices.json"
CONTENDER_RATIO = 1.6   # executors this much slower than the fastest first figure are not re-timed
RETIME_ROUNDS = 8
PRUNE_AFTER_ROUNDS = 3
PRUNE_RATIO = 1.10         # re-timed executors this much slower than the best (paired) drop out after a few rounds
ROUND_MIN_S = 0.02         # each executor's share of a re-timing round
# A heavy model on a CPU calls for seconds: timing stops once these are spent (after at least one call or
# one round), so auto's cost stays a few calls per executor rather than tens.
FIRST_TIMING_MAX_S = 1.5
RETIME_BUDGET_S = 10.0
# Calls shorter than this get an untimed call before each re-timing figure, against an executor's first call
# after another's running below its steady state. That was measured for Inductor while its weights were not
# really frozen (203-235 ms against 176-184 in a row, resnet18 batch 16 on 2 cores: fresh mappings for its
# buffers); frozen, no executor's first call differs from the next by more than 2% (resnet18 and resnet50 at
# batch 16, benchmarks/RESULTS.md). Longer calls are timed without it, keeping auto to a few calls for a
# heavy model.
WARM_CALL_BELOW_S = 0.5
SETTLE_WINDOW_S = 0.005    # before each timing, wait in windows this long until IDLE_WINDOWS in a row pass with
IDLE_WINDOWS = 2           # the process idle (two: on a loaded machine a busy thread can miss one window),
SETTLE_MAX_S = 0.1         # at most this long,
IDLE_CPU_SHARE = 0.2       # idle meaning under this share of one core used by all of the process's threads
_REMEMBERED: Dict[str, Dict[str, Any]] = {}   # choices made in this process, by choice key


@dataclasses.dataclass
class Selection:
    """The compiled step and how it was chosen, for the log and results.json."""

    name: str
    step: Step
    static_outputs: bool
    reason: str
    trials: List[Dict[str, Any]]
    streams: int = 1
    compiled: List[str] = dataclasses.field(default_factory=list)   # executors compiled in this process
    trial_peak_rss_mb: Optional[float] = None   # peak resident memory of auto's trial process, where one ran


def _settle(max_s: float = SETTLE_MAX_S, window_s: float = SETTLE_WINDOW_S,
            cpu_clock: Callable[[], float] = time.process_time) -> float:
    """Wait until this process stops using the CPU (at most ``max_s``); returns the seconds waited.

    A runtime's thread pool keeps spinning on the cores for a while after its call has returned, and an
    executor timed then shares the cores with it: in one process, resnet18 at batch 16 on 2 cores,
    OpenVINO's call right after ONNX Runtime's took 181 ms against 159-161 ms after any other executor's
    (benchmarks/RESULTS.md). auto's re-timing alternates executors call by call, so without this wait
    whichever executor follows ONNX Runtime in a round is ranked behind its real speed."""
    start, idle = time.perf_counter(), 0
    while idle < IDLE_WINDOWS and time.perf_counter() - start < max_s:
        cpu = cpu_clock()
        time.sleep(window_s)
        idle = idle + 1 if cpu_clock() - cpu < IDLE_CPU_SHARE * window_s else 0
    return time.perf_counter() - start


def _time_step(step: Step, example: Tuple[Any, ...], device: torch.device, warmup_calls: int = 10,
               warmup_seconds: float = 0.1, min_calls: int = 3, min_seconds: float = 0.25,
               max_calls: int = 400) -> float:
    """Median seconds per call after a warm-up (up to ``warmup_calls`` or ``warmup_seconds``).

    The median over at least ``min_calls`` calls and ``min_seconds`` rather than the best call: on a
    shared machine one lucky call says little about the rate a benchmark will see, and a runtime's first
    calls (allocations, thread-pool start) are slower than its steady state. Calls so long that
    ``min_calls`` of them exceed FIRST_TIMING_MAX_S stop there: one such call already spans a burst of
    load that would sway a short one. Starts once the process is idle (``_settle``).
    """
    _settle()
    def call() -> float:
        start = time.perf_counter()
        step(*example)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start
    with torch.inference_mode():
        warm = 0.0
        for _ in range(warmup_calls):
            warm += call()
            if warm >= warmup_seconds:
                break
        times: List[float] = []
        while len(times) < max_calls and (len(times) < min_calls or sum(times) < min_seconds):
            times.append(call())
            if sum(times) >= FIRST_TIMING_MAX_S:
                break
    return statistics.median(times)


def _retime(steps: Dict[Any, Step], example: Tuple[Any, ...], device: torch.device,
            first: Dict[Any, float], max_rounds: int, budget_s: float) -> Tuple[Dict[Any, float], Dict[Any, float], int]:
    """Each step's median seconds per call over alternating rounds, its rank (median ratio to a reference
    step timed in the same rounds, in the reference's seconds), and the number of rounds: ``max_rounds``,
    or fewer (at least one) once ``budget_s`` seconds are spent.

    Executors within a few percent of each other are told apart by timing them in turn, the order
    reversed every round, and comparing each with the reference (the fastest first figure) round by
    round: a slow spell of the machine lasting longer than a round then slows both figures of a pair
    alike and cancels in their ratio, where it would shift a median of unpaired figures. Each figure
    spans at least ROUND_MIN_S (many calls of a fast model, one of a heavy one). After PRUNE_AFTER_ROUNDS
    those more than PRUNE_RATIO behind the best are no longer timed, leaving the budget to the close ones,
    and the rounds end when none is left beside the reference.
    """
    reference = min(steps, key=lambda k: first[k])
    figures: Dict[Any, List[float]] = {name: [] for name in steps}
    live = list(steps)
    start, rounds = time.perf_counter(), 0
    while rounds < max_rounds and (rounds == 0 or time.perf_counter() - start < budget_s):
        for name in (live if rounds % 2 == 0 else live[::-1]):
            warm = 1 if first[name] < WARM_CALL_BELOW_S else 0
            figures[name].append(_time_step(steps[name], example, device, warmup_calls=warm, warmup_seconds=0.0,
                                            min_calls=1, min_seconds=ROUND_MIN_S))
        rounds += 1
        if rounds >= PRUNE_AFTER_ROUNDS:
            ratios = _paired_ratios(figures, reference)
            best = min(ratios.values())
            live = [k for k in live if k == reference or ratios[k] <= PRUNE_RATIO * best]
            if len(live) == 1:
                break   # the reference is the only one left: nothing is close enough to need more rounds
    medians = {name: statistics.median(values) for name, values in figures.items()}
    ranks = {name: ratio * medians[reference] for name, ratio in _paired_ratios(figures, reference).items()}
    return medians, ranks, rounds


def _paired_ratios(figures: Dict[Any, List[float]], reference: Any) -> Dict[Any, float]:
    """Median over rounds of each step's figure over the reference's figure of the same round."""
    ref = figures[reference]
    return {name: statistics.median(v / r for v, r in zip(values, ref)) for name, values in figures.items()}


def _load_choices(cache_dir: Optional[str]) -> Dict[str, Any]:
    if not cache_dir:
        return {}
    try:
        with open(os.path.join(cache_dir, CHOICES_FILE)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def forget_choices() -> None:
    """Drop the choices remembered in this process, so the next auto selection times afresh."""
    _REMEMBERED.clear()


def earlier_choice(cache_dir: Optional[str], key: str) -> Tuple[Optional[Dict[str, Any]], str]:
    """auto's earlier choice for ``key`` and where it comes from, for the log: the cache folder's, else
    one made earlier in this process; (None, "") when neither has one."""
    cached = _load_choices(cache_dir).get(key)
    if isinstance(cached, dict):
        return cached, f"in an earlier run (choice cached in {cache_dir})"
    if key in _REMEMBERED:
        return _REMEMBERED[key], "earlier in this process"
    return None, ""


def _store_choice(cache_dir: Optional[str], key: str, entry: Dict[str, Any]) -> None:
    _REMEMBERED[key] = entry
    if not cache_dir:
        return
    os.makedirs(cache_dir, exist_ok=True)
    choices = _load_choices(cache_dir)
    choices[key] = entry
    path = os.path.join(cache_dir, CHOICES_FILE)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(choices, f, indent=1, sort_keys=True)
    write_atomically(path, write)


def label(name: str, streams: int) -> str:
    """How a contender is named in the log: the executor, and its stream count when above one."""
    return name if streams == 1 else f"{name} x{streams} streams"


def _compile(compiler: StepCompiler, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext,
             counts: Optional[List[int]] = None) -> Tuple[Dict[int, Step], float]:
    """The compiler's step for each stream count (one when it has no streams) and the seconds it took."""
    if counts is None:
        counts = candidate_counts(micro_batch(example), ctx.threads, ctx.streams)
    start = time.perf_counter()
    if compiler.supports_streams:
        built = compiler.compile_streams(model, example, ctx, counts)
    else:
        built = {1: compiler.compile(model, example, ctx)}
    unique: Dict[int, Step] = {}
    for n, step in sorted(built.items()):
        if all(step is not other for other in unique.values()):
            unique[n] = step
    return unique, time.perf_counter() - start


def select(requested: str, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext,
           choice_key: str) -> Selection:
    """Build the step for ``requested`` (an executor name or 'auto')."""
    if requested not in EXECUTORS:
        raise ConfigError(f"Executor {requested!r} is not one of {', '.join(EXECUTORS)}.")
    selection = _explicit(requested, model, example, ctx) if requested != "auto" else _chosen(model, example, ctx, choice_key)
    if ctx.streams is not None and selection.streams != ctx.streams:
        if not COMPILERS[selection.name].supports_streams:
            why = "it runs the micro-step as one stream (streams apply to onnxruntime and openvino)"
        else:
            why = (f"it runs {selection.streams}: the micro-batch of {micro_batch(example)} splits into at most "
                   "that many (equal parts for openvino)")
        ctx.notes.append(f"Executor streams {ctx.streams} asked for; {selection.name} {why}.")
    return selection


def _chosen(model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext, choice_key: str) -> Selection:
    """auto's choice: the one made earlier for this key when it can still be built, else timed now."""
    cached, where = earlier_choice(ctx.cache_dir, choice_key)
    if cached and cached.get("executor") in COMPILERS:
        compiler = COMPILERS[cached["executor"]]
        streams = int(cached.get("streams", 1))
        if compiler.unavailable_reason(model, example, ctx) is None:
            steps, _ = _compile(compiler, model, example, ctx, [streams])
            if streams in steps:
                reason = f"auto chose {label(compiler.name, streams)}, the fastest when timed {where}"
                trials = [dict(t, cached=True) for t in cached.get("trials", [])]
                return Selection(compiler.name, steps[streams], compiler.static_outputs(ctx), reason, trials, streams,
                                 [compiler.name])
    return _auto(model, example, ctx, choice_key)


def _explicit(name: str, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext) -> Selection:
    compiler = COMPILERS[name]
    problem = compiler.environment_problem(ctx)
    if problem:
        raise ConfigError(f"--executor {name} cannot run here: {problem}; use --executor auto or eager.")
    why = compiler.model_problem(model, ctx)
    if why:
        ctx.notes.append(f"--executor {name}: {why}; running eager instead.")
        fallback = COMPILERS["eager"]
        steps, seconds = _compile(fallback, model, example, ctx, [1])
        return Selection("eager", steps[1], fallback.static_outputs(ctx), f"{name} asked for but {why}; fell back to eager",
                         [{"executor": name, "status": "unavailable", "reason": why},
                          {"executor": "eager", "streams": 1, "status": "compiled", "compile_s": round(seconds, 3)}], 1, ["eager"])
    steps, seconds = _compile(compiler, model, example, ctx)
    if len(steps) == 1:
        streams, step = next(iter(steps.items()))
        return Selection(name, step, compiler.static_outputs(ctx), f"asked for with --executor {name}",
                         [{"executor": name, "streams": streams, "status": "compiled", "compile_s": round(seconds, 3)}],
                         streams, [name])
    trials = [{"executor": name, "streams": n, "status": "timed", "compile_s": round(seconds, 3)} for n in steps]
    first = {(name, n): _time_step(step, example, ctx.device) for n, step in steps.items()}
    (_, streams), why_streams = _decide({(name, n): s for n, s in steps.items()}, first, trials, example, ctx)
    return Selection(name, steps[streams], compiler.static_outputs(ctx),
                     f"asked for with --executor {name}; streams: {why_streams}", trials, streams, [name])


def _decide(steps: Dict[Tuple[str, int], Step], first: Dict[Tuple[str, int], float], trials: List[Dict[str, Any]],
            example: Tuple[Any, ...], ctx: CompileContext) -> Tuple[Tuple[str, int], str]:
    """The fastest of ``steps`` (keyed by executor and stream count) and why: near ties by their first
    figures are re-timed in alternating rounds and ranked by their ratios paired by round; every timed
    trial gets its figures."""
    timed = dict(first)
    rank = dict(first)
    rounds = 0
    if len(steps) > 1:
        retimed, ranks, rounds = _retime(steps, example, ctx.device, first, RETIME_ROUNDS, RETIME_BUDGET_S)
        timed.update(retimed)
        rank.update(ranks)   # re-timed steps rank by paired ratio; the rest by their first figure
    best = min(steps, key=lambda k: rank[k])
    for trial in trials:
        key = (trial["executor"], trial.get("streams", 1))
        if trial["status"] == "timed" and key in timed:
            trial["ms_per_call_first"] = round(first[key] * 1e3, 3)
            trial["ms_per_call"] = round(timed[key] * 1e3, 3)
        if rounds and key in steps:
            trial["paired_ratio_to_chosen"] = round(rank[key] / rank[best], 4)
    listing = ", ".join(f"{label(*k)} {timed[k] * 1e3:.2f} ms" + (f" ({rank[k] / rank[best]:.3f}x)" if k in steps and rounds else "")
                        for k in sorted(timed, key=rank.get))
    reason = f"{label(*best)}, the fastest on the first micro-batch: {listing}"
    if len(steps) > 1:
        reason += (f" (those within {CONTENDER_RATIO}x of the fastest: {rounds} more alternating round"
                   + ("s" if rounds > 1 else "") + ", each ranked by the median over the rounds of its time "
                   "over that of the fastest by first figure in the same round)")
    return best, reason


def _time_all(model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext
              ) -> Tuple[Tuple[str, int], str, List[Dict[str, Any]], Dict[Tuple[str, int], Step]]:
    """Compile and time every executor that can run the model here: the fastest (executor, streams),
    why, every trial, and the steps still held (the far slower ones are dropped as soon as timed)."""
    trials: List[Dict[str, Any]] = []
    steps: Dict[Tuple[str, int], Step] = {}
    first: Dict[Tuple[str, int], float] = {}
    for name, compiler in COMPILERS.items():
        why = compiler.unavailable_reason(model, example, ctx)
        if why:
            trials.append({"executor": name, "status": "unavailable", "reason": why})
            continue
        try:
            built, seconds = _compile(compiler, model, example, ctx)
            figures = {n: _time_step(step, example, ctx.device) for n, step in built.items()}
        except CompilerUnavailable as exc:
            trials.append({"executor": name, "status": "unavailable", "reason": str(exc)})
            continue
        except Exception as exc:  # a compiler that fails on this model is skipped, and said why
            trials.append({"executor": name, "status": "failed", "reason": exception_summary(exc)})
            continue
        for n, step in built.items():
            trials.append({"executor": name, "streams": n, "status": "timed", "compile_s": round(seconds, 3)})
            first[(name, n)] = figures[n]
            steps[(name, n)] = step
        fastest = min(first.values())
        for slow in [k for k, t in first.items() if t > CONTENDER_RATIO * fastest and k in steps]:
            del steps[slow]   # far behind: frees its memory before the next compiler builds
        del built
        gc.collect()
    if not first:
        raise ConfigError("No executor could compile this model here: "
                          + "; ".join(f"{t['executor']}: {t.get('reason')}" for t in trials))
    best, why = _decide(steps, first, trials, example, ctx)
    skipped = [f"{t['executor']} ({t['reason']})" for t in trials if t["status"] != "timed"]
    if skipped:
        why += "; not tried: " + "; ".join(skipped)
    return best, why, trials, steps


def time_executors(model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext
                   ) -> Tuple[str, int, str, List[Dict[str, Any]]]:
    """auto's trials without keeping a step: the chosen executor, its stream count, why, and every trial
    (what the trial process runs)."""
    (name, streams), why, trials, _ = _time_all(model, example, ctx)
    return name, streams, why, trials


def _trials_stay_here(ctx: CompileContext) -> bool:
    """True where auto times in the run's own process: off the CPU (a device's memory is not what the
    trials leave behind, and a CUDA context is costly to start twice), or with compilers other than the
    standard ones (substitutes installed in this process, as tests do)."""
    standard = {name: type(c) for name, c in STANDARD_COMPILERS.items()}
    return ctx.device.type != "cpu" or {name: type(c) for name, c in COMPILERS.items()} != standard


def _auto(model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext, choice_key: str) -> Selection:
    if not _trials_stay_here(ctx):
        with _artefact_folder(ctx) as shared:
            outcome = trial_process.run(model, example, shared)
            if not outcome.problem:
                return _compile_choice(outcome, model, example, shared, ctx, choice_key)
        ctx.notes.append(f"auto times the executors in this process: {outcome.problem}; the libraries of those it "
                         "drops keep part of their memory here.")
    (name, streams), why, trials, steps = _time_all(model, example, ctx)
    _store_choice(ctx.cache_dir, choice_key, {"executor": name, "streams": streams, "trials": trials})
    return Selection(name, steps[(name, streams)], COMPILERS[name].static_outputs(ctx), f"auto chose {why}", trials,
                     streams, sorted({t["executor"] for t in trials if t["status"] == "timed"}))


@contextlib.contextmanager
def _artefact_folder(ctx: CompileContext) -> Iterator[CompileContext]:
    """The context the trial process and the chosen executor's compile share: the run's own with a cache
    folder, else one with a temporary folder, so the run loads the chosen executor's artefact (an ONNX
    Runtime model, an OpenVINO IR, Inductor's graph) as a cached run would rather than export and
    convert again, which costs memory that stays (resnet50, batch 1, OpenVINO chosen: 1402 MB for the
    measured calls after converting again against 1347 MB after loading the child's IR, benchmarks/RESULTS.md)."""
    if ctx.cache_dir:
        yield ctx
        return
    with tempfile.TemporaryDirectory(prefix="portable_trials_") as folder:
        yield dataclasses.replace(ctx, cache_dir=folder, artefact_key="trial", notes=ctx.notes)


def _compile_choice(outcome: trial_process.Outcome, model: nn.Module, example: Tuple[Any, ...],
                    shared: CompileContext, ctx: CompileContext, choice_key: str) -> Selection:
    """The step of the executor the trial process chose, compiled here (from its artefacts), and its record."""
    compiler = COMPILERS[outcome.executor]
    steps, seconds = _compile(compiler, model, example, shared, [outcome.streams])
    streams = outcome.streams if outcome.streams in steps else min(steps)
    trials = [dict(t, process="trials") for t in outcome.trials]
    _store_choice(ctx.cache_dir, choice_key, {"executor": outcome.executor, "streams": streams, "trials": trials})
    reason = (f"auto chose {outcome.reason} (timed in a separate process, so the executors it dropped left "
              f"nothing in this one, which compiled {label(outcome.executor, streams)} only, in {seconds:.1f} s)")
    return Selection(outcome.executor, steps[streams], compiler.static_outputs(ctx), reason, trials, streams,
                     [outcome.executor], outcome.peak_rss_mb)
