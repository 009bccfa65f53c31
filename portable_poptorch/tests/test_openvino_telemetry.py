"""Compiling an OpenVINO step forks nothing: OpenVINO's usage telemetry (a forked sender process per
message, ten per model conversion) is declined (see compilers.openvino_runtime.without_telemetry)."""
import importlib.util
import os
import subprocess
import sys

import pytest

# Counts the processes started in a fresh interpreter while it runs BODY, sends being asynchronous.
_COUNTING = """
import multiprocessing, time
import torch
from torch import nn
started = []
multiprocessing.Process.start = lambda self: started.append(getattr(self, "_target", None))
{body}
time.sleep(2)
print("started", len(started))
"""
_HARNESS = """
import portable_poptorch as poptorch
opts = poptorch.Options()
opts.Portable.device("cpu")
opts.Portable.executor("openvino")
model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
x = torch.randn(2, 3, 8, 8)
assert torch.allclose(poptorch.inferenceModel(model, opts)(x), model(x), atol=1e-5)
"""
_BARE = """
import openvino as ov
ov.convert_model(nn.Linear(4, 4), example_input=torch.randn(2, 4))
"""


def started_processes(body: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "CI"}   # as on a user's machine
    done = subprocess.run([sys.executable, "-c", _COUNTING.format(body=body)], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split("started")[-1])


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed here")
def test_openvino_compile_starts_no_process_and_a_bare_conversion_does():
    assert started_processes(_HARNESS) == 0
    # the check means something only where the converter would send (not declined on this machine)
    from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    if OptInChecker().check(False, False) == ConsentCheckResult.DECLINED:
        pytest.skip("OpenVINO telemetry is declined on this machine (its consent file)")
    assert started_processes(_BARE) > 0
