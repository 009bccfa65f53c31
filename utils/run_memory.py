"""The memory a benchmark or training run of the harness needs, checked when its options are parsed.

Host memory holds the host batch (``batch x device iterations x replicas x gradient accumulation``
images); on the CPU it also holds the weights and the activations. A CUDA device holds the host batch
(one micro-step's share with IO overlap), the weights and the activations; it is checked against its
free memory. Activations: inference runs the replicas' micro-batches together, training one replica's
micro-batch at a time and keeps every layer's output for the backward pass (the largest layer only
with recomputation). On IPUs the device side is PopTorch's to check.
"""
from __future__ import annotations

import argparse
from typing import Callable, List, Optional, Tuple

import torch

from .memory_need import Need, available_host_bytes, check_needs, free_device_bytes, zoo_footprint

ADVICE = "lower --batch-size, --device-iterations, --replicas or the image size"


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _cuda_device(args: argparse.Namespace) -> str:
    from .distributed import instance_cuda_devices, instance_info
    return instance_cuda_devices(instance_info(), 1, torch.cuda.device_count())[0]


def check_run_fits(args: argparse.Namespace, side: int, training: bool) -> None:
    """Refuses options whose host batch, weights and activations cannot fit where the run puts them."""
    from cnns.datasets.sources import input_dtype
    from .backend import half_dtype_for, resolve_device
    device = resolve_device(args.device)
    half = half_dtype_for(device, args.half_dtype)
    accumulation = getattr(args, "gradient_accumulation", 1) if training else 1
    per_call = args.device_iterations * args.replicas * accumulation
    images = args.batch_size * per_call
    input_bytes = images * 3 * side * side * _element_size(input_dtype(args, half))
    needs: List[Tuple[Need, Callable[[], Optional[int]]]] = []
    if device == "ipu":
        needs.append((Need("host memory", (("inputs", input_bytes),)), available_host_bytes))
    else:
        model = zoo_footprint(args.model, side, args.efficientnet_expand_ratio, args.efficientnet_group_dim)
        value = _element_size(half) if args.precision.startswith("16") else 4
        per_image = model.saved if training and getattr(args, "recompute_mode", "none") == "none" else model.peak
        together = args.batch_size * (1 if training else args.replicas)
        weight = value if args.precision == "16.16" else 4
        compute = (("weights", model.parameters * weight * (2 if training else 1)),
                   ("activations", per_image * together * value))
        if device == "cpu":
            needs.append((Need("host memory", (("inputs", input_bytes),) + compute), available_host_bytes))
        else:
            needs.append((Need("host memory", (("inputs", input_bytes),)), available_host_bytes))
            if not args.pipeline_splits:
                on_device = input_bytes // per_call if args.num_io_tiles else input_bytes
                where = _cuda_device(args)
                needs.append((Need(f"free memory on {where}", (("inputs", on_device),) + compute),
                              lambda: free_device_bytes(where)))
    asked = (f"--batch-size {args.batch_size} x --device-iterations {args.device_iterations} x --replicas "
             f"{args.replicas}{f' x --gradient-accumulation {accumulation}' if training else ''} "
             f"({images} images of {side}x{side}, {args.model}{', training' if training else ''})")
    check_needs(needs, asked, ADVICE)
