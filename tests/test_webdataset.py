"""WebDataset folders: conversion round trip, checksums, metadata errors, leftovers, corrupt samples."""
import io
import json
import os
import shutil
from collections import Counter

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from cnns import datasets
from cnns.datasets.corrupt import CorruptImageError
from cnns.datasets.create_webdataset import main as create_webdataset
from cnns.datasets.distributed_webdataset import main as distributed_main
from cnns.datasets.make_sample_folder import build_image_folder
from cnns.datasets.validate_dataset import check_dataset, main as validate_main
from cnns.datasets.webdataset_format import combined_checksum, decode_sample, shard_entry
from test_datasets_support import batches, data_args, fingerprint, image_files, loader, seen_samples
from cnns.datasets.errors import DataError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("imagenet"))
    build_image_folder(root)
    return root


def convert(folder, target, *extra):
    return create_webdataset(["--source", folder, "--target", str(target), "--samples-per-shard", "4",
                              "--num-workers", "0", *extra])


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory):
    target = tmp_path_factory.mktemp("wds") / "img"
    convert(folder, target, "--shuffle", "--seed", "7")
    return str(target)


def stored(target, split):
    """Every sample of a split as read back from its shards."""
    files = sorted(f for f in os.listdir(target) if f.startswith(split) and f.endswith(".tar"))
    return [s for f in files for s in wds.tarfile_samples([{"url": os.path.join(target, f)}])]


@pytest.mark.parametrize("train", [False, True])
def test_round_trip_serves_the_folder_images_and_labels(folder, shards, train):
    meta = json.load(open(os.path.join(shards, "metadata.json")))
    assert meta["classes"] == ["digit0", "digit1", "digit2", "digit3", "photo"]
    assert meta["splits"]["train"]["samples"] == 28 and len(meta["splits"]["train"]["shards"]) == 7
    if not train:
        from_folder, _ = seen_samples(folder, 1, 0)
        from_shards, _ = seen_samples(shards, 1, 0)
        assert from_shards == from_folder and sum(from_shards.values()) == 10
    else:
        dl = loader(data_args(shards), train=True)
        labels = Counter(int(y) for _, ys in batches(dl) for y in ys)
        assert labels == Counter({0: 6, 1: 6, 2: 6, 3: 6, 4: 4}) and len(dl) == 14
        assert dl.dataset.classes == meta["classes"]


def test_jpegs_are_copied_unchanged_and_shuffle_changes_the_order(folder, shards):
    samples = stored(shards, "train")
    by_source = {json.loads(s["json"])["file"]: s for s in samples}
    for path in image_files(os.path.join(folder, "train")):
        sample = by_source[os.path.relpath(path, folder)]
        assert sample["jpg"] == open(path, "rb").read()
    order = [json.loads(s["json"])["file"] for s in samples]
    assert order != sorted(order)


def test_tensor_format_stores_decoded_pixels(folder, tmp_path):
    convert(folder, tmp_path / "t", "--format", "tensor")
    for sample in stored(tmp_path / "t", "validation"):
        image, label, _, _ = decode_sample(sample, "tensor")
        source = os.path.join(folder, json.loads(sample["json"])["file"])
        expected = np.asarray(Image.open(source).convert("RGB")).transpose(2, 0, 1)
        assert image.dtype.is_floating_point is False and np.array_equal(image.numpy(), expected)
    images, labels = next(iter(loader(data_args(str(tmp_path / "t"), precision="16.16"), input_size=24)))
    assert images.shape == (2, 3, 24, 24) and str(images.dtype) == "torch.float16"


def test_preprocess_steps_and_quality_are_applied(folder, tmp_path):
    convert(folder, tmp_path / "p", "--train-preprocess-steps", "resize:20", "center_crop:16",
            "--validation-preprocess-steps", "resize", "--image-quality", "50")
    meta = json.load(open(tmp_path / "p" / "metadata.json"))
    assert meta["splits"]["train"]["preprocess_steps"] == ["resize:20", "center_crop:16"]
    assert meta["splits"]["validation"]["preprocess_steps"] == ["resize:256"]
    for sample in stored(tmp_path / "p", "train"):
        assert Image.open(io.BytesIO(sample["jpg"])).size == (16, 16)
    with pytest.raises(SystemExit) as exit_info:
        convert(folder, tmp_path / "bad", "--train-preprocess-steps", "blur:3")
    assert exit_info.value.code == 2


