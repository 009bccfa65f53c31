"""The up-front memory estimate: a lower bound traced on the meta device, checked against host and device memory."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cnns.utils import memory_need, run_memory
from cnns.utils.errors import UsageError, failure_sentence
from tests.test_reliability import TR, _entry, assert_one_error_line, call

GIB = 2 ** 30


def test_footprint_counts_convolution_and_linear_tensors_of_one_image():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    size = memory_need.footprint(model, 8)
    assert size.peak == 3 * 64 + 4 * 64
    assert size.saved == 4 * 64 + 10
    assert size.parameters == sum(p.numel() for p in model.parameters())
    assert all(p.device.type == "cpu" for p in model.parameters()), "the model itself is left alone"


def test_training_activations_that_cannot_fit_are_refused_before_any_work(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_memory, "available_host_bytes", lambda: GIB)
    main = _entry("train", monkeypatch)
    code, err = call(main, TR + ["--device", "cpu", "--model", "resnet50", "--batch-size", "64"], capsys)
    assert_one_error_line(code, err, 2, "(64 images of 224x224, resnet50, training) needs at least")
    assert "more than the 1.0 GiB available" in err and "activations" in err


def test_a_cuda_run_is_checked_against_the_devices_free_memory(monkeypatch):
    from cnns.utils import backend
    monkeypatch.setattr(backend, "resolve_device", lambda device, real_imports=None: "cuda")
    monkeypatch.setattr(run_memory, "available_host_bytes", lambda: 1000 * GIB)
    monkeypatch.setattr(run_memory, "free_device_bytes", lambda device: GIB // 2)
    args = _benchmark_args(["--batch-size", "256"])
    with pytest.raises(UsageError, match=r"of free memory on cuda:0 \(inputs .*\), more than the 0.5 GiB available"):
        run_memory.check_run_fits(args, 224, training=False)
    monkeypatch.setattr(run_memory, "free_device_bytes", lambda device: 1000 * GIB)
    run_memory.check_run_fits(args, 224, training=False)


def test_a_run_that_fits_is_not_refused(monkeypatch):
    monkeypatch.setattr(run_memory, "available_host_bytes", lambda: 8 * GIB)
    run_memory.check_run_fits(_benchmark_args(["--batch-size", "8", "--device", "cpu"]), 224, training=False)


def test_unknown_availability_refuses_nothing(monkeypatch):
    monkeypatch.setattr(run_memory, "available_host_bytes", lambda: None)
    run_memory.check_run_fits(_benchmark_args(["--batch-size", "100000", "--device", "cpu"]), 224, training=True)


def _benchmark_args(extra):
    import argparse
    return argparse.Namespace(device=extra[extra.index("--device") + 1] if "--device" in extra else "auto",
                              half_dtype="auto", batch_size=int(extra[extra.index("--batch-size") + 1]),
                              device_iterations=1, replicas=1, model="resnet18", efficientnet_expand_ratio=6,
                              efficientnet_group_dim=1, precision="32.32", eight_bit_io=False, pipeline_splits=[],
                              num_io_tiles=0, gradient_accumulation=1, recompute_mode="none")


@pytest.mark.parametrize("error,where", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried"), "host"),
    (MemoryError(), "host"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), "device"),
])
def test_an_allocator_refusal_mid_run_is_one_sentence(error, where):
    assert failure_sentence(error) == (f"Out of {where} memory; lower the batch size, device iterations, "
                                       f"replicas or image size.")
