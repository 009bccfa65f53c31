"""benchmarks/conv_bound.py: multiply-adds counted from the model, ONNX Runtime's time per operator type."""
import re

import torch
from torch import nn

from tests.scripts import load_benchmark


def test_multiply_adds_count_grouped_convolutions_and_linear_layers():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=2),
                          nn.Conv2d(8, 4, 1, stride=2), nn.Flatten(), nn.Linear(4 * 2 * 2, 10))
    counts = load_benchmark("conv_bound").multiply_adds(model, torch.randn(2, 3, 4, 4))
    # per sample: 8*16 outputs x 3*9 inputs, 8*16 x 4*9 (two groups of 4 channels), 4*4 x 8; the linear 10 x 16
    assert counts == {"conv": 2 * (8 * 16 * 27 + 8 * 16 * 36 + 4 * 4 * 8), "linear": 2 * 10 * 16}
    assert not any(m._forward_hooks for m in model.modules())   # hooks removed after counting


def test_resnet18_profile_is_mostly_convolution_with_its_known_multiply_adds(capsys):
    script = load_benchmark("conv_bound")
    by_op, wall_ms, macs = script.ort_profile("resnet18", 1, calls=2, threads=1)
    assert abs(macs["conv"] / 1e9 - 1.814) < 0.005 and macs["linear"] == 512 * 1000   # torchvision's 1.81 GMACs
    assert wall_ms > 0 and by_op["Conv"] > 0.8 * sum(by_op.values())
    script.main(["--model", "resnet18", "--batch-size", "1", "--calls", "1"])
    out = capsys.readouterr().out
    assert re.search(r"^Convolutions: 1\.81 G multiply-adds in [\d.]+ ms = \d+ GFLOP/s, [\d.]+x the baseline$", out, re.M), out
