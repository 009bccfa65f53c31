"""--host-allocator: glibc thresholds on CPU runs, recorded and said once; other devices keep defaults."""
import resource

import pytest
import torch

from cnns.utils.host_memory import MMAP_THRESHOLD_BYTES, configure_host_allocator


def test_resident_on_cpu_reuses_freed_buffers_without_page_faults():
    record = configure_host_allocator("resident", "cpu")
    assert record["mode"] == "resident" and record["mmap_threshold_bytes"] == MMAP_THRESHOLD_BYTES
    elements = (16 << 20) // 4  # a 16 MiB activation-sized buffer, below the 32 MiB threshold
    for _ in range(10):  # glibc pads aligned requests, so the pool settles after a few frees coalesce
        torch.empty(elements).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.empty(elements).fill_(1.0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    pages_per_buffer = (16 << 20) // resource.getpagesize()
    assert faults < pages_per_buffer  # re-mapping would fault every page of all 20 buffers


def test_default_mode_changes_nothing_and_says_so():
    record = configure_host_allocator("default", "cpu")
    assert record["mode"] == "default" and "--host-allocator default" in record["note"]


def test_other_devices_keep_glibc_defaults_with_the_reason():
    record = configure_host_allocator("resident", "cuda")
    assert record["mode"] == "default" and "cuda" in record["reason"] and "cuda" in record["note"]


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="jemalloc"):
        configure_host_allocator("jemalloc", "cpu")
