"""The training step's compiler: the model's forward and backward through torch.compile, or eager.

Exported-graph runtimes (ONNX Runtime, OpenVINO) run inference graphs only. The model is compiled in
place (the instance's ``forward`` replaced by its ``torch.compile`` form), so replicas'
``functional_call`` and recomputation wrappers run the compiled forward too; AOTAutograd compiles the
matching backward. The optimiser step stays eager.
``auto`` times one forward+backward of each on the first micro-batch (weights, statistics and RNG
are restored afterwards) and keeps the faster, caching the choice like inference does.
"""
from __future__ import annotations

import copy
import time
from typing import Any, Callable, Dict, List

import torch
from torch import nn

from ..errors import ConfigError
from .base import CompileContext
from .inductor import InductorCompiler, cache_environment
from .selection import EXECUTORS, Selection, _store_choice, earlier_choice

TRAINING_EXECUTORS = ("eager", "inductor")
_EAGER_FORWARD = "_portable_eager_forward"


class CompiledForward:
    """The compiled ``forward`` set on a module instance.

    A deep copy of the module (``inferenceModel`` copies the user's model; users copy models for
    reference steps or weight averaging) gets a compiled forward of its own, bound to the copy: a plain
    ``torch.compile`` function would be shared as it is and keep running the original module, its
    weights and its train/eval mode.
    """

    def __init__(self, owner: nn.Module, eager: Callable[..., Any]) -> None:
        self._owner = owner
        self._eager = eager
        self._compiled = torch.compile(eager)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._compiled(*args, **kwargs)

    def __deepcopy__(self, memo: Dict[int, Any]) -> "CompiledForward":
        owner = memo.get(id(self._owner))
        if owner is None:   # copied apart from its module: still the original's forward
            return self
        return CompiledForward(owner, copy.deepcopy(self._eager, memo))


def compile_in_place(model: nn.Module) -> None:
    """Replace the model's ``forward`` on the instance with its compiled form, so every caller of
    ``model(...)`` (replicas' ``functional_call``, recomputation wrappers) runs the compiled graph; a model
    compiled already is left as it is."""
    if _EAGER_FORWARD in vars(model):
        return
    setattr(model, _EAGER_FORWARD, vars(model).get("forward"))
    model.forward = CompiledForward(model, model.forward)


def uncompile(model: nn.Module) -> None:
    """Back to the eager forward the model had before ``compile_in_place`` (the class's, or one the user
    set on the instance)."""
    if _EAGER_FORWARD not in vars(model):
        return
    eager = vars(model)[_EAGER_FORWARD]
    delattr(model, _EAGER_FORWARD)
    if eager is None:
        delattr(model, "forward")
    else:
        model.forward = eager


def _best_of(trial: Callable[[], None], calls: int = 2) -> float:
    times: List[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        trial()
        times.append(time.perf_counter() - start)
    return min(times)


def select_training(requested: str, model: nn.Module, trial: Callable[[], None], ctx: CompileContext,
                    choice_key: str) -> Selection:
    """Compile (or not) ``model`` for training; ``trial`` runs one forward+backward and leaves no trace."""
    if requested not in EXECUTORS:
        raise ConfigError(f"Executor {requested!r} is not one of {', '.join(EXECUTORS)}.")
    inductor = InductorCompiler()
    if requested not in ("auto",) + TRAINING_EXECUTORS:
        ctx.notes.append(f"--executor {requested} runs inference graphs only; the training step is chosen as auto "
                         "(eager or inductor).")
        requested = "auto"
    why = inductor.environment_problem(ctx)
    if requested == "eager" or (requested == "auto" and why):
        reason = "asked for with --executor eager" if requested == "eager" else f"auto: inductor unavailable ({why})"
        return Selection("eager", model, False, reason, [])
    if requested == "inductor":
        if why:
            raise ConfigError(f"--executor inductor cannot run here: {why}; use --executor auto or eager.")
        start = time.perf_counter()
        _compile_now(model, trial, ctx)
        return Selection("inductor", model, False, "asked for with --executor inductor",
                         [{"executor": "inductor", "status": "compiled", "compile_s": round(time.perf_counter() - start, 3)}])
    cached, where = earlier_choice(ctx.cache_dir, choice_key)
    if cached and cached.get("executor") in TRAINING_EXECUTORS:
        if cached["executor"] == "inductor":
            _compile_now(model, trial, ctx)
        return Selection(cached["executor"], model, False,
                         f"auto chose {cached['executor']}, the faster training step when timed {where}",
                         [dict(t, cached=True) for t in cached.get("trials", [])])
    trial()
    eager_s = _best_of(trial)
    start = time.perf_counter()
    _compile_now(model, trial, ctx)
    compile_s = time.perf_counter() - start
    inductor_s = _best_of(trial)
    trials = [{"executor": "eager", "status": "timed", "ms_per_call": round(eager_s * 1e3, 3)},
              {"executor": "inductor", "status": "timed", "compile_s": round(compile_s, 3),
               "ms_per_call": round(inductor_s * 1e3, 3)}]
    name = "inductor" if inductor_s < eager_s else "eager"
    if name == "eager":
        uncompile(model)
    _store_choice(ctx.cache_dir, choice_key, {"executor": name, "trials": trials})
    reason = (f"auto chose {name}, the faster forward+backward on the first micro-batch: "
              f"eager {eager_s * 1e3:.2f} ms, inductor {inductor_s * 1e3:.2f} ms")
    return Selection(name, model, False, reason, trials)


def _compile_now(model: nn.Module, trial: Callable[[], None], ctx: CompileContext) -> None:
    """Compile in place and run the trial once, so compilation happens now and not in measured steps."""
    compile_in_place(model)
    with cache_environment(ctx):
        trial()
