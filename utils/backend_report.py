"""What a run says once about where it runs: backend, device, options without effect, host allocator,
CPU threads."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List

import torch

from .backend import Backend
from .cpu_threads import configure_cpu_threads
from .host_memory import configure_host_allocator
from .ipu_settings import no_effect_report
from .unused_options import unused_options


@dataclasses.dataclass
class BackendRecord:
    """The run's environment as recorded in results.json."""

    device_name: str
    no_effect: List[Dict[str, str]]
    host_allocator: Dict[str, Any]
    cpu_threads: Dict[str, Any]

    def results_fields(self, args: Any, backend: Backend, instances: int) -> Dict[str, Any]:
        """The results.json fields every job writes alike: what ran, where, on which versions."""
        from .ipu_settings import num_stages
        return {"model": args.model, "data": args.data, "precision": args.precision, "batch_size": args.batch_size,
                "replicas": args.replicas, "device_iterations": args.device_iterations, "instances": instances,
                "pipeline_stages": num_stages(args), "half_dtype": str(backend.half_dtype), "backend": backend.name,
                "device": backend.device, "device_name": self.device_name, "cpu_threads": self.cpu_threads,
                "host_allocator": self.host_allocator, "torch_version": torch.__version__,
                "poptorch_version": getattr(backend.poptorch, "__version__", "?"), "no_effect": self.no_effect}


def report_backend(args: Any, opts: Any, backend: Backend, logger: Any) -> BackendRecord:
    """Log the backend line and the one-off notes, set the CPU threads; returns what to record."""
    from portable_poptorch.device import device_name
    dev = "IPU" if not backend.is_portable else device_name(torch.device(backend.device))
    logger.log(f"Backend: {backend.name} on {backend.device} ({dev}); torch {torch.__version__}")
    no_effect = no_effect_report(opts, args, backend)
    for entry in no_effect:
        logger.once(f"Option {entry['option']}={entry['value']} has no effect on {backend.device} "
                    f"({entry['reason']}); recorded in results.json.")
    for entry in unused_options(args, backend):
        logger.once(f"Option {entry['option']}={entry['value']} has no effect in this run ({entry['reason']}); "
                    f"recorded in results.json.")
        no_effect.append(entry)
    if backend.note and args.precision.startswith("16"):
        logger.once(backend.note)
        no_effect.append({"option": "precision", "value": args.precision, "reason": backend.note})
    mode = getattr(args, "host_allocator", "resident")
    allocator = configure_host_allocator(mode, backend.device)
    logger.once(allocator["note"])
    if mode == "resident" and allocator["mode"] != "resident":
        no_effect.append({"option": "host_allocator", "value": "resident", "reason": allocator["reason"]})
    threads = configure_cpu_threads()
    logger.once(threads["note"])
    return BackendRecord(dev, no_effect, allocator, {k: v for k, v in threads.items() if k != "note"})
