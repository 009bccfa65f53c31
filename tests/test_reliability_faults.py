"""Faults during a run: a kill mid-write, a dead loader worker, a full disk, SIGTERM, planted weights files.

Each test asserts the exit code, the one ``error:`` line and that nothing half-written is left.
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from cnns.utils import atomic
from cnns.utils.distributed import InstanceInfo
from cnns.utils.errors import UsageError, exit_on_usage_error
from cnns.utils.logger import RunLogger

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _run_python(code: str, tmp_path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}, **kwargs)


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_leaves_no_checkpoint_and_the_next_start_cleans_up(tmp_path):
    child = _run_python(f"""
        import sys, time, torch
        from cnns.train.checkpoint import save_checkpoint
        def slow_save(payload, f):
            f.write(b"PK" + b"0" * 4096)
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
        torch.save = slow_save
        save_checkpoint({str(tmp_path)!r}, "resnet18_generated_1.pt", {{"epoch": 1}})
    """, tmp_path)
    assert child.stdout.readline().strip() == "writing"
    child.kill()
    child.wait(timeout=30)
    names = os.listdir(tmp_path)
    assert "resnet18_generated_1.pt" not in names
    assert len(names) == 1 and atomic.is_temporary(names[0]), names
    from cnns.train.checkpoint import claim_folder
    lock, removed = claim_folder(str(tmp_path))
    lock.release()
    assert removed == 1 and os.listdir(tmp_path) == []


@pytest.mark.slow
def test_a_sigkilled_run_leaves_a_results_file_that_says_it_never_finished(tmp_path):
    child = _run_python(f"""
        import argparse, time
        from cnns.utils.distributed import InstanceInfo
        from cnns.utils.logger import RunLogger
        logger = RunLogger(argparse.Namespace(log_path={str(tmp_path)!r}, model="m"), InstanceInfo(0, 1, 0), folder="run")
        print("started", flush=True)
        time.sleep(60)
    """, tmp_path)
    assert child.stdout.readline().strip() == "started"
    child.kill()
    child.wait(timeout=30)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "running" and results["pid"] == child.pid
    logger = RunLogger(argparse.Namespace(log_path=str(tmp_path), model="m"), InstanceInfo(0, 1, 0), folder="done")
    logger.write_results({"throughput": 1.0})
    logger.close()
    assert json.loads((tmp_path / "done" / "results.json").read_text()) == {"status": "completed", "throughput": 1.0}


def test_disk_full_during_a_checkpoint_write_is_one_sentence_naming_the_file(tmp_path, monkeypatch, capsys):
    from cnns.train import checkpoint

    def full(payload, f):
        f.write(b"PK")
        raise OSError(errno.ENOSPC, "No space left on device", f.name)
    monkeypatch.setattr(checkpoint.torch, "save", full)

    @exit_on_usage_error
    def main(argv):
        logger = RunLogger(argparse.Namespace(log_path=str(tmp_path / "logs")), InstanceInfo(0, 1, 0), folder="run")
        logger.log("epoch 1 done")
        checkpoint.save_checkpoint(str(tmp_path / "ckpt"), "m_generated_1.pt", {"epoch": 1})
    with pytest.raises(SystemExit) as exited:
        main([])
    line = _one_error_line(capsys.readouterr().err)
    assert exited.value.code == 1
    assert "No space left on device" in line and str(tmp_path / "ckpt") in line
    assert os.listdir(tmp_path / "ckpt") == []
    results = json.loads((tmp_path / "logs" / "run" / "results.json").read_text())
    assert results["status"] == "failed" and "No space left on device" in results["error"]
    assert "error: No space left on device" in (tmp_path / "logs" / "run" / "log.txt").read_text()


def test_disk_full_while_writing_json_keeps_the_previous_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    atomic.write_json(str(target), {"ok": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError):
        atomic.write_json(str(target), {"ok": 2})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["results.json"]


class _KillsItsWorker(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_loader_worker_ends_the_run_with_one_line_and_a_failed_results_file(tmp_path, capsys):
    @exit_on_usage_error
    def main(argv):
        RunLogger(argparse.Namespace(log_path=str(tmp_path)), InstanceInfo(0, 1, 0), folder="run")
        for _ in torch.utils.data.DataLoader(_KillsItsWorker(), batch_size=2, num_workers=1):
            pass
    with pytest.raises(SystemExit) as exited:
        main([])
    line = _one_error_line(capsys.readouterr().err)
    assert exited.value.code == 1 and "worker" in line.lower()
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "failed" and "worker" in results["error"].lower()


@pytest.mark.slow
def test_sigterm_stops_with_143_and_one_line(tmp_path):
    child = _run_python("""
        import time
        from cnns.utils.errors import exit_on_usage_error
        @exit_on_usage_error
        def main(argv):
            print("ready", flush=True)
            time.sleep(60)
        main([])
    """, tmp_path)
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 128 + signal.SIGTERM
    assert _one_error_line(err).startswith("error: Stopped by SIGTERM")


def test_debug_env_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("HARNESS_DEBUG", "1")

    @exit_on_usage_error
    def main(argv):
        raise UsageError("bad value")
    with pytest.raises(UsageError, match="bad value"):
        main([])


def test_two_runs_cannot_share_one_checkpoint_folder(tmp_path):
    first = atomic.FolderLock(str(tmp_path), "--checkpoint-path")
    with pytest.raises(UsageError, match=f"in use by another run \\(process {os.getpid()}\\)"):
        atomic.FolderLock(str(tmp_path), "--checkpoint-path")
    first.release()
    atomic.FolderLock(str(tmp_path), "--checkpoint-path").release()


def test_validate_and_restore_never_write_where_the_checkpoint_says(tmp_path):
    from cnns.train.arguments import training_parser
    from cnns.train.validate import args_from_checkpoint
    cli = training_parser().parse_args(["--checkpoint-path", "x.pt"])
    ckpt = {"args": {"model": "resnet18", "log_path": "/etc/cron.d", "model_cache_path": "/root/.ssh",
                     "batch_size": 4}}
    merged = args_from_checkpoint(ckpt, cli, explicit={"checkpoint_path"})
    assert merged.log_path == "logs" and merged.model_cache_path is None and merged.batch_size == 4
    given = training_parser().parse_args(["--log-path", str(tmp_path)])
    assert args_from_checkpoint(ckpt, given, explicit={"log_path"}).log_path == str(tmp_path)


# ------------------------------------------------------------------ pretrained weights: no code from data
def _evil_file(path: str, marker: str) -> None:
    class Evil:
        def __reduce__(self):
            return (open, (marker, "w"))
    torch.save({"fc.weight": Evil()}, path)


def test_a_pickle_planted_in_the_hub_cache_is_refused_and_never_run(tmp_path, monkeypatch):
    from cnns import models
    from cnns.models.pretrained import PretrainedWeightsError
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    marker = tmp_path / "code-ran"
    _evil_file(str(cache / "resnet18-f37072fd.pth"), str(marker))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsError, match="resnet18-f37072fd.pth.*does not match its published SHA256"):
        models.get_model("resnet18", log=lambda _: None)
    assert not marker.exists()


def test_a_cached_file_with_the_right_hash_but_code_inside_is_refused(tmp_path, monkeypatch):
    from cnns.models import pretrained
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    marker = tmp_path / "code-ran"
    staged = tmp_path / "staged.pth"
    _evil_file(str(staged), str(marker))
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()[:8]
    os.replace(staged, cache / f"weights-{digest}.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(pretrained.PretrainedWeightsError, match="is not a plain tensor file"):
        pretrained.load_pretrained_state_dict(f"https://example.invalid/weights-{digest}.pth")
    assert not marker.exists()


def test_a_cached_file_with_the_right_hash_loads_as_tensors(tmp_path, monkeypatch):
    from cnns.models import pretrained
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    staged = tmp_path / "staged.pth"
    torch.save({"w": torch.arange(3.0)}, staged)
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()[:8]
    os.replace(staged, cache / f"good-{digest}.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = pretrained.load_pretrained_state_dict(f"https://example.invalid/good-{digest}.pth")
    assert torch.equal(state["w"], torch.arange(3.0))


def test_hashes_are_checked_only_where_the_source_publishes_them(tmp_path, monkeypatch):
    """torchvision's names carry a SHA256 prefix (refused on mismatch); efficientnet_pytorch's 8 hex digits
    are not a published hash, so a genuine file with other content still loads, as tensors only."""
    from cnns.models import pretrained
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    for name in ("resnet18-f37072fd.pth", "efficientnet-b0-355c32eb.pth"):
        torch.save({"w": torch.arange(3.0)}, cache / name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(pretrained.PretrainedWeightsError, match="does not match its published SHA256 prefix"):
        pretrained.load_pretrained_state_dict("https://download.pytorch.org/models/resnet18-f37072fd.pth")
    state = pretrained.load_pretrained_state_dict(
        "http://storage.googleapis.com/public-models/efficientnet/efficientnet-b0-355c32eb.pth")
    assert torch.equal(state["w"], torch.arange(3.0))


def test_every_builder_uses_the_checked_loader(tmp_path, monkeypatch):
    """No builder reaches torch.hub's unchecked loader: each asks load_pretrained_state_dict for its URL."""
    from cnns import models
    from cnns.models import cadene, efficientnet, torchvision_zoo
    asked = []

    def refuse(url):
        asked.append(url)
        raise OSError("offline in this test")
    for module in (cadene, efficientnet, torchvision_zoo):
        monkeypatch.setattr(module, "load_pretrained_state_dict", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("unchecked loader"))
    for name in ("resnet18", "efficientnet-b0", "resnext101_32x4d"):
        models.get_model(name, log=lambda _: None)
    assert [os.path.basename(u) for u in asked] == ["resnet18-f37072fd.pth", "efficientnet-b0-355c32eb.pth",
                                                    "resnext101_32x4d-29e315fa.pth"]


