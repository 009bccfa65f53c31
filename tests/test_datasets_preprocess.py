"""Each preprocessing step against its torchvision equivalent, and the bounding-box crop rule."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from cnns.datasets.bbox import coverage, crop_boxes, keeps_object, load_boxes
from cnns.datasets.preprocess import (IMAGENET_MEAN, IMAGENET_STD, CenterCrop, PaddedRandomCrop, RandomHorizontalFlip,
                                 RandomResizedCrop, Resize, ToModelInput, eval_transform,
                                 to_uint8_chw, train_transform)
from cnns.datasets.seeding import AugmentationRNG
from cnns.datasets.errors import DataError


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 61 * 83 * 3).reshape(61, 83, 3)
    return Image.fromarray((base + rng.integers(0, 40, base.shape)).clip(0, 255).astype(np.uint8))


def same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("seed", range(12))
def test_random_resized_crop_matches_torchvision_draw_for_draw(photo, seed):
    torch.manual_seed(seed)
    expected = T.RandomResizedCrop(24)(photo)
    torch.manual_seed(seed)
    assert same(RandomResizedCrop(24)(photo), expected)


def test_random_resized_crop_on_tensors_matches_torchvision(photo):
    tensor = to_uint8_chw(photo)
    for seed in range(5):
        torch.manual_seed(seed)
        expected = T.RandomResizedCrop(20, scale=(0.3, 0.9))(tensor)
        torch.manual_seed(seed)
        assert torch.equal(RandomResizedCrop(20, scale=(0.3, 0.9))(tensor), expected)


def test_random_resized_crop_falls_back_to_centre_crop_like_torchvision():
    wide = Image.new("RGB", (400, 20), (10, 20, 30))
    for seed in range(3):
        torch.manual_seed(seed)
        expected = T.RandomResizedCrop(16, scale=(0.9, 1.0))(wide)
        torch.manual_seed(seed)
        assert same(RandomResizedCrop(16, scale=(0.9, 1.0))(wide), expected)


def test_augmentation_rng_draws_what_torchvision_draws_from_the_same_seed(photo):
    rng = AugmentationRNG(seed=3, instance=1)
    torch.manual_seed(rng.process_seed())
    expected = [T.RandomResizedCrop(24)(photo) for _ in range(4)]
    assert all(same(RandomResizedCrop(24, rng=rng)(photo), e) for e in expected)


def test_horizontal_flip_matches_torchvision(photo):
    for seed in range(8):
        torch.manual_seed(seed)
        expected = T.RandomHorizontalFlip()(photo)
        torch.manual_seed(seed)
        assert same(RandomHorizontalFlip()(photo), expected)


def test_padded_random_crop_matches_torchvision_random_crop(photo):
    small = photo.resize((32, 32))
    for seed in range(6):
        torch.manual_seed(seed)
        expected = T.RandomCrop(32, padding=4)(small)
        torch.manual_seed(seed)
        assert same(PaddedRandomCrop(32)(small), expected)


@pytest.mark.parametrize("size", [224, 32, 380])
def test_eval_transform_is_resize_by_256_over_224_then_centre_crop(photo, size):
    big = photo.resize((300, 250))
    expected = T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size), T.PILToTensor()])(big)
    out = eval_transform(size, ToModelInput("ipu", eight_bit_io=True))(big)
    assert torch.equal(out, expected)
    assert out.dtype == torch.uint8 and out.shape == (3, size, size)
    from cnns.models.preprocessing import IMAGENET
    assert IMAGENET.eval_resize(224) == 256


def test_resize_and_centre_crop_steps_match_torchvision(photo):
    assert same(Resize(40)(photo), T.Resize(40)(photo))
    assert same(CenterCrop(30)(photo), T.CenterCrop(30)(photo))


def test_host_normalisation_is_torchvision_normalize_in_one_multiply_subtract(photo):
    img = to_uint8_chw(photo)
    expected = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(T.ToTensor()(photo))
    out = ToModelInput("host", eight_bit_io=False)(img)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_other_normalisation_locations_and_casts(photo):
    img = to_uint8_chw(photo)
    assert torch.equal(img, T.PILToTensor()(photo))
    torch.testing.assert_close(ToModelInput("none", False)(img), T.ToTensor()(photo))
    assert torch.equal(ToModelInput("ipu", False)(img), img.float())
    assert ToModelInput("ipu", True)(img) is img
    for half in (torch.float16, torch.bfloat16):
        host = ToModelInput("host", False, half)(img)
        assert host.dtype == half
        assert torch.equal(host, ToModelInput("host", False)(img).to(half))


def test_train_transform_output_and_reproducibility(photo):
    make = lambda: train_transform(24, ToModelInput("host", False, torch.float16), rng=AugmentationRNG(5))  # noqa: E731
    first, second = make(), make()
    outs = [first(photo) for _ in range(3)]
    assert all(o.shape == (3, 24, 24) and o.dtype == torch.float16 for o in outs)
    assert all(torch.equal(a, second(photo)) for a in outs)
    assert not torch.equal(outs[0], outs[1])


def test_coverage_and_box_rule():
    box = (0.5, 0.5, 1.0, 1.0)  # bottom-right quarter of a 100x100 image
    assert coverage((0, 0, 100, 100), box, 100, 100) == pytest.approx(1.0)
    assert coverage((0, 0, 50, 50), box, 100, 100) == 0.0
    assert coverage((50, 50, 10, 25), box, 100, 100) == pytest.approx(250 / 2500)
    assert keeps_object((50, 50, 10, 25), [box], 100, 100)
    assert not keeps_object((50, 50, 10, 24), [box], 100, 100)
    assert keeps_object((0, 0, 10, 10), None, 100, 100)
    assert crop_boxes([box, (0.0, 0.0, 0.1, 0.1)], (25, 25, 50, 50), 100, 100) == [(0.5, 0.5, 1.0, 1.0)]


def test_box_aware_crops_keep_a_tenth_of_the_object():
    crop = RandomResizedCrop(16, rng=AugmentationRNG(1))
    boxes = [(0.05, 0.05, 0.15, 0.15)]  # small object in a corner
    for _ in range(200):
        top, left, h, w = crop.params(200, 300, boxes)
        assert coverage((top, left, h, w), boxes[0], 200, 300) >= 0.1
    unconstrained = [crop.params(200, 300) for _ in range(200)]
    assert any(coverage(c, boxes[0], 200, 300) < 0.1 for c in unconstrained)


def test_box_aware_crop_falls_back_to_the_whole_image():
    crop = RandomResizedCrop(16, scale=(0.01, 0.011), rng=AugmentationRNG(0))
    assert crop.params(100, 100, [(0.999, 0.999, 1.0, 1.0)]) == (0, 0, 100, 100)


def test_bbox_csv_is_read_and_bad_rows_are_named(tmp_path):
    good = tmp_path / "boxes.csv"
    good.write_text("name,xmin,ymin,xmax,ymax\na.JPEG,0.1,0.2,0.5,0.6\na.JPEG,0,0,1,1\nb.JPEG,0.2,0.2,0.3,0.3\n")
    boxes = load_boxes(str(good))
    assert boxes["a.JPEG"] == [(0.1, 0.2, 0.5, 0.6), (0.0, 0.0, 1.0, 1.0)] and len(boxes["b.JPEG"]) == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("a.JPEG,0.1,0.2,0.5,0.6\nb.JPEG,0.5,0.2,0.1\n")
    with pytest.raises(DataError, match="Line 2 of .*bad.csv"):
        load_boxes(str(bad))
    inverted = tmp_path / "inverted.csv"
    inverted.write_text("a.JPEG,0.6,0.2,0.5,0.9\n")
    with pytest.raises(DataError, match="0 <= min < max <= 1"):
        load_boxes(str(inverted))
    with pytest.raises(DataError, match="does not exist"):
        load_boxes(str(tmp_path / "absent.csv"))
