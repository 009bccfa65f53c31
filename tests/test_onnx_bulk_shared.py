"""onnx_bulk reads the shared facts: the model table's preprocessing and the shared ResNeXt-101 builder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnns.inference.onnx_bulk.data import ImageFolderDataset, image_transform
from cnns.inference.onnx_bulk.dataloader import HostBufferLoader, step_buffer_bytes
from cnns.inference.onnx_bulk.resnext101 import input_preprocessing
from cnns.models import model_input_size, model_preprocessing
from cnns.models.preprocessing import Preprocessing


def test_input_is_the_model_tables():
    preprocessing, side = input_preprocessing()
    assert preprocessing == model_preprocessing("resnext101_32x4d") and side == model_input_size("resnext101_32x4d")
    assert (preprocessing.mean, preprocessing.std, side) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 224)


def test_a_grey_image_is_normalised_with_the_tables_mean_and_std():
    preprocessing, side = input_preprocessing()
    out = image_transform(preprocessing, side)(Image.new("L", (320, 240), 128))
    assert out.shape == (3, 224, 224) and out.dtype == np.float32 and out.flags.c_contiguous
    expected = (128 / 255 - np.array(preprocessing.mean)) / np.array(preprocessing.std)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), expected, rtol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 0, atol=1e-5)


def test_another_preprocessing_changes_the_crop_and_values():
    """Crop ratio 1/2 at side 32: resize the short side to 64, keep the central 32; a left/right split
    image shows the crop is central (the left half's value on the left)."""
    image = Image.new("RGB", (128, 64), (0, 0, 0))
    image.paste((255, 255, 255), (64, 0, 128, 64))
    out = image_transform(Preprocessing(mean=(0.5,) * 3, std=(0.25,) * 3, crop_ratio=0.5), 32)(image)
    assert out.shape == (3, 32, 32)
    np.testing.assert_allclose(out[:, :, :8], -2.0, atol=1e-5)
    np.testing.assert_allclose(out[:, :, -8:], 2.0, atol=1e-5)


def test_loader_buffers_have_the_tables_side(tmp_path):
    for index in range(3):
        Image.new("RGB", (50, 40), (index * 80, 0, 0)).save(tmp_path / f"{index}.png")
    transform = image_transform(Preprocessing(mean=(0.0,) * 3, std=(1.0,) * 3, crop_ratio=1.0), 16)
    steps = list(HostBufferLoader(ImageFolderDataset(tmp_path, transform, 16), 2, 4, 1))
    assert len(steps) == 1 and steps[0].batches.shape == (2, 2, 3, 16, 16) and steps[0].valid == 3
    np.testing.assert_allclose(steps[0].batches[1, 0, 0], 160 / 255, atol=1e-6)
    assert step_buffer_bytes(3, 2, 4, 16) == 2 * 2 * 3 * 16 * 16 * 4


@pytest.mark.parametrize("name", ["resnext101_32x4d", "resnext101_64x4d"])
def test_get_model_builds_with_the_shared_builder(name):
    import torch

    from cnns.inference.onnx_bulk.get_model import build_model

    model, source = build_model(name, None, random_weights=True)
    assert source == "random" and isinstance(model.avg_pool, torch.nn.AdaptiveAvgPool2d) and not model.training
    assert model.last_linear.out_features == 1000