# ------------------------------------------------------------------ real data and class counts
def test_a_corrupt_sample_image_follows_the_corrupt_images_policy(tmp_path):
    from PIL import Image

    from cnns.datasets.corrupt import CorruptImageError, CorruptImagePolicy
    from cnns.datasets.sample_images import SampleImages
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    stop = SampleImages(str(tmp_path), lambda img: img.size, 2, CorruptImagePolicy("stop"))
    with pytest.raises(CorruptImageError, match="b.jpg cannot be decoded"):
        stop[1]
    skip = SampleImages(str(tmp_path), lambda img: img.size, 2, CorruptImagePolicy("skip"))
    assert skip[1] == ((8, 8), 0) and skip.policy.skipped == 1


def test_a_checkpoint_is_refused_for_data_with_another_number_of_classes(tmp_path):
    from cnns.train.validate import check_classes

    class Loader:
        dataset = argparse.Namespace(classes=["a", "b", "c", "d", "e"])
    with pytest.raises(UsageError, match="trained on 3 classes but the validation data has 5"):
        check_classes(Loader(), 3, "m_imagenet_1.pt")
    check_classes(Loader(), 5, "m_imagenet_1.pt")


@pytest.mark.slow
def test_sigterm_stops_training_between_complete_checkpoints(tmp_path):
    """A real train.py run: SIGTERM after the first checkpoint; exit 143, the log says where it stopped,
    results.json records it, and every checkpoint left loads."""
    ckpts = tmp_path / "ckpt"
    child = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "train", "train.py"), "--data", "generated", "--model", "resnet18",
         "--input-size", "32", "--batch-size", "2", "--iterations", "20", "--epoch", "1000", "--precision", "32.32",
         "--validation-mode", "none", "--dataloader-worker", "0", "--executor", "eager", "--checkpoint-path", str(ckpts),
         "--log-path", str(tmp_path / "logs")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 240
    while not list(ckpts.glob("*.pt")) and time.time() < deadline and child.poll() is None:
        time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: Stopped by SIGTERM")  # after tqdm's progress bar
    assert not [n for n in os.listdir(ckpts) if atomic.is_temporary(n)]
    for path in ckpts.glob("*.pt"):
        torch.load(path, weights_only=True)
    run = ckpts  # with --checkpoint-path the run's logs are written there, as the original's
    assert "Stopped during epoch" in (run / "log.txt").read_text()
    assert json.loads((run / "results.json").read_text())["status"] == "failed"


