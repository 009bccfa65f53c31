"""Tests for the models package: table, construction, norms, weights, pipeline splits, normalisation."""
import socket
import time

import pytest
import torch
from torch import nn

from cnns import models
from cnns.models import ModelConfigError

CANONICAL_NAMES = [
    "efficientnet-b0", "efficientnet-b1", "efficientnet-b2", "efficientnet-b3", "efficientnet-b4",
    "efficientnet-b5", "efficientnet-b6", "efficientnet-b7", "mobilenet", "mobilenet-v3-large",
    "mobilenet-v3-small", "resnet101", "resnet152", "resnet18", "resnet34", "resnet50", "resnext101",
    "resnext101_32x4d", "resnext50",
]
EXPECTED_INPUT_SIZES = {
    "efficientnet-b0": 224, "efficientnet-b1": 240, "efficientnet-b2": 260, "efficientnet-b3": 300,
    "efficientnet-b4": 380, "efficientnet-b5": 456, "efficientnet-b6": 528, "efficientnet-b7": 600,
}
SMALL_INPUT = 64


def quiet(_: str) -> None:
    pass


def build(name: str, **kwargs) -> nn.Module:
    kwargs.setdefault("pretrained", False)
    kwargs.setdefault("log", quiet)
    return models.get_model(name, **kwargs).eval()


def norm_layers(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm))]


def test_available_models_lists_canonical_names_sorted():
    assert models.available_models() == CANONICAL_NAMES
    assert sorted(models.MODEL_TABLE) == CANONICAL_NAMES


@pytest.mark.parametrize("name", CANONICAL_NAMES)
def test_model_input_size_matches_table(name):
    assert models.model_input_size(name) == EXPECTED_INPUT_SIZES.get(name, 224)
    assert models.MODEL_TABLE[name].input_size == models.model_input_size(name)


@pytest.mark.parametrize("name", CANONICAL_NAMES)
def test_every_model_builds_and_runs_one_step(name):
    torch.manual_seed(0)
    model = build(name, num_classes=7)
    with torch.no_grad():
        out = model(torch.rand(1, 3, SMALL_INPUT, SMALL_INPUT))
    assert out.shape == (1, 7)
    assert torch.isfinite(out).all()
    assert model.full_precision_norm is False


def test_resnet50_runs_at_its_native_input_size_with_1000_classes():
    size = models.model_input_size("resnet50")
    with torch.no_grad():
        out = build("resnet50")(torch.rand(1, 3, size, size))
    assert out.shape == (1, 1000)


@pytest.mark.parametrize("alias, canonical", [
    ("efficientnetb0", "efficientnet-b0"), ("efficientnet_b0", "efficientnet-b0"),
    ("EfficientNet-B3", "efficientnet-b3"), ("mobilenet-v2", "mobilenet"), ("mobilenet_v2", "mobilenet"),
    ("MobileNet_V3_Small", "mobilenet-v3-small"), ("resnext50_32x4d", "resnext50"),
    ("resnext101_32x8d", "resnext101"), ("resnext101-32x4d", "resnext101_32x4d"), ("ResNet50", "resnet50"),
])
def test_aliases_resolve(alias, canonical):
    assert models.canonical_model_name(alias) == canonical
    assert models.model_input_size(alias) == models.model_input_size(canonical)


def test_unknown_model_name_lists_accepted_names():
    with pytest.raises(ModelConfigError) as info:
        models.get_model("resnet51", pretrained=False, log=quiet)
    message = str(info.value)
    assert "'resnet51'" in message
    assert "resnet50" in message and "efficientnet-b7" in message and "mobilenet-v3-small" in message
    assert isinstance(info.value, ValueError)


def test_group_norm_replaces_every_batchnorm():
    batch_count = len(norm_layers(build("resnet18")))
    model = build("resnet18", norm_type="group", norm_num_groups=8, norm_eps=1e-3)
    groups = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert len(groups) == batch_count == 20
    assert {g.num_groups for g in groups} == {8}
    assert {g.eps for g in groups} == {1e-3}
    with torch.no_grad():
        assert model(torch.rand(1, 3, SMALL_INPUT, SMALL_INPUT)).shape == (1, 1000)


def test_group_norm_with_indivisible_channels_is_rejected():
    with pytest.raises(ModelConfigError, match="norm_num_groups=3"):
        build("resnet18", norm_type="group", norm_num_groups=3)


