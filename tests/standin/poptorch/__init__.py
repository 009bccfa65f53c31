"""Stand-in for PopTorch 2.4's public Python API (tests only; see ../README.md).

The option classes keep the state PopTorch 2.4 keeps for each call (the same keys: ``device_iterations``,
``_Popart`` session options, ``Training.gradient_accumulation`` ...), so that two ways of building
Options can be compared by their state. Unknown methods do not exist, so a call PopTorch lacks fails.
"""
from __future__ import annotations

import atexit
import copy
import enum
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from . import optim  # noqa: F401  (poptorch.optim)

__version__ = "2.4.0"
CALLS: List[Tuple[str, Any]] = []
WRAPPED: List[Dict[str, Any]] = []

# PopART session options PopTorch 2.4 forwards (popart_compiler/source/SessionOptions.cpp), plus the
# container options it accepts ("engineOptions" ...). Dotted keys set a field of one of them.
POPART_SESSION_OPTIONS = frozenset("""
accumulationAndReplicationReductionType accumulationFactor aliasZeroCopy autoRecomputation autodiffSettings
automaticLossScalingSettings batchSerializationSettings cachePath compilationProgressTotal compileEngine
constantWeights customCodeletCompileFlags decomposeGradSum defaultPrefetchBufferingDepth delayVarUpdates
disableGradAccumulationTensorStreams dotOpNames enableDistributedReplicatedGraphs enableEngineCaching
enableExplicitMainLoops enableFloatingPointChecks enableFullyConnectedPass enableGradientAccumulation
enableMergeExchange enableNonStableSoftmax enableOutlining enableOutliningCopyCostPruning enablePipelining
enablePrefetchDatastreams enableReplicatedGraphs enableSerializedMatmuls enableStableNorm enableStochasticRounding
enableSupportedDataTypeCasting ensureFp32LossScaleTensor executionPhaseSettings explicitRecomputation
exportPoplarComputationGraph exportPoplarVertexGraph finalDotOp firstDotOp globalReplicaOffset
globalReplicationFactor groupHostSync groupNormStridedChannelGrouping instrumentWithHardwareCycleCounter
kahnTieBreaker logDir looseThresholdAtPeak meanAccumulationAndReplicationReductionStrategy mergeVarUpdate
mergeVarUpdateMemThreshold numIOTiles opxAliasChecking opxModifyChecking outlineSequenceBreakCost outlineThreshold
partialsTypeMatMuls rearrangeAnchorsOnHost scheduleNonWeightUpdateGradientConsumersEarly separateCallOpPdfs
serializedPoprithmsShiftGraphsDir strictOpVersions subgraphCopyingStrategy swapLimitScheduler syntheticDataMode
timeLimitScheduler transitiveClosureOptimizationThreshold useHostCopyOps virtualGraphMode
convolutionOptions customCodelets engineOptions gclOptions lstmOptions matmulOptions reportOptions
""".split())


def _record(name: str, *args: Any, **kwargs: Any) -> None:
    CALLS.append((name, _plain([list(args), kwargs])))