def test_a_forked_worker_still_dies_by_sigterm(tmp_path):
    """Pools and loaders stop their workers with SIGTERM; an inherited handler must not make them unwind."""
    child = _run_python("""
        import multiprocessing, os, signal, time
        from cnns.utils.errors import exit_on_usage_error
        @exit_on_usage_error
        def main(argv):
            worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
            worker.start()
            time.sleep(0.2)
            worker.terminate()
            worker.join(10)
            print(worker.exitcode, flush=True)
        main([])
    """, tmp_path)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == str(-signal.SIGTERM) and "Traceback" not in err


def _partition_main():
    from tests.scripts import load_script
    from tests.test_reliability import ONNX_BULK
    return load_script("onnx_bulk_partition_dataset", os.path.join(ONNX_BULK, "partition_dataset.py"))


def test_disk_full_while_partitioning_keeps_the_old_partitions_and_leaves_no_temporary(tmp_path, monkeypatch, capsys):
    module = _partition_main()
    images = tmp_path / "images"
    images.mkdir()
    for k in range(4):
        (images / f"img{k}.jpg").write_bytes(b"\xff\xd8" + bytes([k]) * 100)
    out = tmp_path / "parts"
    assert module.main(["--data-dir", str(images), "--partitions", "2", "--link", "copy", "--output", str(out)]) == 0
    before = {p.name: sorted(q.name for q in p.iterdir()) for p in out.iterdir()}
    copies = []

    def full(source, target):
        copies.append(target)
        if len(copies) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        target.write(source.read())
    monkeypatch.setattr(module.shutil, "copyfileobj", full)
    with pytest.raises(SystemExit) as exited:
        module.main(["--data-dir", str(images), "--partitions", "2", "--link", "copy", "--force", "--output", str(out)])
    line = _one_error_line(capsys.readouterr().err)
    assert exited.value.code == 1 and "No space left on device" in line and "img2.jpg" in line
    assert {p.name: sorted(q.name for q in p.iterdir()) for p in out.iterdir()} == before