def test_norm_none_removes_norm_layers():
    model = build("mobilenet-v3-small", norm_type="none")
    assert norm_layers(model) == []
    with torch.no_grad():
        assert model(torch.rand(1, 3, SMALL_INPUT, SMALL_INPUT)).shape == (1, 1000)


def test_unknown_norm_type_is_rejected():
    with pytest.raises(ModelConfigError, match="'layer'.*batch, group, none"):
        build("resnet18", norm_type="layer")


def test_batchnorm_eps_and_momentum_are_applied():
    model = build("resnet18", norm_eps=1e-3, batchnorm_momentum=0.05)
    layers = norm_layers(model)
    assert {(m.eps, m.momentum) for m in layers} == {(1e-3, 0.05)}


def test_keep_norm_in_float32_after_bfloat16():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()
    reference = model(torch.rand(1, 3, 8, 8))
    model.to(torch.bfloat16)
    models.keep_norm_in_float32(model)
    models.keep_norm_in_float32(model)
    assert model[1].weight.dtype == torch.float32 and model[1].running_mean.dtype == torch.float32
    assert model[0].weight.dtype == torch.bfloat16
    out = model(torch.rand(1, 3, 8, 8, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == reference.shape
    assert len(model[1]._forward_pre_hooks) == 1


def test_full_precision_norm_is_recorded():
    assert build("resnet18", full_precision_norm=True).full_precision_norm is True


def test_pipeline_split_names_use_slash_paths():
    names = models.pipeline_split_names(build("resnet18"))
    assert "layer3/0" in names and "layer1/0/conv1" in names and "fc" in names
    assert names.index("layer1/0/conv1") < names.index("layer3/0")
    assert "_blocks/4" in models.pipeline_split_names(build("efficientnet-b0"))


class RecordingBeginBlock:
    """Stands in for poptorch.BeginBlock and wraps each module so replacement can be checked."""

    def __init__(self):
        self.calls = []

    def __call__(self, module, user_id=None, ipu_id=None):
        self.calls.append((module, ipu_id))
        return MarkedModule(module)


class MarkedModule(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


def test_apply_pipeline_splits_marks_stages_in_order():
    model = build("resnet18")
    conv1, layer2_0, layer3_1_conv2 = model.conv1, model.layer2[0], model.layer3[1].conv2
    begin_block = RecordingBeginBlock()
    stages = models.apply_pipeline_splits(model, ["layer2/0", "layer3/1/conv2"], begin_block)
    assert stages == 3
    assert [ipu for _, ipu in begin_block.calls] == [0, 1, 2]
    assert [module for module, _ in begin_block.calls] == [conv1, layer2_0, layer3_1_conv2]
    assert isinstance(model.conv1, MarkedModule) and isinstance(model.layer2[0], MarkedModule)
    assert isinstance(model.layer3[1].conv2, MarkedModule)
    with torch.no_grad():
        assert model(torch.rand(1, 3, SMALL_INPUT, SMALL_INPUT)).shape == (1, 1000)


def test_apply_pipeline_splits_without_splits_is_one_stage():
    begin_block = RecordingBeginBlock()
    assert models.apply_pipeline_splits(build("resnet18"), [], begin_block) == 1
    assert begin_block.calls == []


def test_splits_resolve_inside_normalising_wrapper():
    wrapped = models.NormalizeInputModel(build("mobilenet-v3-small"))
    assert "features/4" in models.pipeline_split_names(wrapped)
    begin_block = RecordingBeginBlock()
    assert models.apply_pipeline_splits(wrapped, ["features/4"], begin_block) == 2
    assert [ipu for _, ipu in begin_block.calls] == [0, 1]


def test_unknown_split_names_the_bad_split():
    with pytest.raises(ModelConfigError) as info:
        models.apply_pipeline_splits(build("resnet18"), ["layer2", "layer9/0"], RecordingBeginBlock())
    assert "'layer9/0'" in str(info.value)
    assert "layer3" in str(info.value)


@pytest.mark.parametrize("splits", [["layer3", "layer2"], ["layer2", "layer2"], ["conv1"], ["layer3", "layer3/0"]])
def test_splits_leaving_an_empty_stage_are_rejected(splits):
    begin_block = RecordingBeginBlock()
    with pytest.raises(ModelConfigError, match="without layers"):
        models.apply_pipeline_splits(build("resnet18"), splits, begin_block)
    assert begin_block.calls == []


def test_normalize_input_model_matches_host_normalisation():
    torch.manual_seed(0)
    model = build("resnet18")
    images = torch.randint(0, 256, (2, 3, SMALL_INPUT, SMALL_INPUT), dtype=torch.uint8)
    mean = torch.tensor(models.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(models.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model((images.float() / 255.0 - mean) / std)
        actual = models.NormalizeInputModel(model)(images)
    assert torch.allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_normalize_input_model_follows_wrapper_dtype():
    wrapper = models.NormalizeInputModel(nn.Identity()).to(torch.bfloat16)
    out = wrapper(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    assert out.dtype == torch.bfloat16
    expected = (1.0 - torch.tensor(models.IMAGENET_MEAN)) / torch.tensor(models.IMAGENET_STD)
    assert torch.allclose(out[0, :, 0, 0].float(), expected, atol=0.02)
    assert wrapper.scale.shape == (1, 3, 1, 1)


def test_weights_file_round_trip(tmp_path):
    torch.manual_seed(1)
    original = build("resnet18", num_classes=10)
    path = tmp_path / "resnet18.pt"
    torch.save(original.state_dict(), path)
    logs = []
    loaded = models.get_model("resnet18", num_classes=10, weights=str(path), log=logs.append).eval()
    images = torch.rand(1, 3, SMALL_INPUT, SMALL_INPUT)
    with torch.no_grad():
        assert torch.equal(loaded(images), original(images))
    assert any(str(path) in line for line in logs)


def test_training_checkpoint_with_wrapped_keys_loads(tmp_path):
    torch.manual_seed(2)
    original = build("mobilenet-v3-small", num_classes=5)
    wrapped_state = models.NormalizeInputModel(original).state_dict()
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "model_state_dict": wrapped_state}, path)
    loaded = build("mobilenet-v3-small", num_classes=5, weights=str(path))
    images = torch.rand(1, 3, SMALL_INPUT, SMALL_INPUT)
    with torch.no_grad():
        assert torch.equal(loaded(images), original(images))


def test_weights_from_another_model_are_rejected(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save(build("mobilenet-v3-small").state_dict(), path)
    with pytest.raises(ModelConfigError, match="wrong.pt"):
        build("resnet18", weights=str(path))


def test_missing_weights_file_is_rejected(tmp_path):
    with pytest.raises(ModelConfigError, match="missing.pt"):
        build("resnet18", weights=str(tmp_path / "missing.pt"))


def test_efficientnet_expand_ratio_and_group_dim_variant():
    model = build("efficientnet-b0", efficientnet_expand_ratio=4, efficientnet_group_dim=16, num_classes=3)
    with torch.no_grad():
        assert model(torch.rand(1, 3, SMALL_INPUT, SMALL_INPUT)).shape == (1, 3)
    depthwise = [block._depthwise_conv for block in model._blocks]
    assert all(conv.groups == conv.in_channels // 16 for conv in depthwise)
    assert all(conv.weight.shape[1] == 16 for conv in depthwise)
    assert not hasattr(model._blocks[0], "_expand_conv")
    assert all(block._block_args.expand_ratio == 4 for block in model._blocks[1:])
    second = model._blocks[1]
    assert second._expand_conv.out_channels == 4 * second._expand_conv.in_channels


def test_efficientnet_variant_options_are_rejected_for_other_models():
    with pytest.raises(ModelConfigError, match="resnet18"):
        build("resnet18", efficientnet_expand_ratio=4)


def test_pretrained_offline_falls_back_to_random_weights(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled by test")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    logs = []
    start = time.monotonic()
    model = models.get_model("resnet18", pretrained=True, log=logs.append)
    assert time.monotonic() - start < 10
    assert isinstance(model, nn.Module)
    assert len(logs) == 1 and "random weights" in logs[0] and "resnet18" in logs[0]
    assert socket.getdefaulttimeout() is None


def test_pretrained_weights_that_do_not_fit_are_skipped():
    logs = []
    models.get_model("efficientnet-b0", num_classes=10, pretrained=True, log=logs.append)
    assert logs == ["Pretrained weights for efficientnet-b0 do not fit this configuration "
                    "(num_classes=10 instead of 1000); using random weights."]


def test_random_weights_are_logged_and_independent():
    logs = []
    first = models.get_model("resnext101_32x4d", pretrained=False, log=logs.append)
    second = build("resnext101_32x4d")
    assert logs == ["Using random weights for resnext101_32x4d."]
    assert first.features is not second.features
    assert not torch.equal(first.features[0].weight, second.features[0].weight)
