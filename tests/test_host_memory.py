"""--host-allocator: glibc thresholds on CPU runs, recorded and said once; other devices keep defaults."""
import json
import resource
import subprocess
import sys

import pytest

from cnns.utils.host_memory import MMAP_THRESHOLD_BYTES, configure_host_allocator


_FAULTS_PER_STEP = """
import resource, sys
import torch, torchvision
from cnns.utils.host_memory import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, _libc, configure_host_allocator
if sys.argv[1] == "map-afresh":
    libc = _libc()
    assert libc.mallopt(M_MMAP_THRESHOLD, 128 << 10) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 128 << 10) == 1
else:
    configure_host_allocator(sys.argv[1], "cpu")
torch.set_num_threads(1)
torch.manual_seed(0)
model, x = torchvision.models.resnet18().eval(), torch.randn(4, 3, 160, 160)
with torch.no_grad():
    for _ in range(3):
        model(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        model(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def test_resident_on_cpu_reuses_activations_without_page_faults():
    """Counted in fresh processes: page faults are per process, and runtime thread pools left by
    other tests in a pytest worker fault pages of their own while a test counts. Beside it, glibc
    held at its initial thresholds (every buffer of 128 KiB or more mapped afresh and unmapped when
    freed) shows that the count does see activations being mapped afresh. glibc's own default is no
    such witness: its mmap threshold rises with the buffers freed, so it reads 0 faults a step on one
    machine or run and thousands on another."""
    faults = {}
    for mode in ("resident", "map-afresh"):
        done = subprocess.run([sys.executable, "-c", _FAULTS_PER_STEP, mode], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        faults[mode] = float(done.stdout.split()[-1])
    pages_per_mib = (1 << 20) // resource.getpagesize()
    assert faults["resident"] < 4 * pages_per_mib, faults       # seen: 0-1 MiB a step
    assert faults["map-afresh"] > 32 * pages_per_mib, faults    # seen: about 121 MiB a step


def test_resident_record_names_the_thresholds():
    record = configure_host_allocator("resident", "cpu")
    assert record["mode"] == "resident" and record["mmap_threshold_bytes"] == MMAP_THRESHOLD_BYTES
    assert "--host-allocator default" in record["note"]


def test_default_mode_changes_nothing_and_says_so():
    record = configure_host_allocator("default", "cpu")
    assert record["mode"] == "default" and "--host-allocator default" in record["note"]


def test_other_devices_keep_glibc_defaults_with_the_reason():
    record = configure_host_allocator("resident", "cuda")
    assert record["mode"] == "default" and "cuda" in record["reason"] and "cuda" in record["note"]


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="jemalloc"):
        configure_host_allocator("jemalloc", "cpu")


def test_huge_pages_restart_applies_only_where_the_kernel_leaves_them_to_madvise(monkeypatch, tmp_path):
    from cnns.utils import host_memory
    setting = tmp_path / "enabled"
    setting.write_text("always [madvise] never\n")
    monkeypatch.setattr(host_memory, "THP_SETTING", str(setting))
    monkeypatch.setattr(host_memory, "_glibc_version", lambda: (2, 36))
    monkeypatch.setattr(host_memory.sys, "platform", "linux")
    assert host_memory.huge_pages_problem(["--model", "resnet18"], {}) is None
    assert host_memory.huge_pages_problem(["--host-allocator", "default"], {}) == "--host-allocator default"
    assert host_memory.huge_pages_problem(["--host-allocator=default"], {}) == "--host-allocator default"
    assert "already" in host_memory.huge_pages_problem([], {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})
    monkeypatch.setattr(host_memory, "_glibc_version", lambda: (2, 31))
    assert "2.35" in host_memory.huge_pages_problem([], {})
    monkeypatch.setattr(host_memory, "_glibc_version", lambda: (2, 36))
    setting.write_text("[always] madvise never\n")
    assert "'always'" in host_memory.huge_pages_problem([], {})
    setting.unlink()
    assert "'unavailable'" in host_memory.huge_pages_problem([], {})


def test_run_benchmark_restarts_with_glibc_huge_pages_where_they_apply(tmp_path):
    """The restart keeps the PID and the command line; results.json says whether glibc used huge pages."""
    import json
    import os
    from cnns.utils.host_memory import huge_pages_problem
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    cmd = [sys.executable, os.path.join(repo, "inference", "run_benchmark.py"), "--data", "synthetic", "--model",
           "resnet18", "--precision", "32.32", "--random-weights", "--iterations", "2", "--executor", "eager",
           "--device", "cpu", "--log-path", str(tmp_path)]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=600)
    results = json.loads(next(tmp_path.glob("*/results.json")).read_text())
    expected = huge_pages_problem(cmd[2:], env) is None
    assert results["host_allocator"]["huge_pages"] is expected


_TRIM = """
import ctypes, json
from cnns.utils import peak_memory
from cnns.utils.host_memory import configure_host_allocator
configure_host_allocator("resident", "cpu")
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
blocks = [libc.malloc(1 << 20) for _ in range(300)]   # below the resident mmap threshold: on the heap
for block in blocks:
    ctypes.memset(block, 1, 1 << 20)
for block in blocks:
    libc.free(block)
returned = peak_memory.reset()
print(json.dumps({"returned": returned, **peak_memory.peaks("cpu")}))
"""


def test_reset_hands_freed_heap_back_and_keeps_the_process_peak():
    """What compiling freed stays resident under the resident allocator's 1 GiB trim threshold; reset()
    returns it to the OS so the measured calls' peak leaves it out, while the process's peak keeps it (the
    kernel's high-water mark alone would lose it). In a fresh process: mallopt is process-wide."""
    done = subprocess.run([sys.executable, "-c", _TRIM], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures["returned"] > 250, figures                  # of the 300 MiB freed
    assert figures["process_max_rss_mb"] > figures["peak_host_rss_mb"] + 250, figures
