"""Errors raised by portable_poptorch for misuse that PopTorch would also reject."""


class Error(RuntimeError):
    """Base class, mirrors ``poptorch.Error``."""


class ConfigError(Error, ValueError):
    """An option combination PopTorch rejects at compile time (e.g. too few device iterations)."""


class BatchSizeError(ConfigError):
    """The host batch does not split into micro-batches x device iterations x replicas."""
