"""Instances and workers: disjoint shares covering every sample once, equal step counts for training, and
augmentations that differ between workers and instances yet repeat with the same seed."""
import itertools
import os
from collections import Counter

import pytest
import torch

from cnns.datasets.create_webdataset import main as create_webdataset
from cnns.datasets.distributed_webdataset import write_leftovers
from cnns.datasets.make_sample_folder import build_image_folder
from cnns.datasets.shard_plan import deal, plan
from cnns.datasets.webdataset_format import Shard, load_metadata, load_written_leftovers, split_shards
from test_datasets_support import batches, data_args, fingerprint, loader, seen_samples


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("sources")
    folder = str(base / "imagenet")
    build_image_folder(folder)
    shards = str(base / "webdataset")
    create_webdataset(["--source", folder, "--target", shards, "--samples-per-shard", "3", "--num-workers", "0"])
    return {"folder": folder, "webdataset": shards}


def selected(plans):
    """Counter of (shard, sample index) over every instance and worker plan."""
    seen = Counter()
    for workers in plans:
        for work in workers:
            for part in work.parts:
                seen.update((part.path, k) for k in range(part.offset, part.samples, part.stride))
    return seen


SIZES = [[5, 5, 5, 5, 5, 3], [4], [2, 2, 2, 2, 2, 2, 2, 1], [7, 7, 7]]


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("instances", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("workers", [0, 1, 3])
def test_shard_plan_covers_every_sample_once(sizes, instances, workers):
    shards = [Shard(f"s{k}.tar", n) for k, n in enumerate(sizes)]
    for seed in (None, 1, 2):
        plans = plan(shards, instances, workers, worker_batch=2, drop_last=False, shuffle_seed=seed)
        seen = selected(plans)
        assert sum(seen.values()) == sum(sizes) and set(seen.values()) == {1}
        totals = [sum(w.samples for w in ws) for ws in plans]
        assert max(totals) - min(totals) <= 1


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("instances,workers,worker_batch", itertools.product([1, 2, 4], [0, 3], [1, 2, 3]))
def test_training_plan_gives_whole_batches_and_equal_steps(sizes, instances, workers, worker_batch):
    shards = [Shard(f"s{k}.tar", n) for k, n in enumerate(sizes)]
    plans = plan(shards, instances, workers, worker_batch=worker_batch, drop_last=True, shuffle_seed=3)
    steps = {sum(w.limit for w in ws) // worker_batch for ws in plans}
    assert len(steps) == 1
    for ws in plans:
        for work in ws:
            assert work.limit % worker_batch == 0 and work.limit <= sum(p.count for p in work.parts)
    assert steps.pop() * worker_batch * instances > sum(sizes) - instances * max(1, workers) * worker_batch - instances


def test_shuffled_epochs_deal_different_whole_shards_with_the_same_counts():
    shards = [Shard(f"s{k}.tar", 4) for k in range(8)]
    first = plan(shards, 2, 1, worker_batch=1, drop_last=False, shuffle_seed=10)
    second = plan(shards, 2, 1, worker_batch=1, drop_last=False, shuffle_seed=11)
    assert [p.path for p in first[0][0].parts] != [p.path for p in second[0][0].parts]
    assert [w.samples for ws in first for w in ws] == [w.samples for ws in second for w in ws]


@pytest.mark.slow
def test_leftovers_written_hold_exactly_the_samples_instances_would_pick(sources):
    folder = sources["webdataset"]
    meta = load_metadata(folder)
    shards = split_shards(folder, meta, "validation")
    whole, rest = deal(shards, 2)
    assert [s.samples for s in whole] == [3, 3] and [s.samples for s in rest] == [3, 1]
    write_leftovers(folder, 2)
    written = load_written_leftovers(folder, meta, "validation", 2)
    assert [[s.samples for s in inst] for inst in written] == [[2], [2]]
    try:
        with_files, _ = seen_samples(folder, 2, 1)
    finally:
        import shutil
        shutil.rmtree(os.path.join(folder, "distributed"))
    without_files, _ = seen_samples(folder, 2, 1)
    assert with_files == without_files and sum(with_files.values()) == 10


@pytest.mark.parametrize("source", ["folder", "webdataset"])
@pytest.mark.parametrize("instances", [1, 2, 4])
@pytest.mark.parametrize("workers", [1, 3])
def test_instances_and_workers_together_serve_every_sample_exactly_once(sources, source, instances, workers):
    seen, _ = seen_samples(sources[source], instances, workers)
    assert sum(seen.values()) == 10 and set(seen.values()) == {1}


@pytest.mark.parametrize("source", ["folder", "webdataset"])
@pytest.mark.parametrize("instances,workers", [(2, 0), (2, 3), (4, 1), (3, 3)])
def test_training_instances_run_equal_step_counts(sources, source, instances, workers):
    steps = []
    for instance in range(instances):
        args = data_args(sources[source], dataloader_worker=workers, eight_bit_io=True, normalization_location="ipu")
        dl = loader(args, train=True, instance=instance, instances=instances)
        out = batches(dl)
        assert len(out) == len(dl) and all(len(y) == 2 for _, y in out)
        steps.append(len(out))
    assert len(set(steps)) == 1 and steps[0] >= 28 // (2 * instances) - workers


def first_sample_per_worker(source, instance, workers, seed=0):
    """The first training image each worker produces (batch size 1: batches alternate between workers)."""
    args = data_args(source, batch_size=1, dataloader_worker=workers, seed=seed, eight_bit_io=True,
                     normalization_location="ipu")
    dl = loader(args, train=True, instance=instance, instances=2, input_size=24)
    return [x[0] for x, _ in itertools.islice(iter(dl), max(1, workers))]


@pytest.fixture(scope="module")
def same_image_sources(tmp_path_factory):
    """Every sample is one photograph, so differences come from the augmentation alone."""
    from PIL import Image
    base = tmp_path_factory.mktemp("same")
    photo = Image.new("RGB", (64, 48))
    photo.putdata([((x * 4) % 256, (y * 5) % 256, (x * y) % 256) for y in range(48) for x in range(64)])
    for split in ("train", "validation"):
        os.makedirs(base / "imagenet" / split / "only")
        for k in range(12):
            photo.save(base / "imagenet" / split / "only" / f"{k}.png")
    create_webdataset(["--source", str(base / "imagenet"), "--target", str(base / "webdataset"),
                       "--samples-per-shard", "2", "--num-workers", "0"])
    return {"folder": str(base / "imagenet"), "webdataset": str(base / "webdataset")}


@pytest.mark.parametrize("source", ["folder", "webdataset"])
def test_augmentations_differ_between_workers_and_instances_and_repeat_with_the_seed(same_image_sources, source):
    root = same_image_sources[source]
    instance0 = first_sample_per_worker(root, 0, 3)
    instance1 = first_sample_per_worker(root, 1, 3)
    prints = {fingerprint(x) for x in instance0 + instance1}
    assert len(prints) == 6, "every worker of every instance crops differently"
    assert [fingerprint(x) for x in first_sample_per_worker(root, 0, 3)] == [fingerprint(x) for x in instance0]
    other_seed = first_sample_per_worker(root, 0, 3, seed=1)
    assert [fingerprint(x) for x in other_seed] != [fingerprint(x) for x in instance0]


def test_instances_without_workers_also_differ(same_image_sources):
    a = first_sample_per_worker(same_image_sources["folder"], 0, 0)
    b = first_sample_per_worker(same_image_sources["folder"], 1, 0)
    assert not torch.equal(a[0], b[0])
