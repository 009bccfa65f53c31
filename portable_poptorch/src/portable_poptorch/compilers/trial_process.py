"""auto's trials in a process of their own, so the executors it drops leave nothing in the run's.

Compiling, running and dropping an executor leaves memory in the process that did it, whatever is
freed (resnet50 at batch 1 on the CPU: about 100 MB for ONNX Runtime, 150 for OpenVINO and 250 for
Inductor, benchmarks/RESULTS.md), so a run that timed four executors measured its calls with three
dropped ones' leftovers. On the CPU auto therefore compiles and times them in a child process and the
run compiles only the chosen one. The child is a fresh interpreter (not a fork: forking after torch's
OpenMP pool has run is unsafe) with the run's environment (allocator settings included), CPU affinity
and thread count, and the run waits idle meanwhile, so the child times what the run will see.

Where the model cannot be handed to another process (a class defined inside a function, a hook that
is a closure) or the child fails, the trials run in the run's own process and the log says why.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from .base import CompileContext, exception_summary

PAYLOAD = "payload.pt"
RESULT = "result.json"
CHILD_TIMEOUT_S = 3600.0   # compiling every executor of a large model on two cores takes minutes, not an hour
CONTEXT_FIELDS = ("threads", "cache_dir", "artefact_key", "compute_dtype", "streams")


@dataclasses.dataclass
class Outcome:
    """What the child chose and why, or why the trials could not run there (``problem``)."""

    executor: str = ""
    streams: int = 1
    reason: str = ""
    trials: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    problem: str = ""
    peak_rss_mb: Optional[float] = None   # the trial process's peak resident memory


def _child_environment(ctx: CompileContext) -> Dict[str, str]:
    """The run's environment, its import path (so the model's classes unpickle) and its thread count."""
    env = dict(os.environ)
    paths = [os.path.abspath(p or os.curdir) for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["OMP_NUM_THREADS"] = str(ctx.threads)
    return env


def _last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def run(model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext) -> Outcome:
    """Time every executor in a child process; raises ConfigError when none can compile the model."""
    with tempfile.TemporaryDirectory(prefix="portable_auto_") as folder:
        payload = os.path.join(folder, PAYLOAD)
        context = {name: getattr(ctx, name) for name in CONTEXT_FIELDS}
        try:
            torch.save({"model": model, "example": example, "context": context}, payload)
        except Exception as exc:   # pickling fails in many ways (local classes, lambdas, open handles)
            return Outcome(problem=f"the model cannot be passed to another process ({exception_summary(exc)})")
        log = os.path.join(folder, "child.log")
        command = [sys.executable, "-m", __name__, folder, str(os.getpid())]
        try:
            with open(log, "wb") as out:
                code = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      env=_child_environment(ctx), timeout=CHILD_TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            return Outcome(problem=f"the process timing them ran past {CHILD_TIMEOUT_S:.0f} s")
        except OSError as exc:
            return Outcome(problem=f"the process timing them could not start ({exc})")
        try:
            with open(os.path.join(folder, RESULT)) as f:
                result = json.load(f)
        except (OSError, ValueError):
            return Outcome(problem=f"the process timing them ended with exit code {code} ({_last_line(log)})")
    if "error" in result:
        raise ConfigError(result["error"])
    if "problem" in result:
        return Outcome(problem=result["problem"])
    return Outcome(result["executor"], int(result["streams"]), result["reason"], result["trials"],
                   peak_rss_mb=result.get("peak_rss_mb"))


def _peak_rss_mb() -> Optional[float]:
    """This process's peak resident memory (Linux reports KiB), or None where it cannot be read."""
    try:
        import resource
    except ImportError:
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _end_with_parent(parent: int) -> None:
    """Have Linux kill this process when the run does (killed by poprun or the user), rather than leave it
    compiling for nobody; where that cannot be asked for, the run's own end stops nothing."""
    try:
        import ctypes
        import signal
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:   # the run ended before the request took effect
        os._exit(1)


def _main(folder: str, parent: int) -> int:
    """The child: load the model, time every executor as auto does in-process, write the choice."""
    _end_with_parent(parent)
    from . import selection
    result: Dict[str, Any]
    try:
        payload = torch.load(os.path.join(folder, PAYLOAD), weights_only=False)
    except Exception as exc:   # a class the parent had that this interpreter cannot import
        result = {"problem": f"the model did not load in another process ({exception_summary(exc)})"}
    else:
        context = payload["context"]
        torch.set_num_threads(context["threads"])
        ctx = CompileContext(device=torch.device("cpu"), **context)
        try:
            name, streams, reason, trials = selection.time_executors(payload["model"], payload["example"], ctx)
            result = {"executor": name, "streams": streams, "reason": reason, "trials": trials}
        except ConfigError as exc:
            result = {"error": str(exc)}
    result["peak_rss_mb"] = _peak_rss_mb()
    tmp = os.path.join(folder, RESULT + ".tmp")
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, os.path.join(folder, RESULT))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1], int(sys.argv[2])))
