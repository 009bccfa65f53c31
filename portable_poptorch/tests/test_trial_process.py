"""auto on the CPU times the executors in a child process and the run compiles only the chosen one, so
the dropped executors' libraries never load in the run's process; where the model cannot go to another
process the trials run in this one, saying why."""
import fcntl
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

from portable_poptorch.compilers import trial_process
from portable_poptorch.compilers.base import CompileContext
from portable_poptorch.errors import ConfigError

RUNTIMES = ("onnxruntime", "openvino")


class Broken(nn.Module):
    """A model no executor can run: every trial fails."""

    def forward(self, x):
        raise RuntimeError("this model always fails")


def test_the_run_compiles_only_the_chosen_executor_and_imports_no_other_runtime(tmp_path):
    """Run in a fresh interpreter, so what it imported is what auto imported."""
    script = textwrap.dedent("""
        import json, sys, torch
        from torch import nn
        from portable_poptorch.compilers import selection
        from portable_poptorch.compilers.base import CompileContext
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(8, 4)).eval()
        example = (torch.randn(2, 3, 16, 16),)
        ctx = CompileContext(device=torch.device("cpu"), threads=1)
        chosen = selection.select("auto", model, example, ctx, "key")
        other = torch.randn(2, 3, 16, 16)
        with torch.no_grad():
            got, want, first = chosen.step(other), model(other), model(example[0])
        print(json.dumps({"name": chosen.name, "compiled": chosen.compiled, "trials": chosen.trials,
                          "notes": ctx.notes, "trial_mb": chosen.trial_peak_rss_mb, "imported": [m for m in %r if m in sys.modules],
                          "max_error": float((got - want).abs().max()),
                          "input_effect": float((want - first).abs().max())}))
    """ % (RUNTIMES,))
    env = {k: v for k, v in os.environ.items() if k != "POPTORCH_CACHE_DIR"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    timed = [t for t in result["trials"] if t["status"] == "timed"]
    assert len({t["executor"] for t in timed}) >= 2, result["trials"]
    assert all(t["process"] == "trials" for t in result["trials"])
    assert result["compiled"] == [result["name"]]
    assert result["notes"] == []
    assert result["trial_mb"] > 50   # the trial process's peak, torch and the runtimes included
    assert set(result["imported"]) <= {result["name"]}
    assert result["input_effect"] > 1e-3
    assert result["max_error"] < 1e-4


def test_a_model_that_cannot_be_pickled_is_said_so_without_starting_a_process():
    class Local(nn.Module):   # a class inside a function cannot be pickled by reference
        def forward(self, x):
            return x
    ctx = CompileContext(device=torch.device("cpu"), threads=1)
    outcome = trial_process.run(Local(), (torch.zeros(1),), ctx)
    assert outcome.problem.startswith("the model cannot be passed to another process (")
    assert "Local" in outcome.problem


def test_a_model_whose_class_the_child_cannot_import_is_said_so(tmp_path, monkeypatch):
    (tmp_path / "elsewhere_model.py").write_text("from torch import nn\nclass Elsewhere(nn.Identity):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import elsewhere_model
    model = elsewhere_model.Elsewhere()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    outcome = trial_process.run(model, (torch.zeros(1),), CompileContext(device=torch.device("cpu"), threads=1))
    assert outcome.problem.startswith("the model did not load in another process (ModuleNotFoundError")
    assert "elsewhere_model" in outcome.problem


def test_no_executor_compiling_the_model_is_the_same_usage_error_as_in_process(tmp_path):
    ctx = CompileContext(device=torch.device("cpu"), threads=1, cache_dir=str(tmp_path), artefact_key="k")
    with pytest.raises(ConfigError, match="^No executor could compile this model here: .*eager: RuntimeError: "
                                          "this model always fails"):
        trial_process.run(Broken(), (torch.zeros(2, 3),), ctx)


def test_the_child_runs_with_the_runs_threads_and_import_path():
    env = trial_process._child_environment(CompileContext(device=torch.device("cpu"), threads=3))
    assert env["OMP_NUM_THREADS"] == "3"
    assert os.path.dirname(os.path.abspath(__file__)) in env["PYTHONPATH"].split(os.pathsep)


def test_the_trial_process_ends_with_the_run(tmp_path):
    """A run killed while auto times (by poprun, or the user) leaves no process compiling for nobody. The
    stand-in trial process holds a lock on a file until it ends."""
    lock = tmp_path / "held"
    script = textwrap.dedent("""
        import os, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; "
                                  "from portable_poptorch.compilers import trial_process; "
                                  "trial_process._end_with_parent(os.getppid()); "
                                  "f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); "
                                  "print(os.getpid(), flush=True); time.sleep(60)", sys.argv[1]],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        print(child.stdout.readline().strip(), flush=True)
        os._exit(0)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(lock)], capture_output=True, text=True, timeout=60)
    pid = int(done.stdout.strip())
    with open(lock) as f:
        for _ in range(100):
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                time.sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("the trial process outlived the run")
