"""Command-line arguments -> PopTorch ``Options`` (the same calls drive IPUs and portable_poptorch)."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import torch

from .backend import Backend
from .distributed import InstanceInfo, instance_cuda_devices

# The original's --exchange-memory-target default; off IPU the option is only reported when given.
DEFAULT_EXCHANGE_TARGET = "cycles"
ENGINE_ENV_VARS = ("POPLAR_ENGINE_OPTIONS", "POPLAR_RUNTIME_OPTIONS", "POPLAR_TARGET_OPTIONS")


def num_stages(args: Any) -> int:
    return len(args.pipeline_splits) + 1


def common_options(args: Any, backend: Backend, info: InstanceInfo, report_dir: Optional[str] = None) -> Any:
    """Options shared by inference and training. ``report_dir``: where --profile's Poplar report goes.

    On IPUs the calls are those of the original application's ipu_settings.py (engine options,
    partials type and group-norm grouping always set; IO tiles with sharded execution and prefetch
    depth 3); off IPU the same concepts are set only when asked for, so that portable_poptorch
    reports as without effect only what the user chose.
    """
    poptorch = backend.poptorch
    ipu = not backend.is_portable
    opts = _base_options(args, backend, info)
    opts.deviceIterations(args.device_iterations)
    if backend.is_portable:
        opts.randomSeed(args.seed)
        if info.distributed:
            opts.Distributed.configureProcessId(info.rank, info.size)
    if args.half_partial or ipu:
        opts.Precision.setPartialsType(torch.float16 if args.half_partial else torch.float32)
    if args.available_memory_proportion:
        amps = args.available_memory_proportion
        stages = num_stages(args)
        if len(amps) not in (1, stages):
            from .errors import UsageError
            raise UsageError(f"--available-memory-proportion takes 1 value or one per stage ({stages}), "
                             f"got {len(amps)}.")
        opts.setAvailableMemoryProportion({f"IPU{i}": amps[min(i, len(amps) - 1)] for i in range(stages)})
    if args.enable_fast_groupnorm or ipu:
        opts._Popart.set("groupNormStridedChannelGrouping", bool(args.enable_fast_groupnorm))
    engine = engine_options(args, ipu, report_dir)
    if engine:
        opts._Popart.set("engineOptions", engine)
    if args.num_io_tiles:
        if ipu:
            opts.setExecutionStrategy(poptorch.ShardedExecution())
            opts._Popart.set("defaultPrefetchBufferingDepth", 3)
        opts.TensorLocations.numIOTiles(args.num_io_tiles)
    if args.model_cache_path:
        opts.enableExecutableCaching(args.model_cache_path)
    if backend.is_portable:
        if len(args.pipeline_splits) > 0:
            opts.setExecutionStrategy(poptorch.PipelinedExecution(poptorch.AutoStage.AutoIncrement))
        _portable_settings(opts, args, backend, info)
    return opts


def engine_options(args: Any, ipu: bool, report_dir: Optional[str]) -> Dict[str, str]:
    """Poplar engine options: deterministic workers on IPUs (replicas' weights must not drift), Poplar's
    report for --profile, and the exchange optimisation target (an engine option, not a PopART one)."""
    engine: Dict[str, str] = {"target.deterministicWorkers": "portable"} if ipu else {}
    if args.profile and ipu and report_dir:
        engine = {"debug.allowOutOfMemory": "true", "autoReport.directory": report_dir,
                  "profiler.format": "v3", "autoReport.all": "true"}
    if args.exchange_memory_target or ipu:
        engine["opt.internalExchangeOptimisationTarget"] = args.exchange_memory_target or DEFAULT_EXCHANGE_TARGET
    return engine


def _base_options(args: Any, backend: Backend, info: InstanceInfo) -> Any:
    """Under poprun on IPUs popdist's Options take replicas and instances from poprun; otherwise Options()
    with this instance's replicas."""
    if not backend.is_portable and popdist_active():
        import popdist
        import popdist.poptorch  # the SDK's launcher support, present wherever poprun is
        args.replicas = int(popdist.getNumLocalReplicas())
        return popdist.poptorch.Options(ipus_per_replica=num_stages(args))
    opts = backend.poptorch.Options()
    opts.replicationFactor(args.replicas)
    return opts


def popdist_active() -> bool:
    """Whether this process was started by the SDK's poprun (popdist's environment is set)."""
    try:
        import popdist
    except ImportError:
        return False
    return bool(popdist.isPopdistEnvSet())


def _portable_settings(opts: Any, args: Any, backend: Backend, info: InstanceInfo) -> None:
    opts.Portable.device(backend.device)
    opts.Portable.executor(getattr(args, "executor", "auto"))
    opts.Portable.executorStreams(getattr(args, "executor_streams", None))
    if args.precision == "16.32":
        opts.Portable.autocast(backend.half_dtype)
    fmt = args.memory_format
    opts.Portable.channelsLast(fmt == "channels_last" or (fmt == "auto" and backend.device == "cuda"))
    if backend.device == "cuda":
        opts.Portable.devices(instance_cuda_devices(info, num_stages(args), torch.cuda.device_count()))


def inference_options(args: Any, backend: Backend, info: InstanceInfo, report_dir: Optional[str] = None) -> Any:
    opts = common_options(args, backend, info, report_dir)
    opts.outputMode(backend.poptorch.OutputMode.All)
    if args.data == "synthetic":
        opts.enableSyntheticData(True)
    return opts


def no_effect_report(opts: Any, args: Any, backend: Backend) -> List[Dict[str, str]]:
    """Options accepted but without effect on this backend, for results.json and one log line each."""
    if not backend.is_portable:
        entries = []
        executor = getattr(args, "executor", "auto")
        if executor != "auto":
            entries.append({"option": "executor", "value": executor, "reason": "PopTorch compiles with PopART on IPU"})
        streams = getattr(args, "executor_streams", None)
        if streams is not None:
            entries.append({"option": "executor-streams", "value": str(streams),
                            "reason": "PopTorch runs the whole micro-batch on the IPU"})
        memory_format = getattr(args, "memory_format", "auto")
        if memory_format != "auto":
            entries.append({"option": "memory-format", "value": memory_format,
                            "reason": "Poplar chooses the tensor layouts on the IPU"})
        return entries
    entries = list(opts.no_effect())
    for var in ENGINE_ENV_VARS:
        if os.environ.get(var):
            entries.append({"option": var, "value": os.environ[var], "reason": "Poplar engine environment variable"})
    return entries