def _plain(value: Any) -> Any:
    """JSON-friendly form of option values (enums by name, dtypes as strings)."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, _IExecutionStrategy):
        return value.describe()
    return str(value)


# ----------------------------------------------------------------------------------------- enums
class OutputMode(enum.IntEnum):
    Final = 0
    EveryN = 1
    All = 2
    Sum = 3
    Default = 4


AnchorMode = OutputMode


class ReductionType(enum.IntEnum):
    Sum = 0
    Mean = 1
    NoReduction = 2


class MeanReductionStrategy(enum.IntEnum):
    Running = 0
    Post = 1
    PostAndLoss = 2


class DataLoaderMode(enum.IntEnum):
    Sync = 0
    Async = 1
    AsyncRebatched = 2


class ConnectionType(enum.IntEnum):
    Always = 0
    OnDemand = 1
    Never = 2


class SyncPattern(enum.IntEnum):
    Full = 0
    SinglePipeline = 1
    ReplicaAndLadder = 2


class HalfFloatCastingBehavior(enum.IntEnum):
    FloatDowncastToHalf = 0
    HalfUpcastToFloat = 1


class OverlapMode(enum.Enum):
    NoOverlap = "no_overlap"
    OverlapAccumulationLoop = "overlap_accumulation_loop"
    OverlapDeviceIterationLoop = "overlap_device_iteration_loop"


class AutoStage(enum.IntEnum):
    SameAsIpu = 0
    AutoIncrement = 1


# --------------------------------------------------------------------------------------- options
class _OptionsDict:
    """PopTorch's OptionsDict: ``set`` only changes existing keys, ``createOrSet`` may add one."""

    def __init__(self, **defaults: Any) -> None:
        object.__setattr__(self, "_values", dict(defaults))

    def set(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            if key not in self._values:
                raise ValueError(f"Invalid option {key}, valid options are {sorted(self._values)}")
            self._values[key] = value

    def createOrSet(self, **kwargs: Any) -> None:
        self._values.update(kwargs)

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def toDict(self) -> Dict[str, Any]:
        return {k: _plain(v) for k, v in self._values.items()}


class _PopartOptions:
    def __init__(self) -> None:
        self.options: Dict[str, Any] = {}
        self.options["instrumentWithHardwareCycleCounter"] = False
        self.options["rearrangeAnchorsOnHost"] = False

    def set(self, key: str, value: Any) -> "_PopartOptions":
        _record("_Popart.set", key, value)
        if key.split(".")[0] not in POPART_SESSION_OPTIONS:
            raise ValueError(f"Unknown PopART session option {key!r}")
        if key == "engineOptions" and not (isinstance(value, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
            raise ValueError("engineOptions must map option names to strings")
        self.options[key] = value
        return self

    def setEngineOptions(self, engine_options: Dict[str, str]) -> "_PopartOptions":
        return self.set("engineOptions", engine_options)


class _PrecisionOptions(_OptionsDict):
    def __init__(self, popart: _PopartOptions) -> None:
        super().__init__(autocast_enabled=True, half_float_casting=0)
        object.__setattr__(self, "_popart", popart)

    def enableFloatingPointExceptions(self, enabled: bool) -> "_PrecisionOptions":
        _record("Precision.enableFloatingPointExceptions", enabled)
        assert isinstance(enabled, bool), "enableFloatingPointExceptions needs to be set to a bool"
        self._popart.set("enableFloatingPointChecks", enabled)
        return self

    def enableStochasticRounding(self, enabled: bool) -> "_PrecisionOptions":
        _record("Precision.enableStochasticRounding", enabled)
        self._popart.set("enableStochasticRounding", enabled)
        return self

    def setPartialsType(self, dtype: torch.dtype) -> "_PrecisionOptions":
        _record("Precision.setPartialsType", dtype)
        if dtype in (torch.float, torch.float32):
            name = "float"
        elif dtype in (torch.half, torch.float16):
            name = "half"
        else:
            raise ValueError("parameter to setPartialsType should be either torch.float or torch.half")
        self._popart.set("partialsTypeMatMuls", name)
        self._popart.set("convolutionOptions", {"partialsType": name})
        return self

    def runningStatisticsAlwaysFloat(self, value: bool) -> "_PrecisionOptions":
        _record("Precision.runningStatisticsAlwaysFloat", value)
        if not isinstance(value, bool):
            raise ValueError("runningStatisticsAlwaysFloat needs to be set to a bool")
        self.createOrSet(running_statistics_always_float=value)
        return self

    def halfFloatCasting(self, behaviour: HalfFloatCastingBehavior) -> "_PrecisionOptions":
        _record("Precision.halfFloatCasting", behaviour)
        if not isinstance(behaviour, HalfFloatCastingBehavior):
            raise ValueError("halfFloatCasting must be a poptorch.HalfFloatCastingBehavior")
        self.set(half_float_casting=int(behaviour))
        return self


class _TrainingOptions(_OptionsDict):
    def __init__(self, popart: _PopartOptions) -> None:
        super().__init__(gradient_accumulation=1, accumulation_and_replication_reduction_type=ReductionType.Mean,
                         meanAccumulationAndReplicationReductionStrategy=MeanReductionStrategy.Post)
        object.__setattr__(self, "_popart", popart)

    def gradientAccumulation(self, gradient_accumulation: int) -> "_TrainingOptions":
        _record("Training.gradientAccumulation", gradient_accumulation)
        self.set(gradient_accumulation=gradient_accumulation)
        return self

    def accumulationAndReplicationReductionType(self, reduction_type: ReductionType) -> "_TrainingOptions":
        _record("Training.accumulationAndReplicationReductionType", reduction_type)
        if not isinstance(reduction_type, ReductionType) or reduction_type == ReductionType.NoReduction:
            raise ValueError("accumulationAndReplicationReductionType must be set to poptorch.ReductionType.Mean "
                             "or poptorch.ReductionType.Sum")
        self.set(accumulation_and_replication_reduction_type=reduction_type)
        return self

    def setMeanAccumulationAndReplicationReductionStrategy(self, strategy: MeanReductionStrategy
                                                           ) -> "_TrainingOptions":
        _record("Training.setMeanAccumulationAndReplicationReductionStrategy", strategy)
        if not isinstance(strategy, MeanReductionStrategy):
            raise ValueError("strategy must be a poptorch.MeanReductionStrategy")
        self.set(meanAccumulationAndReplicationReductionStrategy=strategy)
        return self

    def setAutomaticLossScaling(self, enabled: bool) -> "_TrainingOptions":
        _record("Training.setAutomaticLossScaling", enabled)
        if not isinstance(enabled, bool):
            raise ValueError("Automatic loss scaling must be enabled or disabled with a bool")
        self._popart.set("automaticLossScalingSettings.enabled", enabled)
        return self


class _DistributedOptions(_OptionsDict):
    def __init__(self) -> None:
        super().__init__(num_distributed_processes=1, distributed_process_id=0, ipuof_configs={})

    def disable(self) -> "_DistributedOptions":
        _record("Distributed.disable")
        self.set(num_distributed_processes=1, distributed_process_id=0)
        return self

    def configureProcessId(self, process_id: int, num_processes: int) -> "_DistributedOptions":
        _record("Distributed.configureProcessId", process_id, num_processes)
        self.set(distributed_process_id=process_id, num_distributed_processes=num_processes)
        return self

    @property
    def processId(self) -> int:
        return self.distributed_process_id

    @property
    def numProcesses(self) -> int:
        return self.num_distributed_processes


class TensorLocationSettings(_OptionsDict):
    def useOnChipStorage(self, use: bool = True) -> "TensorLocationSettings":
        _record("TensorLocationSettings.useOnChipStorage", use)
        assert isinstance(use, bool), "useOnChipStorage must be set to True or False"
        self.createOrSet(onChip=int(use))
        return self

    def useReplicatedTensorSharding(self, use: bool = True) -> "TensorLocationSettings":
        _record("TensorLocationSettings.useReplicatedTensorSharding", use)
        assert isinstance(use, bool), "useReplicatedTensorSharding must be set to True or False"
        self.createOrSet(useReplicatedTensorSharding=int(use))
        return self

    def minElementsForOffChip(self, min_elements: int) -> "TensorLocationSettings":
        _record("TensorLocationSettings.minElementsForOffChip", min_elements)
        assert isinstance(min_elements, int), "min_elements must be an integer"
        self.createOrSet(minElementsForOffChip=min_elements)
        return self


class _TensorLocationOptions(_OptionsDict):
    def numIOTiles(self, num_tiles: int) -> "_TensorLocationOptions":
        _record("TensorLocations.numIOTiles", num_tiles)
        assert isinstance(num_tiles, int)
        assert 32 <= num_tiles <= 192 and num_tiles % 2 == 0, "numIOTiles must be an even number between 32 and 192."
        self.createOrSet(numIOTiles=num_tiles)
        return self

    def _location(self, name: str, location: TensorLocationSettings) -> "_TensorLocationOptions":
        _record(f"TensorLocations.set{name}Location", location.toDict())
        assert isinstance(location, TensorLocationSettings)
        self.createOrSet(**{f"location_{name.lower()}": location.toDict()})
        return self

    def setOptimizerLocation(self, location: TensorLocationSettings) -> "_TensorLocationOptions":
        return self._location("Optimizer", location)

    def setWeightLocation(self, location: TensorLocationSettings) -> "_TensorLocationOptions":
        return self._location("Weight", location)

    def setActivationLocation(self, location: TensorLocationSettings) -> "_TensorLocationOptions":
        return self._location("Activation", location)

    def setAccumulatorLocation(self, location: TensorLocationSettings) -> "_TensorLocationOptions":
        return self._location("Accumulator", location)


class _JitOptions(_OptionsDict):
    def __init__(self) -> None:
        super().__init__(trace_model=True)

    def traceModel(self, trace_model: bool) -> "_JitOptions":
        _record("Jit.traceModel", trace_model)
        self.set(trace_model=trace_model)
        return self


class _IExecutionStrategy:
    def __init__(self, *args: Any) -> None:
        self.args = args

    def describe(self) -> str:
        stages = ",".join(_plain(a) if isinstance(a, enum.Enum) else str(a) for a in self.args)
        return f"{type(self).__name__}({stages})"


class PipelinedExecution(_IExecutionStrategy):
    pass


class ShardedExecution(PipelinedExecution):
    pass


class SerialPhasedExecution(_IExecutionStrategy):
    pass


class ParallelPhasedExecution(_IExecutionStrategy):
    pass


class Options(_OptionsDict):
    """poptorch.Options of PopTorch 2.4: state per method as PopTorch keeps it."""

    def __init__(self) -> None:
        super().__init__(replication_factor=1, broadcast_buffers=True, device_iterations=1, log_dir=".",
                         auto_round_num_ipus=False, anchored_tensors={}, output_mode=OutputMode.Default.value,
                         output_return_period=1, connection_type=ConnectionType.Always.value,
                         sync_pattern=SyncPattern.Full.value, available_memory_proportion={})
        popart = _PopartOptions()
        object.__setattr__(self, "_Popart", popart)
        object.__setattr__(self, "Precision", _PrecisionOptions(popart))
        object.__setattr__(self, "Training", _TrainingOptions(popart))
        object.__setattr__(self, "Distributed", _DistributedOptions())
        object.__setattr__(self, "TensorLocations", _TensorLocationOptions())
        object.__setattr__(self, "Jit", _JitOptions())
        object.__setattr__(self, "_execution_strategy", PipelinedExecution())

    def deviceIterations(self, device_iterations: int) -> "Options":
        _record("deviceIterations", device_iterations)
        self.set(device_iterations=device_iterations)
        return self

    def replicationFactor(self, replication_factor: int) -> "Options":
        _record("replicationFactor", replication_factor)
        self.set(replication_factor=replication_factor)
        return self

    def outputMode(self, output_mode: OutputMode, output_return_period: Optional[int] = None) -> "Options":
        _record("outputMode", output_mode, output_return_period)
        assert isinstance(output_mode, OutputMode)
        if output_mode == OutputMode.EveryN:
            assert output_return_period and output_return_period > 0
        self.set(output_mode=output_mode.value, output_return_period=output_return_period or 1)
        return self

    def randomSeed(self, random_seed: int) -> "Options":
        _record("randomSeed", random_seed)
        assert isinstance(random_seed, int)
        torch.manual_seed(random_seed)
        self.createOrSet(random_seed=random_seed)
        return self

    def enableStableNorm(self, enabled: bool) -> "Options":
        _record("enableStableNorm", enabled)
        self._Popart.set("enableStableNorm", enabled)
        return self

    def enableSyntheticData(self, enabled: bool) -> "Options":
        _record("enableSyntheticData", enabled)
        self._Popart.set("syntheticDataMode", 2 if enabled else 0)
        return self

    def enableExecutableCaching(self, path: str) -> "Options":
        _record("enableExecutableCaching", path)
        if path is None:
            self._Popart.set("enableEngineCaching", False)
        else:
            self._Popart.set("cachePath", path)
            self._Popart.set("enableEngineCaching", True)
        return self

    def setAvailableMemoryProportion(self, available_memory_proportion: Dict[str, float]) -> "Options":
        _record("setAvailableMemoryProportion", available_memory_proportion)
        actual = {}
        for key, value in available_memory_proportion.items():
            assert key.startswith("IPU"), f"Invalid key: {key}"
            actual[int(key[3:])] = value
        self.createOrSet(available_memory_proportion=actual)
        return self

    def setExecutionStrategy(self, strategy: _IExecutionStrategy) -> "Options":
        _record("setExecutionStrategy", strategy)
        assert isinstance(strategy, _IExecutionStrategy)
        object.__setattr__(self, "_execution_strategy", strategy)
        return self

    def useOfflineIpuTarget(self, ipu_version: int = 2) -> "Options":
        _record("useOfflineIpuTarget", ipu_version)
        self.connectionType(ConnectionType.Never)
        self.createOrSet(ipu_version=ipu_version)
        return self

    def connectionType(self, connection_type: ConnectionType) -> "Options":
        _record("connectionType", connection_type)
        assert isinstance(connection_type, ConnectionType)
        self.set(connection_type=connection_type.value)
        return self

    def autoRoundNumIPUs(self, auto_round_num_ipus: bool = True) -> "Options":
        _record("autoRoundNumIPUs", auto_round_num_ipus)
        self.set(auto_round_num_ipus=auto_round_num_ipus)
        return self

    def logDir(self, log_dir: str) -> "Options":
        _record("logDir", log_dir)
        self.set(log_dir=log_dir)
        return self

    def state(self) -> Dict[str, Any]:
        """Everything the calls changed, for comparisons."""
        return {"options": self.toDict(), "popart": _plain(self._Popart.options),
                "precision": self.Precision.toDict(), "training": self.Training.toDict(),
                "distributed": self.Distributed.toDict(), "tensor_locations": self.TensorLocations.toDict(),
                "jit": self.Jit.toDict(), "execution_strategy": self._execution_strategy.describe()}


# ------------------------------------------------------------------------------------------- ops
def BeginBlock(layer_to_call: torch.nn.Module, user_id: Optional[str] = None,
               ipu_id: Optional[int] = None) -> torch.nn.Module:
    _record("BeginBlock", type(layer_to_call).__name__, user_id, ipu_id)
    assert isinstance(layer_to_call, torch.nn.Module)
    layer_to_call._poptorch_block = (user_id, ipu_id)
    return layer_to_call


def recomputationCheckpoint(*tensors: torch.Tensor) -> Any:
    assert all(isinstance(t, torch.Tensor) for t in tensors)
    return tensors[0] if len(tensors) == 1 else tensors


def identity_loss(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return x.sum()
    if reduction == "mean":
        return x.mean()
    assert reduction == "none", "reduction must be sum, mean or none"
    return x


def set_overlap_for_input(input_tensor: torch.Tensor, mode: OverlapMode) -> torch.Tensor:
    assert isinstance(mode, OverlapMode)
    _record("set_overlap_for_input", mode)
    return input_tensor


def set_overlap_for_output(output_tensor: torch.Tensor, mode: OverlapMode) -> torch.Tensor:
    assert isinstance(mode, OverlapMode)
    _record("set_overlap_for_output", mode)
    return output_tensor


def ipuHardwareVersion() -> int:
    return 2


def ipuHardwareIsAvailable(num_ipus: int = 1) -> bool:
    return False


# ------------------------------------------------------------------------------------ data loader
class DataLoader(torch.utils.data.DataLoader):
    """Host batches of batch_size x device iterations x replicas x gradient accumulation."""

    def __init__(self, options: Options, dataset: Any, batch_size: int = 1, shuffle: bool = False,
                 num_workers: int = 0, drop_last: bool = True, persistent_workers: Optional[bool] = None,
                 auto_distributed_partitioning: bool = True, mode: DataLoaderMode = DataLoaderMode.Sync,
                 async_options: Optional[Dict[str, Any]] = None, rebatched_worker_size: Optional[int] = None,
                 **kwargs: Any) -> None:
        _record("DataLoader", batch_size, shuffle, num_workers, drop_last, mode, rebatched_worker_size)
        assert isinstance(options, Options) and isinstance(mode, DataLoaderMode)
        combined = (batch_size * options.device_iterations * options.replication_factor
                    * options.Training.gradient_accumulation)
        self.combinedBatchSize = combined
        self.options = options
        super().__init__(dataset, batch_size=combined, shuffle=shuffle, num_workers=0, drop_last=drop_last,
                         **{k: v for k, v in kwargs.items() if k in ("collate_fn", "sampler", "worker_init_fn")})


# -------------------------------------------------------------------------------------- executors
class PoplarExecutor:
    """Runs the model on the CPU so that scripts finish; records the options it was given."""

    def __init__(self, model: torch.nn.Module, options: Options, training: bool,
                 optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        assert isinstance(options, Options), "options must be poptorch.Options"
        self.model, self.options, self.training, self.optimizer = model, options, training, optimizer
        self._latency = (0.0, 0.0, 0.0)
        self._float_state: Optional[Dict[str, torch.Tensor]] = None
        self._compiled = False
        self._attached = False
        WRAPPED.append({"training": training, "state": copy.deepcopy(options.state())})

    def __call__(self, *inputs: Any) -> Any:
        start = time.perf_counter()
        if not self._compiled:
            self._compiled = self._attached = True
        elif not self._attached:
            self.attachToDevice()
        if self.training:
            out = self.model(*inputs)
            loss = out[-1] if isinstance(out, (tuple, list)) else out
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
            out = tuple(o.detach() * self._sum_factor() if self.options.output_mode == OutputMode.Sum else o.detach()
                        for o in (out if isinstance(out, (tuple, list)) else (out,)))
        else:
            out = self._infer(*inputs)
        elapsed = time.perf_counter() - start
        self._latency = (elapsed, elapsed, elapsed)
        return out

    def _infer(self, *inputs: Any) -> Any:
        """The model's outputs, computed in float32 where it holds float16 weights (a CPU without native
        16-bit arithmetic runs float16 convolutions many times slower; only the dtype has to be an IPU's)."""
        if not any(p.dtype == torch.float16 for p in self.model.parameters()):
            with torch.no_grad():
                return self.model(*inputs)
        if self._float_state is None:
            state = dict(self.model.named_parameters(), **dict(self.model.named_buffers()))
            self._float_state = {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}
        with torch.no_grad():
            out = torch.func.functional_call(self.model, self._float_state,
                                             tuple(x.float() if x.dtype == torch.float16 else x for x in inputs))
        return tuple(o.half() for o in out) if isinstance(out, tuple) else out.half()

    def _sum_factor(self) -> int:
        return self.options.device_iterations * self.options.Training.gradient_accumulation

    def compile(self, *inputs: Any) -> None:
        _record("compile")
        self._compiled = self._attached = True

    def getLatency(self) -> Tuple[float, float, float]:
        return self._latency

    def isCompiled(self) -> bool:
        return self._compiled

    def setOptimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def detachFromDevice(self) -> None:
        """As PopTorch: the model must be compiled and attached."""
        if not self._compiled:
            raise RuntimeError("Model has not been compiled or has been destroyed.")
        if not self._attached:
            raise RuntimeError("Device is not attached")
        self._attached = False

    def attachToDevice(self) -> None:
        if not self._compiled:
            raise RuntimeError("Model has not been compiled or has been destroyed.")
        assert self.options.connection_type != ConnectionType.Never, "Trying to attach to an offline device"
        if self._attached:
            raise RuntimeError("Device is already attached")
        self._attached = True

    def isAttachedToDevice(self) -> bool:
        return self._compiled and self._attached

    def copyWeightsToHost(self) -> None:
        pass

    def copyWeightsToDevice(self) -> None:
        pass

    def destroy(self) -> None:
        self._attached = False


def inferenceModel(model: torch.nn.Module, options: Optional[Options] = None) -> PoplarExecutor:
    _record("inferenceModel")
    return PoplarExecutor(model, options or Options(), training=False)


def trainingModel(model: torch.nn.Module, options: Optional[Options] = None,
                  optimizer: Optional[torch.optim.Optimizer] = None) -> PoplarExecutor:
    _record("trainingModel")
    return PoplarExecutor(model, options or Options(), training=True, optimizer=optimizer)


def _dump() -> None:
    path = os.environ.get("POPTORCH_STANDIN_RECORD")
    if path:
        with open(path, "w") as f:
            json.dump({"calls": CALLS, "wrapped": WRAPPED}, f, indent=1, default=str)


atexit.register(_dump)