def test_checksum_detects_a_modified_shard(shards, tmp_path, capsys):
    copy = shutil.copytree(shards, tmp_path / "copy")
    assert check_dataset(str(copy), decode=True) == []
    assert validate_main(["--imagenet-data-path", str(copy)]) == 0
    victim = copy / "train-000003.tar"
    data = bytearray(victim.read_bytes())
    data[700] ^= 0xFF
    victim.write_bytes(bytes(data))
    problems = check_dataset(str(copy))
    assert any("train-000003.tar: SHA-256 differs" in p for p in problems)
    assert validate_main(["--imagenet-data-path", str(copy)]) == 1
    assert "FAILED" in capsys.readouterr().out


def edit_metadata(meta):
    meta["splits"]["train"]["samples"] += 1


BROKEN_METADATA = {
    "not JSON": (lambda text, meta: "{not json", "it is not JSON"),
    "format": (lambda text, meta: json.dumps({**meta, "format": "png"}), "'format' is 'png'"),
    "classes": (lambda text, meta: json.dumps({k: v for k, v in meta.items() if k != "classes"}), "'classes'"),
    "checksum": (lambda text, meta: json.dumps({**meta, "checksum": "0" * 64}), "'checksum' does not match"),
    "counts": (lambda text, meta: (edit_metadata(meta), json.dumps(meta))[1], "says 29 samples but its shards"),
    "shard entry": (lambda text, meta: text.replace('"sha256"', '"md5"', 1), "without file, samples and sha256"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_METADATA))
def test_wrong_metadata_is_one_clear_sentence(shards, tmp_path, case):
    copy = shutil.copytree(shards, tmp_path / "copy")
    text = (copy / "metadata.json").read_text()
    make, expected = BROKEN_METADATA[case]
    (copy / "metadata.json").write_text(make(text, json.loads(text)))
    with pytest.raises(DataError, match=f"metadata.json is not valid: .*{expected}") as error:
        loader(data_args(str(copy)))
    assert "\n" not in str(error.value) and "create_webdataset.py" in str(error.value)


def test_missing_shard_and_missing_split(shards, tmp_path):
    copy = shutil.copytree(shards, tmp_path / "copy")
    os.remove(copy / "validation-000001.tar")
    with pytest.raises(DataError, match="shard validation-000001.tar of split 'validation' is missing"):
        loader(data_args(str(copy)))
    only_train = shutil.copytree(shards, tmp_path / "train_only")
    meta = json.loads((only_train / "metadata.json").read_text())
    del meta["splits"]["validation"]
    meta["checksum"] = combined_checksum(meta["splits"])
    (only_train / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="has no 'validation' split; it holds train"):
        loader(data_args(str(only_train)))


def write_shard(target, samples):
    """A one-shard validation split of hand-made samples, with consistent metadata."""
    os.makedirs(target, exist_ok=True)
    with wds.TarWriter(os.path.join(target, "validation-000000.tar")) as writer:
        for sample in samples:
            writer.write(sample)
    splits = {"validation": {"samples": len(samples), "shards": [shard_entry(target, "validation-000000.tar",
                                                                               len(samples))]}}
    meta = {"format": "img", "classes": ["a", "b"], "splits": splits, "checksum": combined_checksum(splits)}
    with open(os.path.join(target, "metadata.json"), "w") as f:
        json.dump(meta, f)


def jpeg(color):
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture()
def corrupt_shards(tmp_path):
    target = str(tmp_path / "corrupt")
    write_shard(target, [{"__key__": "0", "jpg": jpeg((255, 0, 0)), "cls": b"0"},
                         {"__key__": "1", "jpg": b"garbage", "cls": b"1"},
                         {"__key__": "2", "jpg": jpeg((0, 0, 255)), "cls": b"1"},
                         {"__key__": "3", "jpg": jpeg((0, 255, 0)), "cls": b"0"}])
    return target


def test_corrupt_sample_in_a_shard_stops_or_is_skipped(corrupt_shards, capfd):
    with pytest.raises(CorruptImageError, match=r"validation-000000.tar:1 cannot be decoded"):
        batches(loader(data_args(corrupt_shards), drop_last=False))
    dl = loader(data_args(corrupt_shards, corrupt_images="skip", dataloader_worker=1), drop_last=False)
    labels = [int(y) for _, ys in batches(dl) for y in ys]
    assert labels == [0, 1, 1, 0] and datasets.skipped_images(dl) == 1
    assert "validation-000000.tar:1" in capfd.readouterr().err
    assert any("cannot be decoded" in p for p in check_dataset(corrupt_shards, decode=True))


