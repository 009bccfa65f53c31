"""Pick the PopTorch implementation: the real ``poptorch`` on IPUs, else ``portable_poptorch``."""
from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType
from typing import Optional

import torch

from .errors import UsageError

DEVICES = ("auto", "ipu", "cuda", "cpu")


@dataclasses.dataclass(frozen=True)
class Backend:
    """The PopTorch module in use and where it runs."""

    poptorch: ModuleType
    name: str              # 'poptorch' or 'portable'
    device: str            # 'ipu', 'cuda' or 'cpu'
    half_dtype: torch.dtype
    note: str = ""         # said once in the log when 'half' is not a 16-bit type here

    @property
    def is_portable(self) -> bool:
        return self.name == "portable"


def _import_real_poptorch() -> Optional[ModuleType]:
    """The SDK's poptorch, or None when it is absent or cannot load (no SDK, wrong torch, no drivers)."""
    try:
        module = importlib.import_module("poptorch")
    except (ImportError, AssertionError, OSError):
        return None
    if getattr(module, "IS_PORTABLE", False):
        return None
    return module


def check_device(device: str) -> None:
    """``device`` is a --device value and, for cuda, torch sees a GPU: checked before any work."""
    if device not in DEVICES:
        raise UsageError(f"--device {device!r} is not one of {', '.join(DEVICES)}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu.")


def select_backend(device: str = "auto", half: str = "auto") -> Backend:
    """``device``: auto|ipu|cuda|cpu. ``half``: auto (float16 on IPU/CUDA, bfloat16 on CPUs with native
    bfloat16, float32 on other CPUs, with a note said once)|float16|bfloat16."""
    check_device(device)
    real = _import_real_poptorch() if device in ("auto", "ipu") else None
    if device == "ipu" and real is None:
        raise UsageError("--device ipu needs the Poplar SDK's poptorch, which is not importable here; "
                         "use --device auto, cuda or cpu.")
    if real is not None:
        return Backend(real, "poptorch", "ipu", _half(half, torch.float16))
    import portable_poptorch
    resolved = resolve_device(device, real_imports=False)
    if resolved == "cpu" and half == "auto" and not cpu_has_fast_bfloat16():
        return Backend(portable_poptorch, "portable", resolved, torch.float32, note=(
            "This CPU has no native 16-bit arithmetic (no AVX512-BF16/AMX), where half types run many times "
            "slower than float32; 'half' runs as float32 here. Pass --half-dtype bfloat16 or float16 to force it."))
    return Backend(portable_poptorch, "portable", resolved, half_dtype_for(resolved, half))


def resolve_device(device: str, real_imports: Optional[bool] = None) -> str:
    """Where --device ``device`` runs ('ipu', 'cuda' or 'cpu') by select_backend's rule, without building a
    Backend; ``real_imports`` says whether the SDK's poptorch imports (asked when None)."""
    if device in ("cuda", "cpu"):
        return device
    if device == "ipu" or (real_imports if real_imports is not None else _import_real_poptorch() is not None):
        return "ipu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def half_dtype_for(device: str, half: str) -> torch.dtype:
    """What 'half' is on ``device``: float16 on IPU/CUDA, bfloat16 on CPUs with native bfloat16, float32 on
    other CPUs, unless --half-dtype forces one."""
    if device == "cpu" and half == "auto" and not cpu_has_fast_bfloat16():
        return torch.float32
    return _half(half, torch.bfloat16 if device == "cpu" else torch.float16)


def cpu_has_fast_bfloat16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX), so bfloat16 beats float32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def _half(choice: str, default: torch.dtype) -> torch.dtype:
    table = {"auto": default, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if choice not in table:
        raise UsageError(f"--half-dtype {choice!r} is not one of {', '.join(table)}.")
    return table[choice]
