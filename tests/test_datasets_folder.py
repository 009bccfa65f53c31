"""ImageNet-layout image folders through get_data: counts, labels, shapes and dtypes, and bad input."""
import argparse
import os
from collections import Counter

import pytest
import torch

from cnns import datasets
from cnns.datasets.corrupt import CorruptImageError
from cnns.datasets.make_sample_folder import build_image_folder
from test_datasets_support import batches, copy_tree, data_args, image_files, loader
from cnns.datasets.errors import DataError

CLASSES = ["digit0", "digit1", "digit2", "digit3", "photo"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("imagenet"))
    return root, build_image_folder(root)


def label_counts(counts_by_class):
    return Counter({CLASSES.index(name): n for name, n in counts_by_class.items()})


@pytest.mark.parametrize("train", [True, False])
def test_every_split_serves_its_images_with_their_labels(folder, train):
    root, counts = folder
    split = "train" if train else "validation"
    out = batches(loader(data_args(root), train=train, drop_last=False))
    labels = Counter(int(y) for _, ys in out for y in ys)
    assert labels == label_counts(counts[split])
    assert sum(labels.values()) == (28 if train else 10)
    assert loader(data_args(root), train=train).dataset.classes == CLASSES


@pytest.mark.parametrize("precision", ["16.16", "16.32", "32.32"])
@pytest.mark.parametrize("location", ["host", "ipu", "none"])
@pytest.mark.parametrize("eight_bit_io", [False, True])
def test_shapes_and_dtypes_for_every_io_setting(folder, eight_bit_io, location, precision):
    root, _ = folder
    if eight_bit_io and location == "host":
        location = "ipu"  # what normalise_args makes of it
    args = data_args(root, eight_bit_io=eight_bit_io, normalization_location=location, precision=precision,
                     batch_size=3)
    images, labels = next(iter(loader(args, train=True, input_size=24)))
    expected = torch.uint8 if eight_bit_io else (torch.float16 if precision.startswith("16") else torch.float32)
    assert images.shape == (3, 3, 24, 24) and images.dtype == expected
    assert labels.shape == (3,) and labels.dtype == torch.int64
    values = images.float()
    if eight_bit_io or location == "ipu":
        assert values.min() >= 0 and values.max() <= 255 and values.max() > 1
    elif location == "none":
        assert values.min() >= 0 and values.max() <= 1
    else:
        assert values.min() < 0


def test_combined_batches_with_replicas_workers_and_async_rebatching(folder):
    root, _ = folder
    args = data_args(root, dataloader_worker=2, dataloader_rebatch_size=1)
    import portable_poptorch as pp
    opts = pp.Options().replicationFactor(2).deviceIterations(2)
    dl = datasets.get_data(args, opts, pp, train=True, input_size=16, half_dtype=torch.float16,
                           async_dataloader=True)
    out = batches(dl)
    assert len(out) == len(dl) == 28 // 8
    assert all(x.shape == (8, 3, 16, 16) for x, _ in out)


def test_missing_path_and_folders_are_one_sentence_errors(folder, tmp_path):
    with pytest.raises(DataError, match="needs --imagenet-data-path"):
        loader(data_args(None))
    with pytest.raises(DataError, match="absent does not exist"):
        loader(data_args(str(tmp_path / "absent")))
    (tmp_path / "no_splits").mkdir()
    with pytest.raises(DataError, match="no_splits/validation does not exist"):
        loader(data_args(str(tmp_path / "no_splits")))


def test_empty_folders_are_one_sentence_errors(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="has no class sub-folders"):
        loader(data_args(str(tmp_path / "empty")), train=True)
    (tmp_path / "empty" / "train" / "cat").mkdir()
    with pytest.raises(DataError, match="not a set of class sub-folders holding images.*cat"):
        loader(data_args(str(tmp_path / "empty")), train=True)