def test_corrupt_source_image_when_converting(folder, tmp_path):
    source = shutil.copytree(folder, tmp_path / "source")
    bad = image_files(str(source / "validation"))[3]
    open(bad, "wb").write(b"\xff\xd8 broken")
    with pytest.raises(CorruptImageError, match=os.path.basename(bad)):
        from cnns.datasets.create_webdataset import create, parse_arguments
        create(parse_arguments(["--source", str(source), "--target", str(tmp_path / "out"), "--num-workers", "0"]))
    meta = convert(str(source), tmp_path / "skipped", "--corrupt-images", "skip")
    assert meta["skipped_corrupt_images"] == 1 and meta["splits"]["validation"]["samples"] == 9


def test_target_with_a_dataset_and_source_without_splits_are_refused(folder, shards, tmp_path, capsys):
    with pytest.raises(SystemExit):
        convert(folder, shards)
    assert "already holds a dataset" in capsys.readouterr().err
    (tmp_path / "nothing").mkdir()
    with pytest.raises(SystemExit):
        convert(str(tmp_path / "nothing"), tmp_path / "out")
    assert "holds neither train/ nor validation/" in capsys.readouterr().err


def test_percentage_reads_the_first_shards(shards):
    dl = loader(data_args(shards, webdataset_percentage_to_use=50), train=True, drop_last=False)
    assert sum(len(y) for _, y in batches(dl)) == 16  # 4 of the 7 train shards of 4 samples


def test_boxes_travel_with_the_samples(folder, tmp_path):
    source = shutil.copytree(folder, tmp_path / "source")
    names = [os.path.basename(f) for f in image_files(str(source / "train"))]
    (source / "imagenet_2012_bounding_boxes.csv").write_text("".join(f"{n},0.5,0.5,1.0,1.0\n" for n in names))
    convert(str(source), tmp_path / "boxed", "--train-preprocess-steps", "center_crop:16")
    sample = stored(tmp_path / "boxed", "train")[0]
    boxes = json.loads(sample["json"])["boxes"]
    assert len(boxes) == 1 and all(0.0 <= v <= 1.0 for v in boxes[0])
    dl = loader(data_args(str(tmp_path / "boxed"), use_bbox_info=True), train=True)
    assert sum(len(y) for _, y in batches(dl)) == 28
    convert(folder, tmp_path / "plain")
    with pytest.raises(DataError, match="written without bounding boxes"):
        loader(data_args(str(tmp_path / "plain"), use_bbox_info=True), train=True)


def test_leftover_scripts_and_stale_leftovers(shards, tmp_path, capsys):
    copy = shutil.copytree(shards, tmp_path / "copy")
    index = distributed_main(["--imagenet-data-path", str(copy), "--num-instances", "3"])
    assert [sum(e["samples"] for e in inst) for inst in index["splits"]["train"]] == [2, 1, 1]  # 6 of 7 shards dealt
    assert [sum(e["samples"] for e in inst) for inst in index["splits"]["validation"]] == [4, 3, 3]  # 4, 4, 2: none
    assert validate_main(["--imagenet-data-path", str(copy)]) == 0
    stale = json.loads((copy / "distributed" / "3-instances" / "leftovers.json").read_text())
    stale["dataset_checksum"] = "f" * 64
    (copy / "distributed" / "3-instances" / "leftovers.json").write_text(json.dumps(stale))
    with pytest.raises(DataError, match="written for another version"):
        loader(data_args(str(copy)), instance=1, instances=3)
    with pytest.raises(SystemExit) as exit_info:
        distributed_main(["--imagenet-data-path", str(copy), "--num-instances", "1"])
    assert exit_info.value.code == 2 and "at least 2" in capsys.readouterr().err


def test_validate_script_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        validate_main(["--imagenet-data-path", str(tmp_path / "absent")])
    assert exit_info.value.code == 2 and "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        validate_main(["--imagenet-data-path", str(tmp_path)])
    assert "holds no metadata.json" in capsys.readouterr().err


def test_validation_images_are_identical_to_the_folder_loader(folder, shards):
    a = [(fingerprint(x), int(y)) for xs, ys in batches(loader(data_args(folder), drop_last=False))
         for x, y in zip(xs, ys)]
    b = [(fingerprint(x), int(y)) for xs, ys in batches(loader(data_args(shards), drop_last=False))
         for x, y in zip(xs, ys)]
    assert sorted(a) == sorted(b)