def test_a_killed_partition_run_leaves_only_a_temporary_that_the_next_run_removes(tmp_path):
    out = tmp_path / "parts"
    (out / ".partitions.abc.tmp" / "part00").mkdir(parents=True)
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"\xff\xd8")
    assert _partition_main().main(["--data-dir", str(images), "--partitions", "1", "--output", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["part00"]


def test_atomic_files_get_the_umask_permissions_not_owner_only(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic.write_json(str(tmp_path / "results.json"), {})
    finally:
        os.umask(previous)
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o644


def test_sample_images_remove_the_temporary_a_killed_write_left(tmp_path):
    from cnns.datasets.make_sample_images import write_samples
    (tmp_path / ".cat.jpg.x1y2z3.tmp").write_bytes(b"half")
    write_samples(str(tmp_path))
    assert not [name for name in os.listdir(tmp_path) if atomic.is_temporary(name)]


def test_cleaning_without_the_lock_keeps_a_temporary_whose_writer_still_runs(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = atomic.writer_tag().rpartition("-")[0]
    try:
        live_write = tmp_path / f".model.onnx.{host}-{sleeper.pid}.ab12.tmp"
        killed_write = tmp_path / f".model.onnx.{host}-{dead.pid}.cd34.tmp"
        other_host_fresh = tmp_path / f".model.onnx.elsewhere-{dead.pid}.ef56.tmp"
        other_host_old = tmp_path / f".model.onnx.elsewhere-{dead.pid}.gh78.tmp"
        untagged = tmp_path / ".model.onnx.ij90.tmp"
        for path in (live_write, killed_write, other_host_fresh, other_host_old, untagged):
            path.write_bytes(b"half")
        two_days_ago = time.time() - 2 * 24 * 3600
        os.utime(other_host_old, (two_days_ago, two_days_ago))
        assert atomic.remove_stale_temporaries(str(tmp_path), only_for="model.onnx") == 3
        assert sorted(os.listdir(tmp_path)) == sorted([live_write.name, other_host_fresh.name])
        assert atomic.remove_stale_temporaries(str(tmp_path)) == 2 and os.listdir(tmp_path) == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_temporary_name_carries_its_writer(tmp_path):
    target = tmp_path / "results.json"
    with atomic.atomic_path(str(target)) as tmp:
        assert os.path.basename(tmp).startswith(f".results.json.{atomic.writer_tag()}.")
        assert atomic.remove_stale_temporaries(str(tmp_path), only_for="results.json") == 0
        open(tmp, "w").write("{}")
    assert os.listdir(tmp_path) == ["results.json"]


def test_an_instance_whose_program_cannot_start_says_so_in_one_line(monkeypatch, capsys):
    from cnns.utils import poprun_instance
    for name, value in {"POPRUN_NUM_HOSTS": "1", "POPRUN_NODE": "0", "LOCAL_RANK": "0",
                        "POPDIST_NUM_LOCAL_REPLICAS": "1", "POPRUN_HOST": "here"}.items():
        monkeypatch.setenv(name, value)
    assert poprun_instance.main(["no-such-program-xyz"]) == poprun_instance.PROGRAM_NOT_STARTED
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["poprun: instance 0 on host here could not start 'no-such-program-xyz' (No such file or directory)."]


def test_torch_save_on_a_full_disk_is_named_as_a_full_disk(tmp_path, monkeypatch):
    from collections import namedtuple
    from cnns.train import checkpoint
    usage = namedtuple("usage", "total used free")

    def full(payload, f):
        f.write(b"PK" + b"0" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 25891456 vs 25891352")
    monkeypatch.setattr(checkpoint.torch, "save", full)
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda folder: usage(10, 10, 0))
    with pytest.raises(OSError) as raised:
        checkpoint.save_checkpoint(str(tmp_path), "m_generated_1.pt", {"epoch": 1})
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "m_generated_1.pt")
    assert os.listdir(tmp_path) == []


def test_weight_avg_refuses_a_folder_without_room_for_the_average(tmp_path, monkeypatch, capsys):
    from collections import namedtuple
    from cnns.train import weight_avg
    from tests.test_reliability import checkpoint
    for epoch in (1, 2):
        checkpoint(str(tmp_path / f"resnet18_generated_{epoch}.pt"), epoch=epoch)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10, 10, 100))
    with pytest.raises(SystemExit) as exited:
        weight_avg.main(["--checkpoint-path", str(tmp_path)])
    line = _one_error_line(capsys.readouterr().err)
    assert exited.value.code == 2 and line.startswith("error: The averaged checkpoint needs about")
    assert sorted(os.listdir(tmp_path)) == ["resnet18_generated_1.pt", "resnet18_generated_2.pt"]


def test_a_writer_by_file_name_gets_a_temporary_renamed_only_when_it_completes(tmp_path):
    target = tmp_path / "profile_trace.json"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(str(target)) as name:
            open(name, "w").write("{half")
            raise RuntimeError("exporter failed")
    assert os.listdir(tmp_path) == []
    with atomic.atomic_path(str(target)) as name:
        open(name, "w").write("{}")
    assert os.listdir(tmp_path) == ["profile_trace.json"] and target.read_text() == "{}"


def test_sweep_files_are_written_atomically(tmp_path, monkeypatch):
    from cnns.utils import sweep

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError) as raised:
        sweep.write_csv([], str(tmp_path / "sweep.csv"))
    assert raised.value.filename == str(tmp_path / "sweep.csv")
    assert os.listdir(tmp_path) == []


