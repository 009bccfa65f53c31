"""PopTorch enums with PopTorch's names so harness code is identical on both backends."""
import enum


class OutputMode(enum.IntEnum):
    """Which micro-batch outputs come back to the host per call."""

    Final = 0
    EveryN = 1
    All = 2
    Sum = 3
    Default = 4


AnchorMode = OutputMode


class ReductionType(enum.IntEnum):
    """How gradients are reduced over accumulation steps and replicas."""

    Sum = 0
    Mean = 1
    NoReduction = 2


class MeanReductionStrategy(enum.IntEnum):
    Running = 0
    Post = 1
    PostAndLoss = 2


class DataLoaderMode(enum.IntEnum):
    """Sync loads in the caller; Async prefetches on a background thread; AsyncRebatched also rebatches."""

    Sync = 0
    Async = 1
    AsyncRebatched = 2


class RecomputationType(enum.IntEnum):
    NoRecompute = 0
    Standard = 1
    Pipelined = 2
    RecomputeAll = 3


class SyntheticDataMode(enum.IntEnum):
    Off = 0
    Zeros = 1
    RandomNormal = 2


class AutoStage(enum.IntEnum):
    SameAsIpu = 0
    AutoIncrement = 1


class ConnectionType(enum.IntEnum):
    Always = 0
    OnDemand = 1
    Never = 2