@pytest.fixture()
def corrupt_folder(folder, tmp_path):
    root = copy_tree(folder[0], str(tmp_path / "imagenet"))
    files = [f for f in image_files(os.path.join(root, "validation"))]
    garbage, truncated = files[1], files[5]
    with open(garbage, "wb") as f:
        f.write(b"not a jpeg at all")
    with open(truncated, "r+b") as f:
        f.truncate(os.path.getsize(truncated) // 2)
    return root, garbage, truncated


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_image_stops_with_one_sentence_naming_the_file(corrupt_folder, workers):
    root, garbage, _ = corrupt_folder
    with pytest.raises(CorruptImageError) as error:
        batches(loader(data_args(root, dataloader_worker=workers), drop_last=False))
    message = str(error.value)
    assert garbage in message and "--corrupt-images skip" in message
    assert "Traceback" not in message and "\n" not in message


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_images_skipped_are_counted_and_batches_stay_full(corrupt_folder, capfd, workers):
    root, garbage, truncated = corrupt_folder
    dl = loader(data_args(root, corrupt_images="skip", dataloader_worker=workers), drop_last=False)
    out = batches(dl)
    assert sum(len(y) for _, y in out) == 10
    assert datasets.skipped_images(dl) == 2
    warnings = capfd.readouterr().err
    assert garbage in warnings and truncated in warnings


def test_bbox_option_needs_its_csv_and_uses_it(folder, tmp_path):
    root = copy_tree(folder[0], str(tmp_path / "imagenet"))
    with pytest.raises(DataError, match="imagenet_2012_bounding_boxes.csv"):
        loader(data_args(root, use_bbox_info=True), train=True)
    names = [os.path.basename(f) for f in image_files(os.path.join(root, "train"))]
    with open(os.path.join(root, "imagenet_2012_bounding_boxes.csv"), "w") as f:
        f.writelines(f"{name},0.0,0.0,0.2,0.2\n" for name in names)
    dl = loader(data_args(root, use_bbox_info=True), train=True)
    assert len(dl.dataset.boxes) == len(names)
    assert sum(len(y) for _, y in batches(dl)) == 28


def test_percentage_is_checked(folder):
    with pytest.raises(DataError, match="--webdataset-percentage-to-use 0.0 is outside"):
        loader(data_args(folder[0], webdataset_percentage_to_use=0.0))


def test_cifar10_offline_without_files_says_so(monkeypatch, tmp_path):
    import urllib.error
    import torchvision.datasets.cifar as cifar
    from cnns.datasets import sources

    def offline(*_, **__):
        raise urllib.error.URLError("network unreachable")
    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    monkeypatch.setattr(sources, "CIFAR10_DIR", str(tmp_path / "cifar10"))
    with pytest.raises(DataError, match="CIFAR-10 is not in .*cifar10 and could not be downloaded"):
        loader(data_args(data="cifar10"), train=True)


@pytest.mark.slow
def test_add_data_options_adds_its_options_and_keeps_existing_ones():
    parser = argparse.ArgumentParser()
    parser.add_argument("--imagenet-data-path", default="kept")
    datasets.add_data_options(parser)
    args = parser.parse_args([])
    assert (args.imagenet_data_path, args.webdataset_percentage_to_use, args.use_bbox_info, args.corrupt_images) == (
        "kept", 100.0, False, "stop")
    args = parser.parse_args(["--corrupt-images", "skip", "--use-bbox-info", "--webdataset-percentage-to-use", "25"])
    assert (args.corrupt_images, args.use_bbox_info, args.webdataset_percentage_to_use) == ("skip", True, 25.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["--corrupt-images", "ignore"])


def test_model_preprocessing_crop_scale_and_rng_reach_the_transforms(folder):
    """get_data takes the model's mean/std and crop ratio, the crop range and the augmentation stream as
    arguments: host normalisation uses the given statistics, eval resizes by the given ratio, and the
    training crop uses the given range and stream."""
    from cnns.datasets.seeding import AugmentationRNG
    from cnns.models.preprocessing import IMAGENET, Preprocessing
    from test_datasets_support import options
    import portable_poptorch as pp
    root, _ = folder
    args = data_args(root, batch_size=2)
    plain = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_ratio=0.5)

    def first(preprocessing, train=False, **kwargs):
        dl = datasets.get_data(args, options(), pp, train=train, input_size=24, half_dtype=torch.float16,
                               preprocessing=preprocessing, **kwargs)
        return dl, next(iter(dl))[0]
    _, imagenet = first(IMAGENET)
    dl, raw = first(plain)
    assert raw.min() >= 0 and raw.max() <= 1 and imagenet.min() < 0  # mean 0, std 1: x / 255 only
    steps = dl.dataset.transform.steps
    assert steps[0].size == 48  # shorter side 24 / 0.5 before the centre crop
    rng = AugmentationRNG(7)
    dl, _ = first(IMAGENET, train=True, crop_scale=(0.5, 1.0), rng=rng)
    crop = dl.dataset.transform.steps[0]
    assert crop.scale == (0.5, 1.0) and crop.rng is rng
