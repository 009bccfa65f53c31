"""What a run says once about where it runs: backend, device, options without effect, host allocator."""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch

from .backend import Backend
from .host_memory import configure_host_allocator
from .ipu_settings import no_effect_report


def report_backend(args: Any, opts: Any, backend: Backend, logger: Any) -> Tuple[str, List[Dict[str, str]], Dict[str, Any]]:
    """Log the backend line and the one-off notes; returns (device name, no-effect entries, allocator record)."""
    from portable_poptorch.device import device_name
    dev = "IPU" if not backend.is_portable else device_name(torch.device(backend.device))
    logger.log(f"Backend: {backend.name} on {backend.device} ({dev}); torch {torch.__version__}")
    no_effect = no_effect_report(opts, args, backend)
    for entry in no_effect:
        logger.once(f"Option {entry['option']}={entry['value']} has no effect on {backend.device} "
                    f"({entry['reason']}); recorded in results.json.")
    if backend.note and args.precision.startswith("16"):
        logger.once(backend.note)
        no_effect.append({"option": "precision", "value": args.precision, "reason": backend.note})
    mode = getattr(args, "host_allocator", "resident")
    allocator = configure_host_allocator(mode, backend.device)
    logger.once(allocator["note"])
    if mode == "resident" and allocator["mode"] != "resident":
        no_effect.append({"option": "host_allocator", "value": "resident", "reason": allocator["reason"]})
    return dev, no_effect, allocator
