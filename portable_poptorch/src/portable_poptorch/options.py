"""``poptorch.Options`` with PopTorch's method names.

Settings that change execution here (device iterations, replicas, gradient accumulation, output
mode, precision, synthetic data, caching) are stored and read by the executors. Settings with no
CUDA/CPU equivalent are accepted and recorded through ``no_effect()`` so the harness can report
them in results.json and say so once in the log instead of silently dropping them.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import torch

from .enums import OutputMode, ReductionType


class _NoEffectLog:
    """Collects options that were set but have no equivalent on this backend."""

    def __init__(self) -> None:
        self.entries: Dict[str, Dict[str, str]] = {}

    def add(self, option: str, value: Any, reason: str) -> None:
        self.entries[option] = {"option": option, "value": repr(value), "reason": reason}


class _Section:
    def __init__(self, log: _NoEffectLog) -> None:
        self._log = log


class _PrecisionOptions(_Section):
    def __init__(self, log: _NoEffectLog) -> None:
        super().__init__(log)
        self.partials_type: Optional[torch.dtype] = None
        self.stochastic_rounding = False
        self.running_statistics_always_float = False

    def setPartialsType(self, dtype: torch.dtype) -> "_PrecisionOptions":
        """Half partials: on CUDA allows reduced-precision matmul reductions (a loose mapping)."""
        self.partials_type = dtype
        if dtype in (torch.half, torch.float16):
            self._log.add("Precision.setPartialsType", dtype,
                          "mapped loosely: CUDA reduced-precision reductions allowed; no effect on CPU")
        return self

    def enableStochasticRounding(self, enabled: bool) -> "_PrecisionOptions":
        self.stochastic_rounding = bool(enabled)
        if enabled:
            self._log.add("Precision.enableStochasticRounding", enabled,
                          "IPU hardware rounding mode; CUDA/CPU round to nearest")
        return self

    def runningStatisticsAlwaysFloat(self, enabled: bool) -> "_PrecisionOptions":
        if not isinstance(enabled, bool):
            raise ValueError("runningStatisticsAlwaysFloat needs to be set to a bool")
        self.running_statistics_always_float = enabled
        if enabled:
            self._log.add("Precision.runningStatisticsAlwaysFloat", enabled,
                          "running statistics keep their norm layer's dtype; keep the norm layers in float32 for this")
        return self

    def enableFloatingPointExceptions(self, enabled: bool) -> "_PrecisionOptions":
        """PopTorch's only floating-point exception setter (a bool; PopART's enableFloatingPointChecks on
        IPUs); no effect here. A non-bool fails as in PopTorch, whose check is an assertion."""
        if not isinstance(enabled, bool):
            raise AssertionError("enableFloatingPointExceptions needs to be set to a bool")
        if enabled:
            self._log.add("Precision.enableFloatingPointExceptions", enabled, "IPU floating-point exceptions")
        return self


class _TrainingOptions(_Section):
    def __init__(self, log: _NoEffectLog) -> None:
        super().__init__(log)
        self.gradient_accumulation = 1
        self.reduction_type = ReductionType.Mean
        self.automatic_loss_scaling = False

    def gradientAccumulation(self, count: int) -> "_TrainingOptions":
        if int(count) < 1:
            raise ValueError(f"gradientAccumulation must be >= 1, got {count}.")
        self.gradient_accumulation = int(count)
        return self

    def accumulationAndReplicationReductionType(self, reduction: ReductionType) -> "_TrainingOptions":
        self.reduction_type = ReductionType(reduction)
        return self

    def setMeanAccumulationAndReplicationReductionStrategy(self, strategy: Any) -> "_TrainingOptions":
        self._log.add("Training.setMeanAccumulationAndReplicationReductionStrategy", strategy,
                      "IPU accumulation schedule; a mean here is one division of the accumulated sum")
        return self

    def setAutomaticLossScaling(self, enabled: bool) -> "_TrainingOptions":
        self.automatic_loss_scaling = bool(enabled)
        return self


class _TensorLocationOptions(_Section):
    def __init__(self, log: _NoEffectLog) -> None:
        super().__init__(log)
        self.num_io_tiles = 0

    def numIOTiles(self, count: int) -> "_TensorLocationOptions":
        """IO tiles overlap transfers with compute; mapped to side-stream copies on CUDA."""
        self.num_io_tiles = int(count)
        return self

    def setOptimizerLocation(self, settings: Any) -> "_TensorLocationOptions":
        self._log.add("TensorLocations.setOptimizerLocation", settings, "no remote memory; optimizer state stays on the device")
        return self

    def setWeightLocation(self, settings: Any) -> "_TensorLocationOptions":
        self._log.add("TensorLocations.setWeightLocation", settings, "no remote memory")
        return self

    def setActivationLocation(self, settings: Any) -> "_TensorLocationOptions":
        self._log.add("TensorLocations.setActivationLocation", settings, "no remote memory")
        return self

    def setAccumulatorLocation(self, settings: Any) -> "_TensorLocationOptions":
        self._log.add("TensorLocations.setAccumulatorLocation", settings, "no remote memory")
        return self


class TensorLocationSettings:
    """Accepted for API compatibility; records the requested placement only."""

    def __init__(self) -> None:
        self.settings: Dict[str, Any] = {}

    def useOnChipStorage(self, enabled: bool = True) -> "TensorLocationSettings":
        self.settings["onChip"] = enabled
        return self

    def useReplicatedTensorSharding(self, enabled: bool = True) -> "TensorLocationSettings":
        self.settings["rts"] = enabled
        return self

    def __repr__(self) -> str:
        return f"TensorLocationSettings({self.settings})"


class _DistributedOptions(_Section):
    def __init__(self, log: _NoEffectLog) -> None:
        super().__init__(log)
        self.process_id = 0
        self.num_processes = 1

    def configureProcessId(self, process_id: int, num_processes: int) -> "_DistributedOptions":
        self.process_id, self.num_processes = int(process_id), int(num_processes)
        return self

    @property
    def processId(self) -> int:
        return self.process_id

    @property
    def numProcesses(self) -> int:
        return self.num_processes


class _JitOptions(_Section):
    def traceModel(self, enabled: bool) -> "_JitOptions":
        self._log.add("Jit.traceModel", enabled, "PopTorch's graph capture choice; the module runs as written")
        return self


class _PopartOptions(_Section):
    """PopART session options: recorded as having no effect, except those this implementation reads."""

    APPLIED = frozenset({"autoRecomputation"})

    def __init__(self, log: _NoEffectLog) -> None:
        super().__init__(log)
        self.values: Dict[str, Any] = {}

    def set(self, key: str, value: Any) -> "_PopartOptions":
        self.values[key] = value
        if key not in self.APPLIED:
            self._log.add(f"_Popart.{key}", value, "PopART compiler option")
        return self


class _PortableOptions(_Section):
    """Settings of this implementation only (not PopTorch API); the harness sets them on portable runs."""

    def __init__(self, log: _NoEffectLog) -> None:
        super().__init__(log)
        self.device_name = "auto"
        self.compute_dtype: Optional[torch.dtype] = None
        self.cuda_graphs = True
        self.channels_last = False
        self.device_list: Optional[List[str]] = None
        self.executor_name = "auto"
        self.executor_streams: Optional[int] = None

    def executor(self, name: str) -> "_PortableOptions":
        """Step compiler: auto (fastest timed here), eager, inductor, onnxruntime or openvino."""
        from .compilers import EXECUTORS
        if name not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}.")
        self.executor_name = name
        return self

    def executorStreams(self, count: Optional[int]) -> "_PortableOptions":
        """Concurrent sub-batches per micro-step for executors that can split it (onnxruntime,
        openvino); None = auto (one stream and one per thread are timed and the faster kept)."""
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError(f"executor streams must be a whole number >= 1 or None (auto), got {count!r}.")
        self.executor_streams = count
        return self

    def device(self, name: str) -> "_PortableOptions":
        self.device_name = name
        return self

    def autocast(self, dtype: Optional[torch.dtype]) -> "_PortableOptions":
        """Half compute with fp32 weights (precision 16.32)."""
        self.compute_dtype = dtype
        return self

    def cudaGraphs(self, enabled: bool) -> "_PortableOptions":
        self.cuda_graphs = bool(enabled)
        return self

    def channelsLast(self, enabled: bool) -> "_PortableOptions":
        self.channels_last = bool(enabled)
        return self

    def devices(self, names: List[str]) -> "_PortableOptions":
        """Devices for pipeline stages: stage k runs on names[k % len(names)]."""
        self.device_list = list(names)
        return self

    def resolved_device(self) -> torch.device:
        if self.device_name in ("auto", None):
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device_name)


class Options:
    """Run configuration, one object per model, as in PopTorch."""

    def __init__(self) -> None:
        self._no_effect_log = _NoEffectLog()
        self.device_iterations = 1
        self.replication_factor = 1
        self.output_mode = OutputMode.Default
        self.output_return_period = 1
        self.random_seed: Optional[int] = None
        self.synthetic_data = False
        self.executable_cache_dir: Optional[str] = None
        self.available_memory_proportion: Dict[str, float] = {}
        self.execution_strategy: Any = None
        self.Precision = _PrecisionOptions(self._no_effect_log)
        self.Training = _TrainingOptions(self._no_effect_log)
        self.TensorLocations = _TensorLocationOptions(self._no_effect_log)
        self.Distributed = _DistributedOptions(self._no_effect_log)
        self.Jit = _JitOptions(self._no_effect_log)
        self._Popart = _PopartOptions(self._no_effect_log)
        self.Portable = _PortableOptions(self._no_effect_log)

    def deviceIterations(self, count: int) -> "Options":
        if int(count) < 1:
            raise ValueError(f"deviceIterations must be >= 1, got {count}.")
        self.device_iterations = int(count)
        return self

    def replicationFactor(self, count: int) -> "Options":
        if int(count) < 1:
            raise ValueError(f"replicationFactor must be >= 1, got {count}.")
        self.replication_factor = int(count)
        return self

    def outputMode(self, mode: OutputMode, output_return_period: Optional[int] = None) -> "Options":
        self.output_mode = OutputMode(mode)
        if self.output_mode == OutputMode.EveryN:
            if not output_return_period or output_return_period < 1:
                raise ValueError("OutputMode.EveryN needs output_return_period >= 1.")
            self.output_return_period = int(output_return_period)
        return self

    def anchorMode(self, mode: OutputMode, anchor_return_period: Optional[int] = None) -> "Options":
        return self.outputMode(mode, anchor_return_period)

    def randomSeed(self, seed: int) -> "Options":
        """Seed of the model's random operations; the executors keep their own random stream from it,
        so the process's global RNG is left alone, as PopTorch seeds only the device."""
        self.random_seed = int(seed)
        return self

    def enableSyntheticData(self, enabled: bool) -> "Options":
        self.synthetic_data = bool(enabled)
        return self

    def enableExecutableCaching(self, path: str) -> "Options":
        """Compiled artefacts (Inductor's cache, ONNX Runtime models, OpenVINO IR and blobs) and auto's
        executor choice are written to ``path`` and reused by later runs with the same key."""
        self.executable_cache_dir = os.fspath(path) if path else None
        return self

    def cache_dir(self) -> Optional[str]:
        """The executable cache: the option, else PopTorch's POPTORCH_CACHE_DIR environment variable."""
        return self.executable_cache_dir or os.environ.get("POPTORCH_CACHE_DIR") or None

    def setAvailableMemoryProportion(self, proportions: Dict[str, float]) -> "Options":
        self.available_memory_proportion = dict(proportions)
        self._no_effect_log.add("setAvailableMemoryProportion", proportions, "IPU tile-memory planning")
        return self

    def setExecutionStrategy(self, strategy: Any) -> "Options":
        self.execution_strategy = strategy
        self._no_effect_log.add("setExecutionStrategy", type(strategy).__name__,
                                "stages run in order on their devices (Portable.devices) whatever the strategy")
        return self

    def autoRoundNumIPUs(self, enabled: bool) -> "Options":
        if enabled:
            self._no_effect_log.add("autoRoundNumIPUs", enabled, "IPU counts rounded to a power of two")
        return self

    def logCycleCount(self, enabled: bool) -> "Options":
        if enabled:
            self._no_effect_log.add("logCycleCount", enabled, "IPU cycle counter")
        return self

    def useIpuModel(self, enabled: bool) -> "Options":
        if enabled:
            self._no_effect_log.add("useIpuModel", enabled, "IPU simulator")
        return self

    def connectionType(self, kind: Any) -> "Options":
        self._no_effect_log.add("connectionType", kind, "when an IPU is attached; the device here is always present")
        return self

    def enableStableNorm(self, enabled: bool) -> "Options":
        if not enabled:
            self._no_effect_log.add("enableStableNorm", enabled, "torch norms are always computed stably")
        return self

    def no_effect(self) -> List[Dict[str, str]]:
        """Options set on this object that change nothing on the device they run on, for results.json."""
        entries = list(self._no_effect_log.entries.values())
        if self.TensorLocations.num_io_tiles > 0 and self.Portable.resolved_device().type != "cuda":
            entries.append({"option": "TensorLocations.numIOTiles", "value": repr(self.TensorLocations.num_io_tiles),
                            "reason": "overlapped IO needs CUDA streams; no effect on CPU"})
        return entries