SAMPLE_ARGS = ["--digit-classes", "2", "--train-per-class", "2", "--validation-per-class", "1", "--size", "8",
               "--no-photos"]


def _tree(root) -> dict:
    return {os.path.relpath(os.path.join(folder, name), root): os.path.getsize(os.path.join(folder, name))
            for folder, _, names in os.walk(root) for name in names}


def test_disk_full_while_making_a_sample_folder_keeps_the_old_folder_whole(tmp_path, monkeypatch, capsys):
    from PIL import Image

    import cnns.datasets.make_sample_folder as module
    root = tmp_path / "samples"
    module.main([str(root)] + SAMPLE_ARGS)
    before = _tree(root)
    assert len(before) == 6
    saves = []
    original = Image.Image.save

    def full(self, fp, *args, **kwargs):
        saves.append(fp)
        if len(saves) == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, fp, *args, **kwargs)
    monkeypatch.setattr(Image.Image, "save", full)
    for folder, argv, fourth in ((root, ["--train-per-class", "3"], "validation/digit0/digit0_0000.jpg"),
                                 (tmp_path / "new", [], "train/digit1/digit1_0000.jpg")):
        saves.clear()
        with pytest.raises(SystemExit) as exited:
            module.main([str(folder)] + SAMPLE_ARGS + argv)
        line = _one_error_line(capsys.readouterr().err)
        assert exited.value.code == 1 and "No space left on device" in line
        assert repr(str(folder / fourth)) in line, line
    assert _tree(root) == before and sorted(os.listdir(root)) == ["train", "validation"]
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_a_killed_sample_folder_run_leaves_only_a_temporary_that_the_next_start_removes(tmp_path):
    root = tmp_path / "samples"
    child = _run_python(f"""
        import time
        from PIL import Image
        import cnns.datasets.make_sample_folder as module
        original, saves = Image.Image.save, []
        def slow(self, fp, *args, **kwargs):
            saves.append(fp)
            if len(saves) == 3:
                print("writing", flush=True)
                time.sleep(60)
            return original(self, fp, *args, **kwargs)
        Image.Image.save = slow
        module.main([{str(root)!r}] + {SAMPLE_ARGS!r})
    """, tmp_path)
    assert child.stdout.readline().strip() == "writing"
    child.kill()
    child.communicate(timeout=30)
    names = os.listdir(root)
    assert len(names) == 2 and ".lock" in names, names
    assert all(atomic.is_temporary(name) for name in names if name != ".lock")
    from cnns.datasets.make_sample_folder import main
    main([str(root)] + SAMPLE_ARGS)
    assert sorted(os.listdir(root)) == ["train", "validation"] and len(_tree(root)) == 6


