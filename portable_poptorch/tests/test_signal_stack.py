"""Compiling an OpenVINO step leaves the thread's alternate signal stack as it was (see compilers.signal_stack)."""
import importlib.util
import subprocess
import sys

import pytest

from portable_poptorch.compilers import signal_stack

_COMPILE_TWICE = """
import torch
from torch import nn
import portable_poptorch as poptorch
from portable_poptorch.compilers import signal_stack
before = signal_stack.current()
alive = []  # compiled models kept, as a run keeps its own
for batch in (2, 4):
    opts = poptorch.Options()
    opts.Portable.device("cpu")
    opts.Portable.executor("openvino")
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    alive.append(poptorch.inferenceModel(model, opts))
    alive[-1](torch.randn(batch, 3, 8, 8))
    assert signal_stack.current() == before, (before, signal_stack.current())
print("kept", before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack is read through glibc here")
def test_openvino_compile_keeps_the_threads_signal_stack():
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino is not installed here")
    # A fresh process: the pytest worker's own stack (faulthandler's) would hide a change.
    done = subprocess.run([sys.executable, "-X", "faulthandler=0", "-c", _COMPILE_TWICE], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "kept" in done.stdout


def test_body_that_changes_the_stack_is_undone():
    before = signal_stack.current()
    if before is None:
        pytest.skip("the alternate signal stack cannot be read on this platform")
    import ctypes
    area = ctypes.create_string_buffer(1 << 16)
    stack = signal_stack._Stack(ctypes.cast(area, ctypes.c_void_p), 0, len(area))
    with signal_stack.kept():
        assert signal_stack._LIBC.sigaltstack(ctypes.byref(stack), None) == 0
        assert signal_stack.current()[0] == ctypes.addressof(area)
    assert signal_stack.current() == before
