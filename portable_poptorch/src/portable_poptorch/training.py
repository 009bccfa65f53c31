"""``poptorch.trainingModel`` on CUDA/CPU.

One call trains on one host batch of ``micro-batch x deviceIterations x replicas x
gradientAccumulation`` samples, ordered ``[DI, GA, R, mb]``: each device iteration is one
optimiser step made of GA micro-steps, and in each micro-step every replica runs forward and
backward on its own micro-batch. Choices where PopTorch leaves room, all documented here:

- The model's forward returns the loss, or a tuple whose last element is the loss (PopTorch's
  ``return output, loss`` convention). The loss must be a scalar per micro-batch.
- Gradients are reduced over micro-steps and replicas per
  ``Training.accumulationAndReplicationReductionType``: Mean (default) averages them, Sum adds them.
- Replicas keep exact data-parallel maths: each replica's forward sees only its micro-batch, so
  batch-norm batch statistics are per replica. Each replica also keeps its own running statistics;
  the user's model holds replica 0's, which is what PopTorch copies back to the host.
  ``copyWeightsToDevice`` broadcasts the host's buffers to every replica again.
- The user's model is trained in place on the device: its parameters are the device weights, so
  reading its ``state_dict``/``parameters`` always gives the trained values (PopTorch's implicit
  ``copyWeightsToHost``) and the optimiser passed in holds the real state. ``detachFromDevice``
  moves model and optimiser state to the CPU; the next call (or ``attachToDevice``) moves them back.
- Learning rate, loss scaling and other hyperparameters are read from the optimiser at every call.
  ``setOptimizer`` copies another optimiser's hyperparameters into the bound one (state is kept);
  changing an attribute marked constant through ``variable_attrs`` raises ``ConfigError``.
- Pipelines (``BeginBlock``/``Block``) run stage k on device k (mod their count) of
  ``Options.Portable.devices``, by default every visible CUDA GPU (in order on one device);
  PopTorch's rule gradient accumulation >= 2 x stages - 1 is enforced.
- ``Options.Portable.autocast(dtype)`` runs forward under autocast (precision 16.32); a model
  converted with ``.half()`` trains in that dtype (16.16), with float32 master weights when the
  optimiser's ``accum_type`` is float32.
- ``Training.setAutomaticLossScaling(True)``: dynamic loss scaling (see ``loss_scaling.py``).
- Recomputation: see ``recompute.py``; requested with ``recomputationCheckpoint`` marks or
  ``_Popart.set("autoRecomputation", n)`` with n > 0.
- Several instances (processes joined through ``torch.distributed``, as poprun/popdist runs): the
  weights are broadcast from instance 0 at compile time and each step's gradients are all-reduced
  (averaged with Mean reduction, summed with Sum), so all instances' replicas form one data-parallel
  group as on IPUs.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.func import functional_call

from . import batching, compilers
from .compilers.training import select_training, uncompile
from .distributed_sync import all_reduce_gradients, broadcast_from_first, world_size
from .blocks import count_stages, record_runtime_blocks, static_stage_count, stop_recording_blocks
from .device import device_name, place_stages, preserved_state, stage_devices, synchronize
from .enums import ReductionType
from .errors import ConfigError
from .loss_scaling import AutoLossScaler, all_finite, clip_, unscale_
from .options import Options
from .executor_base import ExecutorBase
from .recompute import MarkProbe, unwrap_regions, wrap_regions
from .training_outputs import TrainingOutputs


def _loss_of(out: Any) -> torch.Tensor:
    """The loss: the output itself, or the last element of a tuple/list output."""
    loss = out[-1] if isinstance(out, (tuple, list)) and out else out
    if not isinstance(loss, torch.Tensor):
        raise ConfigError("The training model must return its loss, or a tuple whose last element is the loss; "
                          f"got {type(out).__name__}.")
    if loss.numel() != 1:
        raise ConfigError(f"The training model's loss must be a scalar per micro-batch, got shape {tuple(loss.shape)}; "
                          "reduce it, e.g. with identity_loss(loss, reduction='mean').")
    return loss.reshape(())


def _attr_values(optimizer: torch.optim.Optimizer, names: List[str]) -> Dict[str, Any]:
    values: Dict[str, Any] = {}
    for name in names:
        if hasattr(optimizer, name) and not any(name in g for g in optimizer.param_groups):
            values[name] = getattr(optimizer, name)
        else:
            values[name] = [g.get(name) for g in optimizer.param_groups]
    return values


class TrainingExecutor(ExecutorBase):
    """Wraps a model whose forward returns ``(output, loss)``; each call trains on one host batch."""

    def __init__(self, model: nn.Module, options: Optional[Options] = None,
                 optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        super().__init__(model, options)
        if optimizer is None:
            from .optim import SGD
            optimizer = SGD(model.parameters(), lr=0.01)
        self.optimizer = optimizer
        self._attached = False
        self._replica_buffers: List[Dict[str, torch.Tensor]] = []
        self._regions: List[nn.Module] = []
        self._constants: Dict[str, Any] = {}
        self._als = AutoLossScaler()
        model.train()

    def __repr__(self) -> str:
        return f"TrainingExecutor({self._user_model!r})"

    # ----------------------------------------------------------------- placement
    def _attach(self) -> None:
        model = self._user_model
        self._n_stages = max(self._n_stages, static_stage_count(model))
        place_stages(model, stage_devices(self.device, self._n_stages, self.options.Portable.device_list))
        if self.options.Portable.channels_last:
            model.to(memory_format=torch.channels_last)
        self._move_optimizer_state()
        buffers = dict(model.named_buffers())
        replicas = self.options.replication_factor
        if not self._replica_buffers:
            self._replica_buffers = [{n: b.detach().clone() for n, b in buffers.items()} for _ in range(replicas - 1)]
        else:
            self._replica_buffers = [{n: b.to(buffers[n].device) for n, b in rb.items()} for rb in self._replica_buffers]
        self._attached = True

    def _move_optimizer_state(self) -> None:
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                state = self.optimizer.state.get(p)
                for key, value in (state or {}).items():
                    if torch.is_tensor(value) and value.dim() > 0 and value.device != p.device:
                        state[key] = value.to(p.device)

    def attachToDevice(self) -> None:
        if not self._attached:
            self._attach()

    def detachFromDevice(self) -> None:
        """Release the accelerator: model, replica buffers and optimiser state move to the CPU."""
        if self._attached and self.device.type != "cpu":
            self._user_model.to("cpu")
            self._move_optimizer_state()
            self._replica_buffers = [{n: b.cpu() for n, b in rb.items()} for rb in self._replica_buffers]
            torch.cuda.empty_cache()
        self._attached = False

    def isAttachedToDevice(self) -> bool:
        return self._attached

    def copyWeightsToHost(self) -> None:
        """No-op: the host model is the device model (see the module docstring)."""
        return None

    def copyWeightsToDevice(self) -> None:
        """Broadcast the host model's buffers to every replica, as PopTorch does with all weights."""
        buffers = dict(self._user_model.named_buffers())
        with torch.no_grad():
            for rb in self._replica_buffers:
                for name, value in rb.items():
                    value.copy_(buffers[name])

    def destroy(self) -> None:
        uncompile(self._user_model)
        unwrap_regions(self._regions)
        self._regions = []
        self.detachFromDevice()
        self._compiled = False

    # ----------------------------------------------------------------- compilation
    def _micro_batch(self, args: Tuple[Any, ...]) -> int:
        di, ga, r = self.options.device_iterations, self.options.Training.gradient_accumulation, self.options.replication_factor
        return batching.steps_per_call(
            args, {}, di * ga * r,
            f"device iterations ({di}) x gradient accumulation ({ga}) x replicas ({r}) micro-batches")

    def _autocast(self) -> Any:
        dtype = self.options.Portable.compute_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _recompute_requested(self) -> bool:
        return bool(self.options._Popart.values.get("autoRecomputation", 0))

    def compile(self, *args: Any, **kwargs: Any) -> None:
        with self._device_scope():
            self._compile(*args, **kwargs)

    def _compile(self, *args: Any, **kwargs: Any) -> None:
        """Place the model, check PopTorch's rules and set up recomputation; weights are not changed.

        A probe forward on the first micro-batch finds runtime ``Block``s and recomputation marks;
        buffers and RNG state are restored afterwards so the probe leaves no trace.
        """
        args = self._bind(args, kwargs)
        micro = self._micro_batch(args)
        if not self._attached:
            self._attach()
        example = self._prepare(batching.to_device(batching.slice_step(args, 0, micro), self._input_device(), False))
        names = self._probe(example)
        ga = self.options.Training.gradient_accumulation
        if self._n_stages > 1 and ga < 2 * self._n_stages - 1:
            raise ConfigError(
                f"The model has {self._n_stages} pipeline stages but gradient accumulation is {ga}; pipelined "
                f"training needs gradient accumulation >= 2 x stages - 1 ({2 * self._n_stages - 1}).")
        if not names and self._recompute_requested():
            names = [""]
        self._regions += wrap_regions(self._user_model, names)
        if world_size() > 1:
            broadcast_from_first(list(self._user_model.parameters()) + list(self._user_model.buffers()))
        if self.options.synthetic_data:
            self._synthetic = self._make_synthetic(example, self._input_device())
        self._compile_step(example)
        if getattr(self.optimizer, "variable_attrs", None) is not None:
            self._constants = _attr_values(self.optimizer, self.optimizer.variable_attrs.constants())
        synchronize(self.device)
        self._compiled = True

    def _input_device(self) -> torch.device:
        first = next(self._user_model.parameters(), None)
        return first.device if first is not None else self.device

    def _compile_step(self, example: Tuple[Any, ...]) -> None:
        """Compile forward and backward as the options ask; the trial step leaves no trace."""
        model = self._user_model
        start = time.perf_counter()

        def trial() -> None:
            with preserved_state(model, self.device):
                (_loss_of(self._forward(0, example)) * 0.0).backward()
                for p in model.parameters():
                    p.grad = None
            synchronize(self.device)
        ctx = self._compile_context(cuda_graphs=False)
        key = "train-" + compilers.choice_key(model, example, device_name(self.device), ctx.threads, ctx.compute_dtype)
        self._selection = select_training(self.options.Portable.executor_name, model, trial, ctx, key)
        self._log.extend(ctx.notes)
        self._compile_seconds = time.perf_counter() - start

    def _probe(self, example: Tuple[Any, ...]) -> List[str]:
        model = self._user_model
        runtime = record_runtime_blocks()
        try:
            with preserved_state(model, self.device), torch.no_grad(), MarkProbe(model) as probe, self._autocast():
                model.train()
                model(*example)
        finally:
            stop_recording_blocks()
        if runtime:
            self._n_stages = max(self._n_stages, count_stages(runtime))
        names, unmatched = probe.marked_modules()
        if unmatched:
            self._log.append(f"{unmatched} recomputation checkpoint(s) were not on a module's output and are ignored.")
        return names

    # ----------------------------------------------------------------- execution
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._device_scope():
            return self._run(*args, **kwargs)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        args = self._bind(args, kwargs)
        micro = self._micro_batch(args)
        if not self._compiled:
            self._compile(*args)
        elif not self._attached:
            self._attach()
        model = self._user_model
        if not model.training:
            model.train()
        di, ga, r = self.options.device_iterations, self.options.Training.gradient_accumulation, self.options.replication_factor
        mean = self.options.Training.reduction_type == ReductionType.Mean
        outputs = TrainingOutputs(self.options.output_mode, self.options.output_return_period, di, ga, r)
        params = self._model_params()
        cuda = self.device.type == "cuda"
        t0 = time.perf_counter()
        if self.options.synthetic_data:
            dev_args = None
        else:
            dev_args = self._prepare(batching.to_device(args, self._input_device(), non_blocking=cuda))
        marks: List[Any] = []
        for d in range(di):
            scale = float(getattr(self.optimizer, "loss_scaling", None) or 1.0)
            factor = scale / (ga * r) if mean else scale
            self.optimizer.zero_grad(set_to_none=True)
            for g in range(ga):
                for k in range(r):
                    chunk = self._synthetic if dev_args is None else batching.slice_step(dev_args, (d * ga + g) * r + k, micro)
                    out = self._forward(k, chunk)
                    (_loss_of(out) * factor).backward()
                    outputs.add(d, g, k, out)
            self._apply_step(params, scale)
            marks.append(self._mark(cuda, t0))
        result = outputs.result()
        if not self.options.synthetic_data:
            result = batching.to_host(result)
        self._latencies = self._elapsed(marks, cuda, t0)
        return result

    def _model_params(self) -> List[torch.Tensor]:
        getter = getattr(self.optimizer, "portable_model_params", None)
        if getter is not None:
            return getter()
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _forward(self, replica: int, chunk: Tuple[Any, ...]) -> Any:
        with self._autocast():
            if replica == 0 or not self._replica_buffers or not self._replica_buffers[replica - 1]:
                return self._user_model(*chunk)
            return functional_call(self._user_model, self._replica_buffers[replica - 1], tuple(chunk))

    def _apply_step(self, params: List[torch.Tensor], scale: float) -> None:
        """Remove the loss scaling, apply automatic loss scaling and clipping, then step."""
        unscale_(params, scale)
        if world_size() > 1:
            all_reduce_gradients(params, mean=self.options.Training.reduction_type == ReductionType.Mean)
        if self.options.Training.automatic_loss_scaling:
            if not self._als.update(self.optimizer, all_finite(params)):
                self._log.append("Automatic loss scaling skipped a step with non-finite gradients.")
                return
        max_norm = getattr(self.optimizer, "max_grad_norm", None)
        if max_norm is not None and max_norm != float("inf"):
            clip_(params, max_norm)
        self.optimizer.step()

    @staticmethod
    def _mark(cuda: bool, t0: float) -> Any:
        if not cuda:
            return time.perf_counter() - t0
        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def _elapsed(self, marks: List[Any], cuda: bool, t0: float) -> List[float]:
        if not cuda:
            return list(marks)
        synchronize(self.device)
        total = time.perf_counter() - t0
        last = marks[-1]
        return [total - ev.elapsed_time(last) / 1000.0 for ev in marks]

    # ----------------------------------------------------------------- optimiser
    def setOptimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Use ``optimizer``'s hyperparameters from the next call on; optimiser state is kept."""
        bound = self.optimizer
        for name, before in self._constants.items():
            after = _attr_values(optimizer, [name])[name]
            if after != before:
                raise ConfigError(
                    f"Optimizer attribute {name!r} is marked constant and cannot change from {before} to {after}; "
                    f"call variable_attrs.markAsVariable({name!r}) before compiling to change it.")
        if optimizer is bound:
            return
        if len(optimizer.param_groups) != len(bound.param_groups):
            raise ConfigError(f"setOptimizer got {len(optimizer.param_groups)} parameter groups but the model was "
                              f"compiled with {len(bound.param_groups)}; the group structure must stay the same.")
        for new, cur in zip(optimizer.param_groups, bound.param_groups):
            for key, value in new.items():
                if key != "params":
                    cur[key] = value
        for attr in ("loss_scaling", "max_grad_norm"):
            if hasattr(optimizer, attr):
                setattr(bound, attr, getattr(optimizer, attr))


def trainingModel(model: nn.Module, options: Optional[Options] = None,
                  optimizer: Optional[torch.optim.Optimizer] = None) -> TrainingExecutor:
    """PopTorch's entry point: wrap ``model`` (forward returns ``(output, loss)``) for training."""
    return TrainingExecutor(model, options, optimizer)
