"""PopTorch API subset on CUDA/CPU, used when the real ``poptorch`` is not installed.

Same names and semantics as PopTorch for the parts the CNN harness uses; see docs/DESIGN.md §3 for the
mapping of each concept.
"""
import torch

from .blocks import (AutoStage, BeginBlock, Block, ParallelPhasedExecution, PipelinedExecution,
                     SerialPhasedExecution, ShardedExecution, Stage, identity_loss, recomputationCheckpoint)
from .dataloader import AsynchronousDataAccessor, DataLoader
from .enums import (AnchorMode, ConnectionType, DataLoaderMode, MeanReductionStrategy, OutputMode,
                    RecomputationType, ReductionType, SyntheticDataMode)
from .errors import BatchSizeError, ConfigError, Error
from .inference import inferenceModel
from .options import Options, TensorLocationSettings

__version__ = "portable-" + torch.__version__
IS_PORTABLE = True


def ipuHardwareIsAvailable(num_ipus: int = 1) -> bool:
    """There are no IPUs behind this implementation."""
    return False


def ipuHardwareVersion() -> int:
    return 0


def __getattr__(name: str):
    if name == "trainingModel":
        from .training import trainingModel
        return trainingModel
    if name == "optim":
        import importlib
        return importlib.import_module(f"{__name__}.optim")
    raise AttributeError(f"module 'portable_poptorch' has no attribute {name!r}")
