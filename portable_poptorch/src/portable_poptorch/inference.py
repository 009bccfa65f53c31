"""``poptorch.inferenceModel`` on CUDA/CPU with PopTorch's batch, output-mode and latency semantics."""
from __future__ import annotations

import contextlib
import copy
import time
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import nn

from . import batching
from .blocks import count_stages, record_runtime_blocks, static_stage_count, stop_recording_blocks
from .device import cudnn_benchmark, place_stages, stage_devices, synchronize
from .enums import OutputMode
from .errors import ConfigError
from .options import Options
from .executor_base import ExecutorBase


RUNTIMES_HOLDING_WEIGHTS = ("onnxruntime", "openvino")   # their steps run no torch operator


class InferenceExecutor(ExecutorBase):
    """Wraps a model; each call runs ``deviceIterations`` micro-steps over one host batch.

    The micro-step is compiled before the first call by the step compiler the options name (see
    ``compilers``); ``auto`` times the available ones on the first micro-batch and keeps the fastest.
    """

    def __init__(self, model: nn.Module, options: Optional[Options] = None) -> None:
        super().__init__(model, options)
        self._device_model: Optional[nn.Module] = None
        self._step: Optional[Callable[..., Any]] = None
        self._static_outputs = False
        self._runtime_holds_weights = False
        self._input_shapes: tuple = ()

    @property
    def output_mode(self) -> OutputMode:
        mode = self.options.output_mode
        return OutputMode.All if mode == OutputMode.Default else mode

    def _attach(self) -> None:
        model = copy.deepcopy(self._user_model).eval()
        self._n_stages = static_stage_count(model)
        place_stages(model, stage_devices(self.device, self._n_stages, self.options.Portable.device_list))
        if self.options.Portable.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._device_model = model

    def _check_stages(self, example: Tuple[Any, ...]) -> None:
        """PopTorch needs at least one device iteration per pipeline stage in inference."""
        runtime = record_runtime_blocks()
        try:
            with torch.inference_mode(), self._autocast():
                self._device_model(*example)
        finally:
            stop_recording_blocks()
        if runtime:
            self._n_stages = max(self._n_stages, count_stages(runtime))
        di = self.options.device_iterations
        if self._n_stages > 1 and di < self._n_stages:
            raise ConfigError(
                f"The model has {self._n_stages} pipeline stages but device iterations is {di}; "
                f"inference needs device iterations >= number of stages ({self._n_stages}).")

    def _autocast(self) -> Any:
        dtype = self.options.Portable.compute_dtype
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def compile(self, *args: Any, **kwargs: Any) -> None:
        with self._device_scope():
            self._compile(*args, **kwargs)

    def _compile(self, *args: Any, **kwargs: Any) -> None:
        """Place the model on the device, check PopTorch's rules and compile the micro-step."""
        args = self._bind(args, kwargs)
        per_step = self._per_step(args)
        if self._device_model is None:
            self._attach()
        self._input_shapes = batching.input_shapes(args)
        example = self._prepare(batching.to_device(batching.slice_step(args, 0, per_step), self.device, False))
        self._check_stages(example)
        if self.options.synthetic_data:
            self._synthetic = self._make_synthetic(batching.slice_step(args, 0, per_step), self.device)
        cuda_graphs = self.device.type == "cuda" and self.options.Portable.cuda_graphs and self._n_stages == 1
        with cudnn_benchmark(self.device):
            selection = self._select_step(self._device_model, example, cuda_graphs)
        self._step = selection.step
        self._static_outputs = selection.static_outputs
        self._runtime_holds_weights = selection.name in RUNTIMES_HOLDING_WEIGHTS
        if selection.name != "eager":
            # A compiled step holds what it runs (a runtime's or Inductor's channels-last copy of the weights,
            # or the model itself): keep no second copy here; a later compile attaches afresh
            self._device_model = None
        synchronize(self.device)
        self._compiled = True

    def _recompile_for(self, args: Tuple[Any, ...]) -> None:
        """A step compiled for fixed shapes (as PopTorch's executable is) is compiled again, saying so,
        when a call brings other input shapes, rather than feeding them to the old executable."""
        old = [tuple(shape) for shape, _ in self._input_shapes]
        new = [tuple(shape) for shape, _ in batching.input_shapes(args)]
        self._log.append(f"Input shapes changed from {old} to {new}; the model is compiled again for them.")
        self._step, self._compiled = None, False
        self._compile(*args)

    def _per_step(self, args: Tuple[Any, ...]) -> int:
        """Samples per device step: one micro-batch for each replica."""
        di, r = self.options.device_iterations, self.options.replication_factor
        micro = batching.steps_per_call(
            args, {}, di * r, f"device iterations ({di}) x replicas ({r}) micro-batches")
        return micro * r

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._device_scope():
            return self._run(*args, **kwargs)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        args = self._bind(args, kwargs)
        steps = self.options.device_iterations
        per_step = self._per_step(args)
        if not self._compiled:
            self._compile(*args)
        elif batching.input_shapes(args) != self._input_shapes:
            self._recompile_for(args)
        # One micro-step whose output is returned as it is needs no collector (most benchmark calls)
        single = steps == 1 and not self._static_outputs and self.output_mode in (OutputMode.All, OutputMode.Final)
        collector = None if single else batching.OutputCollector(self.output_mode, self.options.output_return_period, steps)
        cuda = self.device.type == "cuda"
        step_fn = self._step
        t0 = time.perf_counter()
        if cuda:
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            step_events = []
        step_times: List[float] = []
        # a runtime holding its own weights runs no torch operator that autograd would record
        with contextlib.nullcontext() if self._runtime_holds_weights else torch.inference_mode():
            if self.options.synthetic_data:
                chunks: Any = None
            elif cuda and self.options.TensorLocations.num_io_tiles > 0:
                chunks = self._overlapped_chunks(args, per_step, steps)
            else:
                dev_args = self._prepare(batching.to_device(args, self.device, non_blocking=cuda))
                chunks = (batching.slice_step(dev_args, i, per_step) for i in range(steps))
            for i in range(steps):
                step_in = self._synthetic if chunks is None else next(chunks)
                out = step_fn(*step_in)
                if collector is not None:
                    collector.add(i, out, clone=self._static_outputs)
                if cuda:
                    ev = torch.cuda.Event(enable_timing=True)
                    ev.record()
                    step_events.append(ev)
                else:
                    step_times.append(time.perf_counter() - t0)
            result = out if collector is None else collector.result()
            if not self.options.synthetic_data:
                result = batching.to_host(result)
        if cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            copy_back = step_events[-1].elapsed_time(end) / 1000.0
            step_times = [start.elapsed_time(ev) / 1000.0 + copy_back for ev in step_events]
        self._latencies = step_times
        return result

    def _overlapped_chunks(self, args: Any, per_step: int, steps: int) -> Any:
        """Copy micro-batch i+1 on a side stream while micro-batch i computes (IO tiles)."""
        copy_stream = torch.cuda.Stream()
        compute = torch.cuda.current_stream()

        def issue(i: int) -> Tuple[Any, torch.cuda.Event]:
            with torch.cuda.stream(copy_stream):
                chunk = batching.to_device(batching.slice_step(args, i, per_step), self.device, True)
                ev = torch.cuda.Event()
                ev.record(copy_stream)
            return chunk, ev
        pending = issue(0)
        for i in range(steps):
            chunk, ev = pending
            compute.wait_event(ev)
            for t in batching.iter_leaves(chunk):
                t.record_stream(compute)
            if i + 1 < steps:
                pending = issue(i + 1)
            yield self._prepare(chunk)

    def copyWeightsToDevice(self) -> None:
        """Refresh the device copy from the host model's weights; compiled steps hold the weights
        frozen in, so the next call compiles again (from the cache when one is set)."""
        if self.isAttachedToDevice():
            self._device_model, self._step, self._compiled = None, None, False

    def copyWeightsToHost(self) -> None:
        return None

    def detachFromDevice(self) -> None:
        """Free the device copy; the next call attaches again."""
        self._device_model, self._step, self._synthetic = None, None, None
        self._compiled = False
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def attachToDevice(self) -> None:
        if not self.isAttachedToDevice():
            self._attach()

    def isAttachedToDevice(self) -> bool:
        return self._device_model is not None or self._step is not None

    def destroy(self) -> None:
        self.detachFromDevice()

    def _debugGetDeviceModel(self) -> Optional[nn.Module]:
        return self._device_model


def inferenceModel(model: nn.Module, options: Optional[Options] = None) -> InferenceExecutor:
    """PopTorch's entry point: wrap ``model`` for inference with ``options``."""
    return InferenceExecutor(model, options)
