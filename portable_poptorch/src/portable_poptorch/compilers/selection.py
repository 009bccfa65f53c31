"""Pick and build the step compiler for a run: the one asked for, or for ``auto`` the fastest here.

``auto`` compiles every compiler that can run the model on this device and times each on the first
micro-batch, as cuDNN's benchmark mode times convolution algorithms, then keeps the fastest. With a
cache folder the choice is stored (``choices.json``) next to the artefacts and reused by later runs.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import statistics
import time
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from .base import CompileContext, CompilerUnavailable, Step, StepCompiler, write_atomically
from .eager import EagerCompiler
from .inductor import InductorCompiler
from .onnx_runtime import OnnxRuntimeCompiler
from .openvino_runtime import OpenVinoCompiler

COMPILERS: Dict[str, StepCompiler] = {c.name: c for c in (
    EagerCompiler(), InductorCompiler(), OnnxRuntimeCompiler(), OpenVinoCompiler())}
EXECUTORS = ("auto",) + tuple(COMPILERS)
CHOICES_FILE = "choices.json"
CONTENDER_RATIO = 1.6   # executors this much slower than the fastest first figure are not re-timed
RETIME_ROUNDS = 4


@dataclasses.dataclass
class Selection:
    """The compiled step and how it was chosen, for the log and results.json."""

    name: str
    step: Step
    static_outputs: bool
    reason: str
    trials: List[Dict[str, Any]]


def _time_step(step: Step, example: Tuple[Any, ...], device: torch.device, warmup_calls: int = 10,
               warmup_seconds: float = 0.1, min_calls: int = 3, min_seconds: float = 0.25,
               max_calls: int = 400) -> float:
    """Median seconds per call after a warm-up (up to ``warmup_calls`` or ``warmup_seconds``).

    The median over at least ``min_seconds`` rather than the best call: on a shared machine one lucky
    call says little about the rate a benchmark will see, and a runtime's first calls (allocations,
    thread-pool start) are slower than its steady state.
    """
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
    return statistics.median(times)


def _retime(steps: Dict[str, Step], example: Tuple[Any, ...], device: torch.device,
            first: Dict[str, float], rounds: int) -> Dict[str, float]:
    """Median of each step's figures over ``rounds`` more alternating rounds, its first figure included.

    Executors within a few percent of each other are told apart by timing them in turn: a burst of
    load from another process then lands on each of them rather than on whichever ran at that moment.
    """
    figures = {name: [first[name]] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            figures[name].append(_time_step(step, example, device, warmup_calls=1, warmup_seconds=0.0))
    return {name: statistics.median(values) for name, values in figures.items()}


def _load_choices(cache_dir: Optional[str]) -> Dict[str, Any]:
    if not cache_dir:
        return {}
    try:
        with open(os.path.join(cache_dir, CHOICES_FILE)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store_choice(cache_dir: Optional[str], key: str, entry: Dict[str, Any]) -> None:
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


def _compile(compiler: StepCompiler, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext) -> Tuple[Step, float]:
    start = time.perf_counter()
    step = compiler.compile(model, example, ctx)
    return step, time.perf_counter() - start


def select(requested: str, model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext,
           choice_key: str) -> Selection:
    """Build the step for ``requested`` (an executor name or 'auto')."""
    if requested not in EXECUTORS:
        raise ConfigError(f"Executor {requested!r} is not one of {', '.join(EXECUTORS)}.")
    if requested != "auto":
        return _explicit(requested, model, example, ctx)
    cached = _load_choices(ctx.cache_dir).get(choice_key)
    if cached and cached.get("executor") in COMPILERS:
        compiler = COMPILERS[cached["executor"]]
        if compiler.unavailable_reason(model, example, ctx) is None:
            step, seconds = _compile(compiler, model, example, ctx)
            reason = (f"auto chose {compiler.name}, the fastest when timed in an earlier run "
                      f"(choice cached in {ctx.cache_dir})")
            trials = [dict(t, cached=True) for t in cached.get("trials", [])]
            return Selection(compiler.name, step, compiler.static_outputs(ctx), reason, trials)
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
        step, seconds = _compile(fallback, model, example, ctx)
        return Selection("eager", step, fallback.static_outputs(ctx), f"{name} asked for but {why}; fell back to eager",
                         [{"executor": name, "status": "unavailable", "reason": why},
                          {"executor": "eager", "status": "compiled", "compile_s": round(seconds, 3)}])
    step, seconds = _compile(compiler, model, example, ctx)
    return Selection(name, step, compiler.static_outputs(ctx), f"asked for with --executor {name}",
                     [{"executor": name, "status": "compiled", "compile_s": round(seconds, 3)}])


def _auto(model: nn.Module, example: Tuple[Any, ...], ctx: CompileContext, choice_key: str) -> Selection:
    trials: List[Dict[str, Any]] = []
    steps: Dict[str, Step] = {}
    first: Dict[str, float] = {}
    for name, compiler in COMPILERS.items():
        why = compiler.unavailable_reason(model, example, ctx)
        if why:
            trials.append({"executor": name, "status": "unavailable", "reason": why})
            continue
        try:
            step, seconds = _compile(compiler, model, example, ctx)
            per_call = _time_step(step, example, ctx.device)
        except CompilerUnavailable as exc:
            trials.append({"executor": name, "status": "unavailable", "reason": str(exc)})
            continue
        except Exception as exc:  # a compiler that fails on this model is skipped, and said why
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            trials.append({"executor": name, "status": "failed", "reason": f"{type(exc).__name__}: {first_line}"})
            continue
        trials.append({"executor": name, "status": "timed", "compile_s": round(seconds, 3),
                       "ms_per_call_first": round(per_call * 1e3, 3)})
        first[name] = per_call
        steps[name] = step
        fastest = min(first.values())
        for slow in [n for n, t in first.items() if t > CONTENDER_RATIO * fastest and n in steps]:
            del steps[slow]   # far behind: frees its memory before the next compiler builds
        del step
        gc.collect()
    if not first:
        raise ConfigError("No executor could compile this model here: "
                          + "; ".join(f"{t['executor']}: {t.get('reason')}" for t in trials))
    timed = dict(first)
    if len(steps) > 1:
        timed.update(_retime(steps, example, ctx.device, first, RETIME_ROUNDS))
    for trial in trials:
        if trial["executor"] in timed:
            trial["ms_per_call"] = round(timed[trial["executor"]] * 1e3, 3)
    name = min((n for n in steps), key=lambda n: timed[n])
    step = steps[name]
    ranked = sorted((t for t in trials if t["status"] == "timed"), key=lambda t: t["ms_per_call"])
    listing = ", ".join(f"{t['executor']} {t['ms_per_call']:.2f} ms" for t in ranked)
    skipped = [f"{t['executor']} ({t['reason']})" for t in trials if t["status"] != "timed"]
    reason = f"auto chose {name}, the fastest on the first micro-batch: {listing}"
    if len(steps) > 1:
        reason += (f" (those within {CONTENDER_RATIO}x of the fastest: medians over {RETIME_ROUNDS} more "
                   "alternating rounds)")
    if skipped:
        reason += "; not tried: " + "; ".join(skipped)
    _store_choice(ctx.cache_dir, choice_key, {"executor": name, "trials": trials})
    return Selection(name, step, COMPILERS[name].static_outputs(ctx), reason, trials)
