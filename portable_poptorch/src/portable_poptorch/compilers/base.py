"""What every step compiler provides: a callable running one micro-step, built before the first call.

PopTorch compiles a whole graph before the first call; here a *step compiler* turns the model's
forward into a callable that takes the micro-step's device tensors and returns torch tensors on the
same device. The inference executor wraps it with PopTorch's batch, output-mode and latency logic.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import re
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

Step = Callable[..., Any]

TEMPORARY_NAME = re.compile(r"\.tmp(\d+)(\.xml|\.bin)?$")
TEMPORARY_FOLDERS = ("", "onnxruntime", "openvino")
DEAD_WRITER_GRACE_SECONDS = 300.0
STALE_AFTER_SECONDS = 24 * 3600.0


class CompilerUnavailable(RuntimeError):
    """The compiler cannot run this model here (library missing, device or dtype unsupported)."""


@dataclasses.dataclass
class CompileContext:
    """Everything a compiler needs besides the model and the example inputs."""

    device: torch.device
    threads: int
    cache_dir: Optional[str] = None        # artefacts are written/reused here when set
    artefact_key: str = ""                 # model structure + weights + input shapes + versions
    compute_dtype: Optional[torch.dtype] = None   # autocast dtype (precision 16.32), None = off
    cuda_graphs: bool = False               # eager steps may be replayed from CUDA graphs
    streams: Optional[int] = None           # concurrent sub-batches per step; None = auto (timed)
    notes: List[str] = dataclasses.field(default_factory=list)

    def artefact_path(self, compiler: str, suffix: str) -> Optional[str]:
        """Where ``compiler`` keeps its artefact for this key, or None without a cache folder."""
        if not self.cache_dir:
            return None
        folder = os.path.join(self.cache_dir, compiler)
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, self.artefact_key + suffix)


class StepCompiler:
    """One way of running the micro-step: eager, Inductor, ONNX Runtime or OpenVINO."""

    name = ""
    supports_streams = False   # can split the micro-batch into concurrent sub-batches (streams.py)

    def static_outputs(self, ctx: CompileContext) -> bool:
        """True when the step returns buffers that the next call overwrites (callers clone them)."""
        return False

    def environment_problem(self, ctx: CompileContext) -> Optional[str]:
        """Why this compiler cannot run at all here (library missing, device unsupported), or None."""
        return None

    def model_problem(self, model: nn.Module, ctx: CompileContext) -> Optional[str]:
        """Why this compiler cannot run this model (e.g. its precision) here, or None."""
        return None

    def unavailable_reason(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext) -> Optional[str]:
        """Why this compiler cannot run ``model`` on ``ctx.device`` here, or None when it can."""
        return self.environment_problem(ctx) or self.model_problem(model, ctx)

    def compile(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext) -> Step:
        """A callable running one micro-step; may raise CompilerUnavailable."""
        raise NotImplementedError

    def compile_streams(self, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext,
                        counts: List[int]) -> Dict[int, Step]:
        """One step per stream count in ``counts``, sharing one export/conversion; a compiler without
        streams builds the single-stream step only."""
        return {1: self.compile(model, example, ctx)}


def import_problem(module: str) -> Optional[str]:
    """None when ``module`` imports; otherwise why, with the install command."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return f"{module} is not installed or does not import ({exc}); pip install {module}"
    return None


def exception_summary(exc: BaseException) -> str:
    """The exception's type and the first line of its message, for one sentence of the log."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def model_dtypes(model: nn.Module) -> set:
    """Floating dtypes of the model's parameters and buffers."""
    return {t.dtype for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()}


def float32_only(model: nn.Module, ctx: CompileContext, who: str) -> Optional[str]:
    """Runtimes fed an exported float32 graph cannot run half weights or autocast."""
    dtypes = model_dtypes(model) - {torch.float32}
    if dtypes:
        names = ", ".join(sorted(str(d).replace("torch.", "") for d in dtypes))
        return f"{who} runs float32 graphs here; this model holds {names} weights"
    if ctx.compute_dtype not in (None, torch.float32):
        return f"{who} cannot run autocast to {str(ctx.compute_dtype).replace('torch.', '')} (precision 16.32)"
    return None


@contextlib.contextmanager
def scoped_environ(values: Dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a compile and restore them afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def write_atomically(path: str, write: Callable[[str], None]) -> None:
    """Write through ``write(tmp_path)`` then rename, so a killed run never leaves a half artefact; an OS
    error (a full disk) names ``path``, the file the user knows, not the temporary."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:
        if error.filename in (None, tmp):
            raise OSError(error.errno, error.strerror or str(error), path) from error
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _pid_alive(pid: int) -> bool:
    """True when a process with this id runs on this host (or cannot be signalled: someone else's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid > 0
    return pid > 0


def remove_stale_temporaries(cache_dir: str, now: Optional[float] = None) -> List[str]:
    """Deletes the ``<artefact>.tmp<pid>`` files that killed writes left in the cache; returns their paths.

    A temporary is stale when its writer's pid is not alive here and it has not changed for
    ``DEAD_WRITER_GRACE_SECONDS`` (a writer on another host sharing the cache keeps its file fresh), or
    when it is older than ``STALE_AFTER_SECONDS`` whoever wrote it (a pid reused by another process).
    """
    now = time.time() if now is None else now
    removed: List[str] = []
    for sub in TEMPORARY_FOLDERS:
        folder = os.path.join(cache_dir, sub)
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            match = TEMPORARY_NAME.search(name)
            if not match:
                continue
            path = os.path.join(folder, name)
            try:
                age = now - os.lstat(path).st_mtime
                dead = not _pid_alive(int(match.group(1)))
                if age > STALE_AFTER_SECONDS or (dead and age > DEAD_WRITER_GRACE_SECONDS):
                    os.unlink(path)
                    removed.append(path)
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                continue
    return removed
