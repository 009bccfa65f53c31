"""Step compilers behind ``inferenceModel``/``trainingModel``: eager, Inductor, ONNX Runtime, OpenVINO."""
from .base import CompileContext, CompilerUnavailable, StepCompiler, remove_stale_temporaries
from .cache_key import artefact_key, choice_key
from .selection import COMPILERS, EXECUTORS, Selection, forget_choices, select

__all__ = ["CompileContext", "CompilerUnavailable", "StepCompiler", "artefact_key", "choice_key",
           "COMPILERS", "EXECUTORS", "Selection", "forget_choices", "remove_stale_temporaries", "select"]