def _launch_tiny(tmp_path) -> tuple[subprocess.Popen, str]:
    from tests.test_onnx_bulk import tiny_onnx
    models, logs = tmp_path / "models", tmp_path / "logs"
    tiny_onnx(models / "resnext101_32x4d" / "resnext101_32x4d_bs2.onnx")
    child = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "inference", "onnx_bulk", "resnext_inference_launch.py"), "--synthetic",
         "--num_ipus", "2", "--batch_size", "2", "--batches_per_step", "20", "--iterations", "1000000",
         "--num_threads", "1", "--num_workers", "1", "--save_results", "--model_dir", str(models),
         "--log_dir", str(logs)], cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    return child, str(logs)


def _worker_pid(logs: str, index: int, deadline: float) -> int:
    """The pid of worker ``index`` once it has timed a step (its log lines carry proc<pid>)."""
    import glob
    import re
    while time.monotonic() < deadline:
        for log in glob.glob(os.path.join(logs, "*", f"log_{index}")):
            with open(log) as f:
                text = f.read()
            if re.search(r"step \d+:", text):
                return int(re.search(r"proc(\d+) ", text).group(1))
        time.sleep(0.05)
    raise AssertionError(f"worker {index} never ran a step")


@pytest.mark.slow
def test_a_killed_onnx_bulk_worker_ends_the_launch_naming_it_and_leaves_no_results_file(tmp_path):
    child, logs = _launch_tiny(tmp_path)
    try:
        victim = _worker_pid(logs, 1, time.monotonic() + 120)
        other = _worker_pid(logs, 0, time.monotonic() + 30)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert time.monotonic() - killed < 30
    line = _one_error_line(err)
    assert child.returncode == 1
    assert f"Inference process 1 (pid {victim}) was killed by SIGKILL" in line and "were stopped" in line, line
    with pytest.raises(ProcessLookupError):
        os.kill(other, 0)
    left = [name for name in os.listdir(logs) if not os.path.isdir(os.path.join(logs, name))]
    assert left == [], left
    [run_folder] = os.listdir(logs)
    with open(os.path.join(logs, run_folder, "results.json")) as f:
        recorded = json.load(f)
    assert recorded["status"] == "failed" and "Inference process 1" in recorded["error"], recorded


def test_a_killed_launch_leaves_result_parts_that_the_next_launch_removes(tmp_path):
    from cnns.inference.onnx_bulk.resnext_inference_launch import remove_killed_launch_files
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stem = f"20250101-000000-{dead.pid}_resnext101_32x4d_bs2"
    ours = f"20250101-000000-{os.getpid()}_resnext101_32x4d_bs2"
    stale = [f"{stem}_proc0_top5.part", f".{stem}_proc1_top5.part.ab12.tmp", f".{stem}_top5.csv.cd34.tmp"]
    kept = [f"{stem}_top5.csv", f"{ours}_proc0_top5.part", f".{ours}_proc1_top5.part.ef56.tmp", "notes.txt"]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    assert remove_killed_launch_files(tmp_path) == 3
    assert sorted(os.listdir(tmp_path)) == sorted(kept)


