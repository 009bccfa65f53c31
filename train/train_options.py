"""Training and validation arguments -> PopTorch ``Options`` (same calls on IPUs and portable_poptorch)."""
from __future__ import annotations

import copy
from typing import Any, Optional

from cnns.utils.backend import Backend
from cnns.utils.distributed import InstanceInfo
from cnns.utils.ipu_settings import common_options, inference_options, num_stages, popdist_active

# popart.RecomputationType values (None=0, Standard=1, NormOnly=2, Pipeline=3, RecomputeAll=4).
RECOMPUTE_STANDARD = 1
RECOMPUTE_ALL = 4


def training_options(args: Any, backend: Backend, info: InstanceInfo, report_dir: Optional[str] = None) -> Any:
    """Common options plus gradient accumulation (mean-reduced), Sum outputs (per replica, summed over the
    call's micro-batches) and the training switches, as the original's train_settings and
    create_training_opts; settings only the IPU has are set on IPUs always and off IPU when asked for."""
    poptorch = backend.poptorch
    ipu = not backend.is_portable
    opts = common_options(args, backend, info, report_dir)
    if ipu:
        opts._Popart.set("scheduleNonWeightUpdateGradientConsumersEarly", True)
        opts._Popart.set("disableGradAccumulationTensorStreams", True)
        if args.seed is not None:  # train.py has drawn one when --seed is unset
            opts.randomSeed(args.seed)
    if args.enable_stochastic_rounding or ipu:
        opts.Precision.enableStochasticRounding(bool(args.enable_stochastic_rounding))
    opts.enableStableNorm(not args.disable_stable_batchnorm)
    if args.enable_fp_exceptions:
        opts.Precision.enableFloatingPointExceptions(True)
    if ipu and args.recompute_mode != "none" and num_stages(args) == 1:
        opts._Popart.set("explicitRecomputation", True)
        opts._Popart.set("autoRecomputation", RECOMPUTE_STANDARD if args.recompute_mode == "auto" else RECOMPUTE_ALL)
    if args.offload_optimizer or args.enable_optimizer_rts:
        # both placements are stated, as the original does, so neither is left to PopTorch's default
        settings = poptorch.TensorLocationSettings()
        settings.useOnChipStorage(not args.offload_optimizer)
        settings.useReplicatedTensorSharding(bool(args.enable_optimizer_rts))
        opts.TensorLocations.setOptimizerLocation(settings)
    if args.auto_loss_scaling:
        opts.Training.setAutomaticLossScaling(True)
    opts.outputMode(poptorch.OutputMode.Sum)
    if args.data == "synthetic":
        opts.enableSyntheticData(True)
    opts.Training.accumulationAndReplicationReductionType(poptorch.ReductionType.Mean)
    opts.Training.gradientAccumulation(args.gradient_accumulation)
    if ipu and args.compile_only:
        opts.useOfflineIpuTarget(poptorch.ipuHardwareVersion())
    return opts


def validation_args(args: Any) -> Any:
    """Validation runs in one process with at least one device iteration per pipeline stage, and with
    PopTorch's default memory proportion (the training's is for the backward pass), as the original."""
    val = copy.copy(args)
    val.device_iterations = max(args.device_iterations, num_stages(args))
    val.available_memory_proportion = None
    return val


def validation_options(args: Any, backend: Backend) -> Any:
    """Inference options for validation; on IPUs outside poprun the model is kept out of any distributed
    set-up (Distributed.disable()), as the original's create_validation_opts."""
    opts = inference_options(validation_args(args), backend, InstanceInfo(0, 1, 0))
    if not backend.is_portable and not popdist_active():
        opts.Distributed.disable()
    return opts
