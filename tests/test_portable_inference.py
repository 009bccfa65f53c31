"""portable_poptorch driving the harness's own pieces: model builders, pipeline splits and the
8-bit IO normalisation of the model table and the data pipeline (portable_poptorch's own tests,
which need only torch, are in portable_poptorch/tests/)."""
import pytest
import torch
from torch import nn

import portable_poptorch as poptorch
from cnns import models
from cnns.datasets import ToModelInput
from cnns.models import NormalizeInputModel


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()


@pytest.mark.slow
def test_eight_bit_io_with_device_normalisation_equals_host_normalisation():
    model = tiny_model()
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    host = (images.float() / 255 - mean) / std
    on_device = poptorch.inferenceModel(NormalizeInputModel(model), poptorch.Options().deviceIterations(2))(images)
    torch.testing.assert_close(on_device, model(host), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_resnet_split_by_module_paths_equals_unsplit():
    reference = models.get_model("resnet18", pretrained=False, log=lambda _: None).eval()
    split = models.get_model("resnet18", pretrained=False, log=lambda _: None).eval()
    split.load_state_dict(reference.state_dict())
    stages = models.apply_pipeline_splits(split, ["layer2", "layer4/0"], poptorch.BeginBlock)
    x = torch.randn(3, 3, 64, 64)
    out = poptorch.inferenceModel(split, poptorch.Options().deviceIterations(3))(x)
    assert stages == 3
    torch.testing.assert_close(out, reference(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_host_pipeline_eight_bit_and_host_normalisation_agree():
    model = tiny_model()
    img = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    host = ToModelInput("host", eight_bit_io=False)(img).unsqueeze(0)
    eight_bit = ToModelInput("ipu", eight_bit_io=True)(img).unsqueeze(0)
    assert eight_bit.dtype == torch.uint8
    wrapped = poptorch.inferenceModel(NormalizeInputModel(model), poptorch.Options())
    torch.testing.assert_close(wrapped(eight_bit), model(host), rtol=1e-4, atol=1e-5)
