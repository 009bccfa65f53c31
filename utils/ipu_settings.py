"""Command-line arguments -> PopTorch ``Options`` (the same calls drive IPUs and portable_poptorch)."""
from __future__ import annotations

import os
from typing import Any, Dict, List

import torch

from .backend import Backend
from .distributed import InstanceInfo

ENGINE_ENV_VARS = ("POPLAR_ENGINE_OPTIONS", "POPLAR_RUNTIME_OPTIONS", "POPLAR_TARGET_OPTIONS")


def num_stages(args: Any) -> int:
    return len(args.pipeline_splits) + 1


def common_options(args: Any, backend: Backend, info: InstanceInfo) -> Any:
    """Options shared by inference and training."""
    poptorch = backend.poptorch
    opts = _base_options(backend, info, num_stages(args))
    opts.replicationFactor(args.replicas)
    opts.deviceIterations(args.device_iterations)
    opts.randomSeed(args.seed)
    if info.distributed:
        opts.Distributed.configureProcessId(info.rank, info.size)
    if args.half_partial:
        opts.Precision.setPartialsType(torch.half)
    if args.available_memory_proportion:
        amps = args.available_memory_proportion
        stages = num_stages(args)
        if len(amps) not in (1, stages):
            from .errors import UsageError
            raise UsageError(f"--available-memory-proportion takes 1 value or one per stage ({stages}), "
                             f"got {len(amps)}.")
        opts.setAvailableMemoryProportion({f"IPU{i}": amps[min(i, len(amps) - 1)] for i in range(stages)})
    if args.num_io_tiles:
        opts.TensorLocations.numIOTiles(args.num_io_tiles)
    if args.exchange_memory_target:
        opts._Popart.set("internalExchangeOptimisationTarget", args.exchange_memory_target)
    if args.enable_fast_groupnorm:
        opts._Popart.set("groupNormStridedChannelGrouping", True)
    if args.model_cache_path:
        opts.enableExecutableCaching(args.model_cache_path)
    if len(args.pipeline_splits) > 0:
        opts.setExecutionStrategy(poptorch.PipelinedExecution(poptorch.AutoStage.AutoIncrement))
    if backend.is_portable:
        _portable_settings(opts, args, backend, info)
    return opts


def _base_options(backend: Backend, info: InstanceInfo, stages: int) -> Any:
    if backend.is_portable or not info.distributed:
        return backend.poptorch.Options()
    import popdist.poptorch  # the SDK's launcher support, present wherever poprun is
    return popdist.poptorch.Options(ipus_per_replica=stages)


def _portable_settings(opts: Any, args: Any, backend: Backend, info: InstanceInfo) -> None:
    opts.Portable.device(backend.device)
    opts.Portable.executor(getattr(args, "executor", "auto"))
    if args.precision == "16.32":
        opts.Portable.autocast(backend.half_dtype)
    fmt = args.memory_format
    opts.Portable.channelsLast(fmt == "channels_last" or (fmt == "auto" and backend.device == "cuda"))
    if backend.device == "cuda":
        stages = num_stages(args)
        count = torch.cuda.device_count()
        first = (info.local_rank * stages) % max(1, count)
        opts.Portable.devices([f"cuda:{(first + k) % count}" for k in range(stages)])


def inference_options(args: Any, backend: Backend, info: InstanceInfo) -> Any:
    opts = common_options(args, backend, info)
    opts.outputMode(backend.poptorch.OutputMode.All)
    if args.data == "synthetic":
        opts.enableSyntheticData(True)
    return opts


def no_effect_report(opts: Any, args: Any, backend: Backend) -> List[Dict[str, str]]:
    """Options accepted but without effect on this backend, for results.json and one log line each."""
    if not backend.is_portable:
        executor = getattr(args, "executor", "auto")
        if executor != "auto":
            return [{"option": "executor", "value": executor, "reason": "PopTorch compiles with PopART on IPU"}]
        return []
    entries = list(opts.no_effect())
    for var in ENGINE_ENV_VARS:
        if os.environ.get(var):
            entries.append({"option": var, "value": os.environ[var], "reason": "Poplar engine environment variable"})
    return entries