class _BrokenLaunch:
    """Stands in for poprun's Launch: fails as an unexpected bug would."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def run(self) -> int:
        raise RuntimeError("supervisor bug")


def test_poprun_shows_a_traceback_only_with_debug_or_the_environment_variable(monkeypatch, capsys):
    from cnns.utils import poprun
    monkeypatch.delenv("HARNESS_DEBUG", raising=False)
    monkeypatch.setattr(poprun, "Launch", _BrokenLaunch)
    program = ["python", "-c", "pass", "--debug"]
    assert poprun.main(["--num-instances", "1"] + program) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line == ("error: poprun could not run the launch: RuntimeError: supervisor bug "
                    "(run again with --debug or HARNESS_DEBUG=1 for the traceback).")
    assert poprun.main(["--num-replicas", "0"] + program) == 2, "a --debug after the program is the program's"
    assert "--num-replicas must be at least 1" in _one_error_line(capsys.readouterr().err)
    with pytest.raises(RuntimeError, match="supervisor bug"):
        poprun.main(["--debug", "--num-instances", "1"] + program)
    with pytest.raises(UsageError, match="--num-replicas must be at least 1"):
        poprun.main(["--debug", "--num-replicas", "0"] + program)
    with pytest.raises(UsageError, match="invalid int value"):
        poprun.main(["--debug", "--num-instances", "x"] + program)
    monkeypatch.setenv("HARNESS_DEBUG", "1")
    with pytest.raises(RuntimeError, match="supervisor bug"):
        poprun.main(["--num-instances", "1"] + program)
    assert "--debug" in poprun.parser().format_help() and "HARNESS_DEBUG=1" in poprun.parser().format_help()
    assert poprun.parser().parse_args(program).program == program


def test_disk_full_while_writing_leftover_shards_keeps_the_old_ones_and_leaves_no_temporary(tmp_path, monkeypatch,
                                                                                              capsys):
    import cnns.datasets.distributed_webdataset as module
    from cnns.datasets.make_sample_folder import build_image_folder
    from cnns.datasets.webdataset_format import leftover_folder
    build_image_folder(str(tmp_path / "images"), digit_classes=2, train_per_class=3, validation_per_class=2,
                       photos=False, size=8)
    from cnns.datasets.create_webdataset import main as create
    create(["--source", str(tmp_path / "images"), "--target", str(tmp_path / "wds"), "--samples-per-shard", "3",
            "--num-workers", "0"])
    module.main(["--target", str(tmp_path / "wds"), "--num-instances", "2"])
    where = leftover_folder(str(tmp_path / "wds"), 2)
    before = _tree(where)
    assert before
    (tmp_path / "wds" / "distributed" / ".2-instances.killed.tmp").mkdir()

    def full(self, sample):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(module.wds.TarWriter, "write", full)
    with pytest.raises(SystemExit) as exited:
        module.main(["--target", str(tmp_path / "wds"), "--num-instances", "2"])
    assert exited.value.code == 1 and "No space left on device" in _one_error_line(capsys.readouterr().err)
    assert _tree(where) == before
    assert os.listdir(tmp_path / "wds" / "distributed") == ["2-instances"]


def test_the_elastic_launch_record_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from cnns.train import elastic
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "launch-1")
    elastic.record(str(tmp_path), str(tmp_path / "m_1.pt"))
    before = (tmp_path / elastic.RECORD).read_text()
    written = []

    def full(fd):
        written.append(os.listdir(tmp_path))
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        elastic.record(str(tmp_path), str(tmp_path / "m_2.pt"))
    assert any(atomic.is_temporary(name) for name in written[0]), "a killed write would leave an uncleanable name"
    assert os.listdir(tmp_path) == [elastic.RECORD] and (tmp_path / elastic.RECORD).read_text() == before


def _get_images_tree(tmp_path, cp_fails: bool) -> tuple[str, dict]:
    """A copy of get_images.sh in a throw-away tree, with a curl that 'downloads' two JPEGs and, when
    ``cp_fails``, a cp that writes half of the first file and fails as on a full disk."""
    import tarfile
    root, bin_dir = tmp_path / "repo", tmp_path / "bin"
    (root / "datasets").mkdir(parents=True)
    bin_dir.mkdir()
    shutil.copy(os.path.join(REPO, "datasets", "get_images.sh"), root / "datasets" / "get_images.sh")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (source / name).write_bytes(b"\xff\xd8" + b"\x00" * 1000)
    with tarfile.open(tmp_path / "images.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="images")
    (bin_dir / "curl").write_text(f'#!/bin/sh\nwhile [ "$1" != "-o" ]; do shift; done\ncp "{tmp_path}/images.tar.gz" "$2"\n')
    if cp_fails:
        (bin_dir / "cp").write_text('#!/bin/sh\n[ "$1" = -t ] || exec /bin/cp "$@"\nhead -c 10 "$3" > "$2/$(basename "$3")"\n'
                                    'echo "cp: error writing: No space left on device" >&2\nexit 1\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": "/nonexistent"}
    return str(root), env


@pytest.mark.parametrize("cp_fails", [True, False])
def test_get_images_on_a_full_disk_leaves_no_partial_set(tmp_path, cp_fails):
    root, env = _get_images_tree(tmp_path, cp_fails)
    (tmp_path / "repo" / "data" / ".images.killed.tmp").mkdir(parents=True)
    run = subprocess.run(["bash", os.path.join(root, "datasets", "get_images.sh")], capture_output=True, text=True,
                         env=env, timeout=60)
    data = tmp_path / "repo" / "data"
    assert os.listdir(data) == ["images"], "a killed or failed run's temporary folder is left"
    if cp_fails:
        assert run.returncode == 1
        assert "is the disk full?" in _one_error_line(run.stderr) and os.listdir(data / "images") == []
    else:
        assert run.returncode == 0, run.stderr
        assert sorted(os.listdir(data / "images")) == ["a.jpg", "b.jpg"]


@pytest.mark.slow
def test_sigterm_to_the_onnx_bulk_launcher_stops_every_worker_and_leaves_no_results_file(tmp_path):
    child, logs = _launch_tiny(tmp_path)
    try:
        workers = [_worker_pid(logs, index, time.monotonic() + 120) for index in (0, 1)]
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 128 + signal.SIGTERM
    assert _one_error_line(err).startswith("error: Stopped by SIGTERM")
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert [name for name in os.listdir(logs) if not os.path.isdir(os.path.join(logs, name))] == []


def test_a_second_run_into_a_folder_being_written_is_refused_and_leaves_the_first_runs_temporaries(tmp_path, capsys):
    """partition_dataset, create_webdataset and distributed_webdataset hold their output folder's lock, so a
    second run neither writes beside the first nor deletes the first's staging folder as a stale temporary."""
    import cnns.datasets.distributed_webdataset as leftovers
    from cnns.datasets.create_webdataset import main as create
    from cnns.datasets.make_sample_folder import build_image_folder
    build_image_folder(str(tmp_path / "images"), digit_classes=2, train_per_class=3, validation_per_class=2,
                       photos=False, size=8)
    create(["--source", str(tmp_path / "images"), "--target", str(tmp_path / "wds"), "--samples-per-shard", "3",
            "--num-workers", "0"])
    runs = {
        "--output": (tmp_path / "parts", lambda: _partition_main().main(
            ["--data-dir", str(tmp_path / "images" / "train" / "digit0"), "--partitions", "1",
             "--output", str(tmp_path / "parts")])),
        "--target": (tmp_path / "wds2", lambda: create(
            ["--source", str(tmp_path / "images"), "--target", str(tmp_path / "wds2"), "--num-workers", "0"])),
        "--imagenet-data-path": (tmp_path / "wds" / "distributed", lambda: leftovers.main(
            ["--target", str(tmp_path / "wds"), "--num-instances", "2"])),
    }
    for option, (folder, run) in runs.items():
        folder.mkdir(parents=True, exist_ok=True)
        running = folder / ".staging-of-the-first-run.tmp"
        running.mkdir()
        first = atomic.FolderLock(str(folder), option)
        try:
            with pytest.raises(SystemExit) as exited:
                run()
        finally:
            first.release()
        line = _one_error_line(capsys.readouterr().err)
        assert exited.value.code == 2 and option in line and "in use by another run" in line, line
        assert running.is_dir() and sorted(os.listdir(folder)) == [running.name]
