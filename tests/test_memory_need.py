"""The up-front memory estimate: a lower bound traced on the meta device, checked against host and device memory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from cnns.utils import memory_need, run_memory
from cnns.utils.errors import UsageError, failure_sentence
from tests.conftest import REPO_ROOT
from tests.test_reliability import TR, _entry, assert_one_error_line, call

GIB = 2 ** 30


def test_footprint_counts_convolution_and_linear_tensors_of_one_image():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    size = memory_need.footprint(model, 8)
    assert size.peak == 3 * 64 + 4 * 64
    assert size.saved == 4 * 64 + 10
    assert size.parameters == sum(p.numel() for p in model.parameters())
    assert all(p.device.type == "cpu" for p in model.parameters()), "the model itself is left alone"


def test_the_zoo_footprint_traced_in_a_forked_child_is_the_one_traced_here():
    here = memory_need.footprint(memory_need.meta_zoo_model("mobilenet-v3-small", 6, 1).eval(), 96)
    forked = memory_need._in_forked_child(memory_need._zoo_footprint_here, "mobilenet-v3-small", 96, 6, 1)
    assert forked == here and here.peak > 0 and here.saved > here.peak
    assert memory_need._in_forked_child(memory_need._zoo_footprint_here, "mobilenet-v3-small", 128, 6, 1) != here


def test_a_failing_or_stuck_child_leaves_the_trace_to_this_process(monkeypatch):
    from cnns.models.errors import ModelConfigError
    assert memory_need._in_forked_child(memory_need._zoo_footprint_here, "no-such-model", 96, 6, 1) is None
    with pytest.raises(ModelConfigError):   # the error is raised here, as without the child
        memory_need.zoo_footprint.__wrapped__("no-such-model", 96, 6, 1)
    monkeypatch.setattr(memory_need, "FORKED_TRACE_SECONDS", 0.2)
    started = time.monotonic()
    assert memory_need._in_forked_child(lambda: time.sleep(30)) is None
    assert time.monotonic() - started < 10
    def refuse():
        raise OSError(12, "Cannot allocate memory")
    monkeypatch.setattr(os, "fork", refuse)
    assert memory_need._in_forked_child(memory_need._zoo_footprint_here, "resnet18", 64, 6, 1) is None
    monkeypatch.delattr(os, "fork")
    assert memory_need._in_forked_child(memory_need._zoo_footprint_here, "resnet18", 64, 6, 1) is None
    assert memory_need.zoo_footprint.__wrapped__("resnet18", 64, 6, 1).parameters == 11_689_512


@pytest.mark.slow
def test_a_synthetic_run_never_loads_torchvision_or_torchs_compiler_stack(tmp_path):
    """The up-front check and the data modules leave torchvision (which imports torch._dynamo, sympy and
    triton: about 160 MB) and the meta trace's sympy out of a run that does not use them."""
    script = ("import json, runpy, sys\n"
              "sys.argv = ['run_benchmark.py', '--data', 'synthetic', '--model', 'efficientnet-b0', '--batch-size', "
              f"'1', '--iterations', '2', '--executor', 'eager', '--random-weights', '--log-path', {str(tmp_path)!r}]\n"
              "try:\n    runpy.run_path('run_benchmark.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
              "print(json.dumps(sorted(m for m in ('torchvision', 'torch._dynamo', 'sympy') if m in sys.modules)))\n")
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.hugetlb=1")   # no re-exec: this process is the run
    out = subprocess.run([sys.executable, "-c", script], cwd=os.path.join(REPO_ROOT, "inference"), env=env,
                         capture_output=True, text=True, timeout=300)
    assert "Throughput at bs=1" in out.stdout, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


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
