"""What the inference and training executors share: the wrapped model, argument binding, inputs
made on the device, the chosen step compiler and the reporting interface."""
from __future__ import annotations

import contextlib
import inspect
import time
from typing import Any, ContextManager, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

from . import batching, compilers
from .device import device_name, partials_apply, partials_scope
from .errors import ConfigError
from .options import Options
from .reporting import ExecutorReporting


class ExecutorBase(ExecutorReporting):
    """Common state of a wrapped model; subclasses implement ``compile`` and ``__call__``."""

    def __init__(self, model: nn.Module, options: Optional[Options] = None) -> None:
        self._user_model = model
        self.options = options or Options()
        self.device = self.options.Portable.resolved_device()
        self._compiled = False
        self._n_stages = 1
        self._synthetic: Any = None
        self._latencies: List[float] = []
        self._log: List[str] = []
        self._compile_seconds = 0.0
        self._selection: Optional[compilers.Selection] = None
        self._rng_state: Optional[Tuple[torch.Tensor, List[torch.Tensor]]] = None

    def _device_scope(self) -> ContextManager[None]:
        """Process-wide settings the options ask for (RNG seed, partials type), set only while this
        model compiles or runs, as PopTorch scopes them to its model; nothing to enter when neither
        applies (the common case, on every call)."""
        partials = self.options.Precision.partials_type
        if self.options.random_seed is None and not partials_apply(partials, self.device):
            return contextlib.nullcontext()
        return self._scoped(partials)

    @contextlib.contextmanager
    def _scoped(self, partials: Optional[torch.dtype]) -> Iterator[None]:
        with partials_scope(partials, self.device), self._rng_scope():
            yield

    @contextlib.contextmanager
    def _rng_scope(self) -> Iterator[None]:
        seed = self.options.random_seed
        if seed is None:
            yield
            return
        cuda = self.device.type == "cuda" and torch.cuda.is_available()
        saved = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if cuda else [])
        if self._rng_state is None:
            torch.manual_seed(seed)
        else:
            torch.set_rng_state(self._rng_state[0])
            if cuda:
                torch.cuda.set_rng_state_all(self._rng_state[1])
        try:
            yield
        finally:
            self._rng_state = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if cuda else [])
            torch.set_rng_state(saved[0])
            if cuda:
                torch.cuda.set_rng_state_all(saved[1])

    def __getattr__(self, name: str) -> Any:
        user = self.__dict__.get("_user_model")
        if user is None:
            raise AttributeError(name)
        return getattr(user, name)

    def _bind(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[Any, ...]:
        """Positional arguments in the order of the model's forward, keyword arguments bound by name
        (defaults filled in), as PopTorch binds them when it traces the model."""
        if not kwargs:
            return tuple(args)
        try:
            bound = inspect.signature(self._user_model.forward).bind(*args, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"The model's forward does not accept these arguments: {exc}.") from None
        bound.apply_defaults()
        if bound.kwargs:
            raise ConfigError(f"Keyword-only forward arguments {sorted(bound.kwargs)} are not supported; "
                              "make them positional-or-keyword.")
        return tuple(bound.args)

    def _prepare(self, inputs: Any) -> Any:
        return batching.memory_format(inputs, self.options.Portable.channels_last)

    def _make_synthetic(self, example: Any, device: torch.device) -> Any:
        """Input created once on the device; never transferred again (enableSyntheticData)."""
        return self._prepare(batching.synthetic_like(example, device))

    def _compile_context(self, cuda_graphs: bool) -> compilers.CompileContext:
        """The compile context; with a cache folder, the temporaries of killed writes there are removed."""
        ctx = compilers.CompileContext(
            device=self.device, threads=torch.get_num_threads(), cache_dir=self.options.cache_dir(),
            compute_dtype=self.options.Portable.compute_dtype, cuda_graphs=cuda_graphs,
            streams=self.options.Portable.executor_streams)
        if ctx.cache_dir:
            removed = compilers.remove_stale_temporaries(ctx.cache_dir)
            if removed:
                ctx.notes.append(f"Removed {len(removed)} temporary file(s) left by killed writes in the "
                                 f"executable cache {ctx.cache_dir}.")
        return ctx

    def _select_step(self, model: nn.Module, example: Tuple[Any, ...], cuda_graphs: bool) -> compilers.Selection:
        """Compile the micro-step with the executor the options ask for; the time is kept apart."""
        start = time.perf_counter()
        ctx = self._compile_context(cuda_graphs)
        name = device_name(self.device)
        dtype = ctx.compute_dtype
        if ctx.cache_dir:
            ctx.artefact_key = compilers.artefact_key(model, example, name, ctx.threads, dtype)
        key = compilers.choice_key(model, example, name, ctx.threads, dtype, ctx.streams)
        selection = compilers.select(self.options.Portable.executor_name, model, example, ctx, key)
        self._log.extend(ctx.notes)
        self._selection = selection
        self._compile_seconds = time.perf_counter() - start
        return selection

    def isCompiled(self) -> bool:
        return self._compiled

    def setOptions(self, options: Options) -> None:
        self.options = options

    def compileSeconds(self) -> float:
        """Seconds the last compile took (portable extension; excluded from the figures)."""
        return self._compile_seconds

    def executorReport(self) -> Dict[str, Any]:
        """Which step compiler runs the model and why (portable extension, for the log and results)."""
        sel = self._selection
        return {"executor": sel.name if sel else None, "streams": sel.streams if sel else 1,
                "reason": sel.reason if sel else "",
                "trials": sel.trials if sel else [], "executors_compiled": sel.compiled if sel else [],
                "trial_process_max_rss_mb": sel.trial_peak_rss_mb if sel else None,
                "compile_s": round(self._compile_seconds, 3),
                "intra_op_threads": torch.get_num_threads()}
