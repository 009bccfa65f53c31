"""Hostile but realistic input for every entry point: one ``error:`` line, the right exit code, no work done.

Each table row calls an entry point's ``main(argv)`` in-process (the onnx_bulk scripts, which set up their
own import path, in a subprocess). The step after validation is replaced by a sentinel, so a bad value
that slipped through fails the test at once instead of starting a benchmark.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, List, Tuple

import pytest
import torch

from tests.scripts import load_benchmark, load_script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONNX_BULK = os.path.join(REPO, "inference", "onnx_bulk")
MARKER_NAME = "code-ran"


class ReachedWork(Exception):
    """Raised by the sentinel: validation let the input through."""


def _sentinel(*_: Any, **__: Any) -> None:
    raise ReachedWork("validation let this input through")


class Evil:
    """A pickle that would create a file when unpickled with weights_only=False."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Tuple[Any, ...]:
        return (open, (self.marker, "w"))


@pytest.fixture
def files(tmp_path) -> Dict[str, str]:
    """Bad things a user points options at."""
    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    evil = tmp_path / "evil.pt"
    torch.save({"model_state_dict": Evil(str(tmp_path / MARKER_NAME))}, evil)
    folder = tmp_path / "folder"
    folder.mkdir()
    empty_ckpts = tmp_path / "no_ckpts"
    empty_ckpts.mkdir()
    (tmp_path / "empty.onnx").write_bytes(b"")
    return {"empty_onnx": str(tmp_path / "empty.onnx"), "tmp": str(tmp_path), "text": str(text), "evil": str(evil), "dir": str(folder),
            "missing": str(tmp_path / "missing.pt"), "under_file": str(text / "sub"),
            "empty_ckpts": str(empty_ckpts), "logs": str(tmp_path / "logs")}


def checkpoint(path: str, **overrides: Any) -> str:
    """A train.py-shaped checkpoint (tiny state dict) with some fields replaced."""
    payload = {"epoch": 1, "num_classes": 10, "model_state_dict": {"w": torch.ones(2)},
               "args": {"model": "resnet18", "data": "generated", "epoch": 2, "log_path": "/nonexistent/elsewhere"}}
    for key, value in overrides.items():
        if key.startswith("args."):
            payload["args"][key[5:]] = value
        elif value is _DROP:
            payload.pop(key)
        else:
            payload[key] = value
    torch.save(payload, path)
    return path


_DROP = object()


# benchmarks/<script>.py: the first function that measures (or, in inference_overhead.py, sets the
# process-wide host allocator)
BENCHMARK_FIRST_STEP = {"peers": "run_engine", "scaling": "launch", "training_compiled": "run_engine",
                        "inference_overhead": "configure_host_allocator", "host_allocator": "measure",
                        "jpeg_decode": "load_images", "auto_choice_reuse": "sequence", "gc_settle": "measure",
                        "after_call": "build", "conv_bound": "ort_profile"}


def _entry(script: str, monkeypatch) -> Callable[[List[str]], Any]:
    """The script's main with the first step after validation replaced by the sentinel."""
    if script in BENCHMARK_FIRST_STEP:
        module = load_benchmark(script)
        monkeypatch.setattr(module, BENCHMARK_FIRST_STEP[script], _sentinel)
    elif script == "run_benchmark":
        module = load_script("run_benchmark", os.path.join(REPO, "inference", "run_benchmark.py"))
        monkeypatch.setattr(module, "select_backend", _sentinel)
    elif script == "train":
        import cnns.train.train as module
        monkeypatch.setattr(module, "select_backend", _sentinel)
    elif script == "validate":
        import cnns.train.validate as module
        monkeypatch.setattr(module, "select_backend", _sentinel)
    elif script == "restore":
        import cnns.train.restore as module
        monkeypatch.setattr(module, "run_training", _sentinel)
    elif script == "weight_avg":
        import cnns.train.weight_avg as module
        monkeypatch.setattr(module, "average_checkpoints", _sentinel)
    elif script == "create_webdataset":
        import cnns.datasets.create_webdataset as module
        monkeypatch.setattr(module, "write_split", _sentinel)
    elif script == "distributed_webdataset":
        import cnns.datasets.distributed_webdataset as module
        monkeypatch.setattr(module, "write_instance_leftovers", _sentinel)
    elif script == "host_benchmark":
        import cnns.datasets.host_benchmark as module
        monkeypatch.setattr(module, "run", _sentinel)
    elif script == "make_sample_folder":
        import cnns.datasets.make_sample_folder as module
        monkeypatch.setattr(module, "build_image_folder", _sentinel)
    elif script == "make_sample_images":
        import cnns.datasets.make_sample_images as module
        monkeypatch.setattr(module, "write_samples", _sentinel)
    elif script == "validate_dataset":
        import cnns.datasets.validate_dataset as module
        monkeypatch.setattr(module, "check_dataset", _sentinel)
    else:
        raise KeyError(script)
    return module.main


def call(main: Callable[[List[str]], Any], argv: List[str], capsys) -> Tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return exited.value.code, capsys.readouterr().err


def assert_one_error_line(code: int, err: str, expected_code: int, fragment: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == expected_code, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment.lower() in lines[0].lower(), lines[0]


RB = ["--data", "generated", "--random-weights", "--iterations", "1"]
TR = ["--data", "generated", "--iterations", "1", "--epoch", "1"]

# (script, argv with {placeholders}, fragment of the error line)
CASES: List[Tuple[str, List[str], str]] = [
    # run_benchmark.py: counts and ranges
    ("run_benchmark", RB + ["--warmup-iterations", "-1"], "--warmup-iterations must be at least 0"),
    ("run_benchmark", RB + ["--dataloader-worker", "-1"], "--dataloader-worker must be at least 0"),
    ("run_benchmark", RB + ["--dataloader-worker", "100000"], "--dataloader-worker must be at most"),
    ("run_benchmark", RB + ["--num-io-tiles", "-1"], "--num-io-tiles must be at least 0"),
    ("run_benchmark", RB + ["--available-memory-proportion", "5.0"], "--available-memory-proportion must be in (0, 1]"),
    ("run_benchmark", RB + ["--available-memory-proportion", "0"], "--available-memory-proportion must be in (0, 1]"),
    ("run_benchmark", RB + ["--available-memory-proportion", "nan"], "not a finite number"),
    ("run_benchmark", RB + ["--available-memory-proportion", "0.5", "0.5", "0.5"], "one value or one per pipeline stage"),
    ("run_benchmark", RB + ["--batch-size", "0"], "--batch-size must be at least 1"),
    ("run_benchmark", RB + ["--batch-size", "-3"], "--batch-size must be at least 1"),
    ("run_benchmark", RB + ["--batch-size", "abc"], "invalid int value"),
    ("run_benchmark", RB + ["--batch-size", "1.5"], "invalid int value"),
    ("run_benchmark", RB + ["--replicas", "0"], "--replicas must be at least 1"),
    ("run_benchmark", RB + ["--device-iterations", "0"], "--device-iterations must be at least 1"),
    ("run_benchmark", RB + ["--iterations", "0"], "--iterations must be at least 1"),
    ("run_benchmark", RB + ["--iterations", "-5"], "--iterations must be at least 1"),
    ("run_benchmark", RB + ["--norm-num-groups", "0"], "--norm-num-groups must be at least 1"),
    ("run_benchmark", RB + ["--norm-eps", "0"], "--norm-eps must be in (0, 1]"),
    ("run_benchmark", RB + ["--norm-eps=-1e-5"], "--norm-eps must be in (0, 1]"),
    ("run_benchmark", RB + ["--norm-eps", "inf"], "not a finite number"),
    ("run_benchmark", RB + ["--batchnorm-momentum", "2"], "--batchnorm-momentum must be in [0, 1]"),
    ("run_benchmark", RB + ["--batchnorm-momentum", "nan"], "not a finite number"),
    ("run_benchmark", RB + ["--efficientnet-expand-ratio", "0"], "--efficientnet-expand-ratio must be at least 1"),
    ("run_benchmark", RB + ["--efficientnet-group-dim", "-2"], "--efficientnet-group-dim must be at least 1"),
    ("run_benchmark", RB + ["--dataloader-rebatch-size", "0"], "--dataloader-rebatch-size must be at least 1"),
    ("run_benchmark", RB + ["--seed", "-1"], "--seed must be in [0, 4294967295]"),
    ("run_benchmark", RB + ["--seed", str(2 ** 32)], "--seed must be in [0, 4294967295]"),
    ("run_benchmark", RB + ["--webdataset-percentage-to-use", "0"], "--webdataset-percentage-to-use must be in (0, 100]"),
    ("run_benchmark", RB + ["--webdataset-percentage-to-use", "150"], "--webdataset-percentage-to-use must be in (0, 100]"),
    ("run_benchmark", RB + ["--precision", "8.8"], "--precision '8.8' is not one of"),
    ("run_benchmark", RB + ["--norm-type", "layer"], "--norm-type 'layer' is not one of"),
    ("run_benchmark", RB + ["--model", "resnet19"], "unknown model 'resnet19'"),
    ("run_benchmark", ["--data", "tape"], "invalid choice: 'tape'"),
    ("run_benchmark", RB + ["--device", "tpu"], "invalid choice: 'tpu'"),
    ("run_benchmark", RB + ["--corrupt-images", "ignore"], "invalid choice: 'ignore'"),
    ("run_benchmark", RB + ["--no-such-option"], "unrecognized arguments"),
    ("run_benchmark", RB + ["--config", "nope"], "--config 'nope' is not a preset"),
    ("run_benchmark", RB + ["--batch-size", "100000", "--device-iterations", "100000"], "needs"),
    ("run_benchmark", RB + ["--batch-size", "4096", "--replicas", "4096", "--device-iterations", "64"], "GiB of host memory"),
    ("run_benchmark", RB + ["--batch-size", "100000000"], "--batch-size 100000000 x --device-iterations 1 x --replicas 1"),
    ("run_benchmark", RB + ["--batch-size", "200000", "--model", "efficientnet-b7"], "(200000 images of 600x600, efficientnet-b7)"),
    ("run_benchmark", RB + ["--replicas", "100000000"], "GiB of host memory"),
    ("run_benchmark", RB + ["--webdataset-memory-cache-ratio", "2"], "--webdataset-memory-cache-ratio must be in [0, 1]"),
    ("run_benchmark", RB + ["--webdataset-memory-cache-ratio", "-0.5"], "--webdataset-memory-cache-ratio must be in [0, 1]"),
    ("run_benchmark", RB + ["--collective-timeout", "0"], "--collective-timeout must be a positive number of seconds"),
    ("run_benchmark", RB + ["--collective-timeout", "nan"], "--collective-timeout nan is not a finite number"),
    # run_benchmark.py: paths
    ("run_benchmark", RB + ["--log-path", "{text}"], "is a file, not a folder"),
    ("run_benchmark", RB + ["--log-path", "{under_file}"], "cannot be written to"),
    ("run_benchmark", RB + ["--log-path", "/proc/no-such-folder"], "cannot be written to"),
    ("run_benchmark", RB + ["--model-cache-path", "{text}"], "is a file, not a folder"),
    ("run_benchmark", RB + ["--model-cache-path", "{under_file}"], "cannot be written to"),
    ("run_benchmark", RB + ["--weights", "{missing}"], "does not exist"),
    ("run_benchmark", RB + ["--weights", "{dir}"], "is a folder"),
    ("run_benchmark", RB + ["--weights", "{text}"], "is not a PyTorch file"),
    ("run_benchmark", RB + ["--weights", "/dev/null"], "is not a regular file"),
    ("run_benchmark", RB + ["--imagenet-data-path", "{missing}"], "does not exist"),
    ("run_benchmark", RB + ["--imagenet-data-path", "{text}"], "is a file"),
    ("run_benchmark", RB + ["--data", "imagenet", "--imagenet-data-path", "{dir}"], "folder/validation does not exist"),
    ("run_benchmark", RB + ["--data", "imagenet", "--imagenet-data-path", "{only_train}"], "validation does not exist"),
    ("run_benchmark", RB + ["--data", "imagenet"], "--data imagenet needs --imagenet-data-path"),
    ("run_benchmark", RB + ["--pipeline-splits", "layer2"], "--device-iterations is 1; inference needs device iterations"),
    ("run_benchmark", RB + ["--pipeline-splits", "layer9", "--device-iterations", "2"], "unknown pipeline split 'layer9'"),
    ("run_benchmark", RB + ["--pipeline-splits", "layer2", "layer3", "--device-iterations", "2"], "number of stages (3)"),
    # train.py: training values
    ("train", TR + ["--lr", "nan"], "--lr nan is not a finite number"),
    ("train", TR + ["--lr", "inf"], "--lr inf is not a finite number"),
    ("train", TR + ["--lr", "-0.1"], "--lr must be >= 0"),
    ("train", TR + ["--momentum", "nan"], "--momentum nan is not a finite number"),
    ("train", TR + ["--momentum", "1.5"], "--momentum must be in [0, 1)"),
    ("train", TR + ["--momentum", "-0.1"], "--momentum must be >= 0"),
    ("train", TR + ["--lr-decay", "-1"], "--lr-decay must be in (0, 1]"),
    ("train", TR + ["--lr-decay", "0"], "--lr-decay must be in (0, 1]"),
    ("train", TR + ["--lr-decay", "3"], "--lr-decay must be in (0, 1]"),
    ("train", TR + ["--lr-epoch-decay", "0"], "--lr-epoch-decay must be in (0, inf]"),
    ("train", TR + ["--lr-epoch-decay", "2", "-1"], "--lr-epoch-decay must be in (0, inf]"),
    ("train", TR + ["--epoch", "0"], "--epoch must be at least 1"),
    ("train", TR + ["--gradient-accumulation", "0"], "--gradient-accumulation must be at least 1"),
    ("train", TR + ["--logs-per-epoch", "0"], "--logs-per-epoch must be at least 1"),
    ("train", TR + ["--validation-frequency", "-1"], "--validation-frequency must be at least 1"),
    ("train", TR + ["--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
    ("train", TR + ["--loss-scaling", "0"], "--loss-scaling must be > 0"),
    ("train", TR + ["--loss-scaling", "inf"], "not a finite number"),
    ("train", TR + ["--initial-loss-scaling", "16", "--loss-scaling", "1"], "--initial-loss-scaling must be"),
    ("train", TR + ["--weight-decay", "-1"], "--weight-decay must be >= 0"),
    ("train", TR + ["--optimizer-eps", "0"], "--optimizer-eps must be in (0, 1]"),
    ("train", TR + ["--rmsprop-decay", "1"], "--rmsprop-decay must be in [0, 1)"),
    ("train", TR + ["--warmup-epoch", "-1"], "--warmup-epoch must be >= 0"),
    ("train", TR + ["--lr-scheduler-freq", "-2"], "--lr-scheduler-freq must be >= 0"),
    ("train", TR + ["--mixup-alpha", "nan"], "not a finite number"),
    ("train", TR + ["--train-crop-scale", "0", "1"], "--train-crop-scale needs"),
    ("train", TR + ["--train-crop-scale", "0.5", "0.2"], "--train-crop-scale needs"),
    ("train", TR + ["--input-size", "4"], "--input-size must be at least 8"),
    ("train", TR + ["--input-size", "100000"], "--input-size must be at most"),
    ("train", TR + ["--input-size", "4096", "--batch-size", "4096"], "(4096 images of 4096x4096, resnet18)"),
    ("train", TR + ["--batch-size", "100000000"], "GiB of host memory"),
    ("train", TR + ["--batch-size", "1000000", "--gradient-accumulation", "1000"], "GiB of host memory"),
    ("train", TR + ["--cutmix-lambda-low", "0.8", "--cutmix-lambda-high", "0.2"], "cutmix bounds"),
    ("train", TR + ["--cutmix-disable-prob", "2"], "--cutmix-disable-prob must be in [0, 1]"),
    ("train", TR + ["--mixup-alpha", "1", "--batch-size", "1"], "too small for mixup"),
    ("train", TR + ["--weight-avg-strategy", "mean"], "needs --checkpoint-path"),
    ("train", TR + ["--weight-avg-exp-decay", "2"], "--weight-avg-exp-decay must be in [0, 1]"),
    ("train", TR + ["--weight-avg-N", "0"], "--weight-avg-n must be a positive count"),
    ("train", TR + ["--data", "imagenet"], "needs --imagenet-data-path"),
    ("train", TR + ["--data", "imagenet", "--imagenet-data-path", "{dir}"], "folder/train does not exist"),
    ("train", TR + ["--data", "imagenet", "--imagenet-data-path", "{only_train}"], "only_train/validation does not exist"),
    ("train", TR + ["--optimizer", "adam"], "invalid choice: 'adam'"),
    ("train", TR + ["--pipeline-splits", "layer2"], "too small for 2 pipeline stages"),
    ("train", TR + ["--pipeline-splits", "layer9", "--gradient-accumulation", "3"], "unknown pipeline split 'layer9'"),
    ("train", TR + ["--recompute-checkpoints", "nosuch"], "--recompute-checkpoints 'nosuch' matches no module"),
    ("train", TR + ["--recompute-checkpoints", "(bad"], "is not a valid regular expression"),
    ("train", TR + ["--model", "efficientnet-b0", "--recompute-mode", "manual", "--recompute-checkpoints", "layer1"],
     "--recompute-checkpoints 'layer1' matches no module"),
    ("train", TR + ["--pipeline-splits", "layer3", "layer2", "--gradient-accumulation", "5"], "without layers"),
    ("train", TR + ["--dataloader-worker", "-1"], "--dataloader-worker must be at least 0"),
    ("train", TR + ["--dataloader-worker", "100000"], "--dataloader-worker must be at most"),
    ("train", TR + ["--checkpoint-path", "{text}"], "is a file, not a folder"),
    ("train", TR + ["--checkpoint-path", "{under_file}"], "cannot be written to"),
    ("train", TR + ["--log-path", "{text}"], "is a file, not a folder"),
    ("train", TR + ["--config", "nope"], "is not a preset"),
    # validate.py
    ("validate", [], "needs --checkpoint-path"),
    ("validate", ["--checkpoint-path", "{missing}"], "does not exist"),
    ("validate", ["--checkpoint-path", "{text}"], "could not be read"),
    ("validate", ["--checkpoint-path", "{evil}"], "could not be read"),
    ("validate", ["--checkpoint-path", "{empty_ckpts}"], "holds no"),
    ("validate", ["--checkpoint-path", "{ckpt_plain_dict}"], "is not a train.py checkpoint"),
    ("validate", ["--checkpoint-path", "{ckpt_no_classes}"], "lacks"),
    ("validate", ["--checkpoint-path", "{ckpt_epoch_negative}"], "'epoch' field"),
    ("validate", ["--checkpoint-path", "{ckpt_classes_string}"], "'num_classes' field"),
    ("validate", ["--checkpoint-path", "{ckpt_state_empty}"], "'model_state_dict' field"),
    ("validate", ["--checkpoint-path", "{ckpt_args_list}"], "'args' field"),
    ("validate", ["--checkpoint-path", "{ckpt_rng_odd}"], "'rng_state' field"),
    ("validate", ["--checkpoint-path", "{ckpt_batch_text}"], "sets batch_size to 'abc'"),
    ("validate", ["--checkpoint-path", "{ckpt_lr_nan}"], "--lr nan is not a finite number"),
    ("validate", ["--checkpoint-path", "{ckpt_momentum_high}"], "--momentum must be in [0, 1)"),
    ("validate", ["--checkpoint-path", "{ckpt_precision_odd}"], "--precision '8.8' is not one of"),
    ("validate", ["--checkpoint-path", "{ckpt_ok}", "--batch-size", "0"], "--batch-size must be at least 1"),
    ("validate", ["--checkpoint-path", "{ckpt_ok}", "--log-path", "{text}"], "is a file, not a folder"),
    ("validate", ["--checkpoint-path", "{ckpt_ok}", "--lr", "0.1"], "validate.py does not read --lr"),
    ("validate", ["--checkpoint-path", "{ckpt_ok}", "--weights", "{text}"], "validate.py does not read --weights"),
    ("validate", ["--checkpoint-path", "{ckpt_ok}", "--config", "resnet50-pod16"], "does not read --config"),
    ("validate", ["--checkpoint-path", "{ckpt_ok}", "--profile"], "validate.py does not read --profile"),
    ("validate", ["--checkpoint-path", "{ckpt_ok}", "--epoch=3", "--mixup-alpha", "1"], "does not read --epoch, --mixup-alpha"),
    # restore.py
    ("restore", [], "needs --checkpoint-path"),
    ("restore", ["--checkpoint-path", "{dir}"], "needs --checkpoint-path naming one checkpoint file"),
    ("restore", ["--checkpoint-path", "{missing}"], "does not exist"),
    ("restore", ["--checkpoint-path", "{text}"], "could not be read"),
    ("restore", ["--checkpoint-path", "{evil}"], "could not be read"),
    ("restore", ["--checkpoint-path", "{ckpt_ok}", "--epoch", "1"], "is from epoch 1 of a 1-epoch run"),
    ("restore", ["--checkpoint-path", "{ckpt_lr_nan}"], "--lr nan is not a finite number"),
    ("restore", ["--checkpoint-path", "{ckpt_batch_text}"], "sets batch_size to 'abc'"),
    ("restore", ["--checkpoint-path", "{ckpt_ok}", "--weights", "{text}"], "restore.py does not read --weights"),
    ("restore", ["--checkpoint-path", "{ckpt_ok}", "--config", "resnet50-pod16"], "restore.py does not read --config"),
    # weight_avg.py
    ("weight_avg", ["--checkpoint-path", "{missing}"], "does not exist"),
    ("weight_avg", ["--checkpoint-path", "{text}"], "is a file"),
    ("weight_avg", ["--checkpoint-path", "{dir}", "--weight-avg-exp-decay", "nan"], "--weight-avg-exp-decay must be in"),
    ("weight_avg", ["--checkpoint-path", "{dir}", "--weight-avg-N", "0"], "--weight-avg-n must be a positive count"),
    ("weight_avg", ["--checkpoint-path", "{dir}", "--weight-avg-strategy", "median"], "invalid choice"),
    # datasets/create_webdataset.py
    ("create_webdataset", ["--source", "{dir}", "--target", "{tmp}/wds", "--samples-per-shard", "0"], "--samples-per-shard must be at least 1"),
    ("create_webdataset", ["--source", "{dir}", "--target", "{tmp}/wds", "--image-quality", "0"], "--image-quality must be between 1 and 100"),
    ("create_webdataset", ["--source", "{dir}", "--target", "{tmp}/wds", "--image-quality", "101"], "--image-quality must be between 1 and 100"),
    ("create_webdataset", ["--source", "{dir}", "--target", "{tmp}/wds", "--num-workers", "-1"], "--num-workers must be 0 or more"),
    ("create_webdataset", ["--source", "{dir}", "--target", "{tmp}/wds", "--num-workers", "100000"], "--num-workers must be at most"),
    ("create_webdataset", ["--source", "{dir}", "--target", "{tmp}/wds"], "holds neither train/ nor validation/"),
    ("create_webdataset", ["--source", "{dir}"], "the following arguments are required: --target"),
    ("create_webdataset", ["--source", "{dir}", "--target", "{tmp}/wds", "--format", "png"], "invalid choice"),
    # datasets/distributed_webdataset.py
    ("distributed_webdataset", ["--imagenet-data-path", "{dir}", "--num-instances", "1"], "--num-instances must be at least 2"),
    ("distributed_webdataset", ["--imagenet-data-path", "{missing}", "--num-instances", "2"], "does not exist"),
    ("distributed_webdataset", ["--imagenet-data-path", "{wds_escape}", "--num-instances", "2"], "points outside the dataset folder"),
    ("distributed_webdataset", ["--imagenet-data-path", "{wds_absolute}", "--num-instances", "2"], "points outside the dataset folder"),
    ("distributed_webdataset", ["--imagenet-data-path", "{wds_not_json}", "--num-instances", "2"], "it is not JSON"),
    ("distributed_webdataset", ["--imagenet-data-path", "{wds_small}", "--num-instances", "100000"],
     "--num-instances 100000 is more than the 1 samples of split 'train'"),
    # datasets/validate_dataset.py
    ("validate_dataset", [], "the following arguments are required"),
    ("validate_dataset", ["--imagenet-data-path", "{missing}"], "does not exist"),
    ("validate_dataset", ["--imagenet-data-path", "{text}"], "is a file"),
    # datasets/host_benchmark.py
    ("host_benchmark", ["--batch-size", "0"], "--batch-size must be at least 1"),
    ("host_benchmark", ["--epochs", "0"], "--epochs must be at least 1"),
    ("host_benchmark", ["--dataloader-worker", "-1"], "--dataloader-worker must be 0 or more"),
    ("host_benchmark", ["--data", "real", "--dataloader-worker", "100000"], "--dataloader-worker must be at most"),
    ("host_benchmark", ["--input-size", "-224"], "--input-size must be at least 1"),
    ("host_benchmark", ["--dataloader-rebatch-size", "0"], "--dataloader-rebatch-size must be at least 1"),
    ("host_benchmark", ["--webdataset-percentage-to-use", "-5"], "--webdataset-percentage-to-use must be in (0, 100]"),
    ("host_benchmark", ["--data", "imagenet"], "needs --imagenet-data-path"),
    ("host_benchmark", ["--imagenet-data-path", "{missing}"], "does not exist"),
    ("host_benchmark", ["--imagenet-data-path", "{text}"], "is a file"),
    ("host_benchmark", ["--split", "test"], "invalid choice"),
    ("host_benchmark", ["--data", "real", "--batch-size", "100000000"], "--batch-size 100000000 (224x224 images) needs"),
    ("host_benchmark", ["--data", "real", "--input-size", "100000"], "--input-size must be at most 4096"),
    ("host_benchmark", ["--data", "real", "--input-size", "4096", "--batch-size", "100000"], "GiB of host memory"),
    ("host_benchmark", ["--data", "real", "--webdataset-memory-cache-ratio", "2"], "--webdataset-memory-cache-ratio must be in [0, 1]"),
    ("host_benchmark", ["--data", "real", "--seed", "-4"], "--seed must be in [0, 4294967295]"),
    # datasets/make_sample_folder.py
    ("make_sample_folder", ["{tmp}/samples", "--train-per-class", "-1"], "--train-per-class must be at least 1"),
    ("make_sample_folder", ["{tmp}/samples", "--validation-per-class", "-1"], "--validation-per-class must be at least 0"),
    ("make_sample_folder", ["{tmp}/samples", "--size", "0"], "--size must be at least 1"),
    ("make_sample_folder", ["{tmp}/samples", "--size", "99999"], "--size must be at most"),
    ("make_sample_folder", ["{tmp}/samples", "--digit-classes", "11"], "invalid choice"),
    ("make_sample_folder", ["{text}"], "is a file, not a folder"),
    ("make_sample_folder", ["{tmp}/samples", "--train-per-class", "100000000"], "more than the 174 scikit-learn holds"),
    ("make_sample_folder", ["{tmp}/samples", "--train-per-class", "170", "--validation-per-class", "5"], "175 images per class"),
    # datasets/make_sample_images.py
    ("make_sample_images", ["{text}"], "is a file, not a folder"),
    ("make_sample_images", ["{under_file}"], "cannot be written to"),
    ("make_sample_images", [], "the following arguments are required: folder"),
    # benchmarks/auto_choice_reuse.py
    ("auto_choice_reuse", ["--checkpoints", "0"], "--checkpoints must be at least 1, got 0"),
    ("auto_choice_reuse", ["--input-size", "4"], "--input-size must be at least 8, got 4"),
    ("auto_choice_reuse", ["--model", "nosuch"], "unknown model 'nosuch'"),
    # benchmarks/gc_settle.py
    ("gc_settle", ["--calls", "0"], "--calls must be at least 1, got 0"),
    ("gc_settle", ["--rounds", "-1"], "--rounds must be at least 1, got -1"),
    ("gc_settle", ["--model", "nosuch"], "--model: unknown model 'nosuch'"),
    ("gc_settle", ["--executor", "tvm"], "invalid choice: 'tvm'"),
    # benchmarks/after_call.py
    ("after_call", ["--repeats", "0"], "--repeats must be at least 1, got 0"),
    ("after_call", ["--batch-size", "-1"], "--batch-size must be at least 1, got -1"),
    ("after_call", ["--model", "nosuch"], "--model: unknown model 'nosuch'"),
    ("after_call", ["--executors", "tvm"], "invalid choice: 'tvm'"),
    # benchmarks/conv_bound.py
    ("conv_bound", ["--calls", "0"], "--calls must be at least 1, got 0"),
    ("conv_bound", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ("conv_bound", ["--model", "nosuch"], "--model: unknown model 'nosuch'"),
    # benchmarks/peers.py
    ("peers", ["--rounds", "0"], "--rounds must be at least 1, got 0"),
    ("peers", ["--models", "resnet18", "nosuch"], "--models: unknown model 'nosuch'; accepted models are"),
    ("peers", ["--seconds", "-1"], "--seconds must be in (0, inf), got -1.0"),
    ("peers", ["--seconds", "inf"], "--seconds inf is not a finite number"),
    ("peers", ["--batch-sizes", "1", "0"], "--batch-sizes must be at least 1, got 0"),
    ("peers", ["--batch-sizes", "x"], "invalid int value: 'x'"),
    ("peers", ["--peers", "tvm"], "invalid choice: 'tvm'"),
    ("peers", ["--executor", "tensorrt"], "invalid choice: 'tensorrt'"),
    # benchmarks/scaling.py
    ("scaling", ["--instances", "0"], "--instances must be at least 1, got 0"),
    ("scaling", ["--instances", "1", "100000"], "--instances must be at most"),
    ("scaling", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ("scaling", ["--iterations", "-1"], "--iterations must be at least 1, got -1"),
    ("scaling", ["--train-input-size", "4"], "--train-input-size must be in [8, 4096], got 4"),
    ("scaling", ["--model", "nosuch"], "--model: unknown model 'nosuch'"),
    ("scaling", ["--modes", "eval"], "invalid choice: 'eval'"),
    # benchmarks/training_compiled.py
    ("training_compiled", ["--steps", "0"], "--steps must be at least 1, got 0"),
    ("training_compiled", ["--model", "nosuch"], "--model: unknown model 'nosuch'"),
    ("training_compiled", ["--batch-size", "-1"], "--batch-size must be at least 1, got -1"),
    ("training_compiled", ["--rounds", "0"], "--rounds must be at least 1, got 0"),
    # benchmarks/inference_overhead.py
    ("inference_overhead", ["--models", "nosuch"], "--models: unknown model 'nosuch'"),
    ("inference_overhead", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ("inference_overhead", ["--device-iterations", "0"], "--device-iterations must be at least 1, got 0"),
    ("inference_overhead", ["--repeats", "0"], "--repeats must be at least 1, got 0"),
    ("inference_overhead", ["--device", "tpu"], "invalid choice: 'tpu'"),
    ("inference_overhead", ["--host-allocator", "jemalloc"], "invalid choice: 'jemalloc'"),
    # benchmarks/host_allocator.py
    ("host_allocator", ["--steps", "0"], "--steps must be at least 1, got 0"),
    ("host_allocator", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ("host_allocator", ["--repeats", "-2"], "--repeats must be at least 1, got -2"),
    ("host_allocator", ["--models", "nosuch"], "--models: unknown model 'nosuch'"),
    # benchmarks/jpeg_decode.py
    ("jpeg_decode", ["--size", "0"], "--size must be in [1, 4096], got 0"),
    ("jpeg_decode", ["--size", "100000"], "--size must be in [1, 4096], got 100000"),
    ("jpeg_decode", ["--seconds", "0"], "--seconds must be in (0, inf), got 0.0"),
    ("jpeg_decode", ["--seconds", "nan"], "--seconds nan is not a finite number"),
    ("jpeg_decode", ["--images", "{missing}"], "does not exist; give an existing folder"),
    ("jpeg_decode", ["--images", "{text}"], "is a file; give an existing folder"),
    ("jpeg_decode", ["--images", "{dir}"], "holds no JPEG files"),
    ("jpeg_decode", ["--other-pil", "{missing}"], "missing.pt does not exist; give an existing folder"),
    ("jpeg_decode", ["--json", "/nonexistent/x.json"], "is in a folder that does not exist ('/nonexistent')"),
    ("jpeg_decode", ["--json", "{under_file}"], "is in a folder that does not exist"),
    ("jpeg_decode", ["--json", "{dir}"], "is a folder; give a file name"),
]


def _write_metadata(folder: str, shard_file: str, as_json: bool = True) -> str:
    os.makedirs(folder, exist_ok=True)
    from cnns.datasets.webdataset_format import METADATA_FILE, combined_checksum
    entry = {"file": shard_file, "samples": 1, "sha256": "0" * 64}
    splits = {"train": {"samples": 1, "shards": [entry]}}
    meta = {"format_version": 1, "format": "img", "classes": ["a"], "splits": splits,
            "checksum": combined_checksum(splits)}
    with open(os.path.join(folder, METADATA_FILE), "w") as f:
        f.write(json.dumps(meta) if as_json else "{not json")
    return folder


def _materialise(files: Dict[str, str], needed: str) -> None:
    """Build the checkpoint and dataset files a case names, on demand."""
    tmp = files["tmp"]
    ckpts = {
        "ckpt_ok": {},
        "ckpt_no_classes": {"num_classes": _DROP},
        "ckpt_epoch_negative": {"epoch": -1},
        "ckpt_classes_string": {"num_classes": "3"},
        "ckpt_state_empty": {"model_state_dict": {}},
        "ckpt_args_list": {"args": ["resnet18"]},
        "ckpt_rng_odd": {"rng_state": {"torch": "x"}},
        "ckpt_batch_text": {"args.batch_size": "abc"},
        "ckpt_lr_nan": {"args.lr": float("nan")},
        "ckpt_momentum_high": {"args.momentum": 1.5},
        "ckpt_precision_odd": {"args.precision": "8.8"},
    }
    if needed in ckpts:
        files[needed] = checkpoint(os.path.join(tmp, f"{needed}.pt"), **ckpts[needed])
    elif needed == "ckpt_plain_dict":
        files[needed] = os.path.join(tmp, "plain.pt")
        torch.save({"w": torch.ones(1)}, files[needed])
    elif needed == "wds_escape":
        outside = os.path.join(tmp, "outside.tar")
        open(outside, "wb").close()
        files[needed] = _write_metadata(os.path.join(tmp, "wds_escape"), "../outside.tar")
    elif needed == "wds_absolute":
        outside = os.path.join(tmp, "abs.tar")
        open(outside, "wb").close()
        files[needed] = _write_metadata(os.path.join(tmp, "wds_absolute"), outside)
    elif needed in ("onnx_garbage", "onnx_empty"):
        folder = os.path.join(tmp, needed, "resnext101_32x4d")
        os.makedirs(folder)
        with open(os.path.join(folder, "resnext101_32x4d_bs6.onnx"), "wb") as f:
            f.write(b"\x00truncated" if needed == "onnx_garbage" else b"")
        files[needed] = os.path.dirname(folder)
    elif needed == "only_train":
        os.makedirs(os.path.join(tmp, "only_train", "train", "cat"))
        files[needed] = os.path.join(tmp, "only_train")
    elif needed == "wds_small":
        files[needed] = _write_metadata(os.path.join(tmp, "wds_small"), "one.tar")
        open(os.path.join(files[needed], "one.tar"), "wb").close()
    elif needed == "wds_not_json":
        files[needed] = _write_metadata(os.path.join(tmp, "wds_not_json"), "x.tar", as_json=False)


def _fill(argv: List[str], files: Dict[str, str]) -> List[str]:
    out = []
    for arg in argv:
        if "{" in arg:
            name = arg[arg.index("{") + 1:arg.index("}")]
            if name not in files:
                _materialise(files, name)
        out.append(arg.format(**files))
    return out


@pytest.mark.parametrize("script,argv,fragment", CASES,
                         ids=[f"{c[0]}-{'_'.join(c[1][len(RB) if c[0] == 'run_benchmark' and c[1][:len(RB)] == RB else 0:])[:60]}"
                              for c in CASES])
def test_bad_input_is_one_error_line_and_exit_code_2(script, argv, fragment, files, monkeypatch, capsys):
    monkeypatch.chdir(files["tmp"])
    main = _entry(script, monkeypatch)
    code, err = call(main, _fill(argv, files), capsys)
    assert_one_error_line(code, err, 2, fragment)
    assert not os.path.exists(os.path.join(files["tmp"], MARKER_NAME)), "a pickle in a weights file ran code"
    assert not os.path.exists(os.path.join(files["tmp"], "logs")), "a refused run left a log folder"


PRESETS = [
    ("bad:\n  model: [resnet18\n", "is not valid YAML"),
    ("- a\n- b\n", "top level is a list"),
    ("bad: 4\n", "must be a mapping of option names"),
    ("bad:\n  batch_size: four\n", "sets batch_size to 'four'; accepted: an integer"),
    ("bad:\n  batch_size: 2.5\n", "accepted: an integer"),
    ("bad:\n  batch_size: true\n", "accepted: an integer"),
    ("bad:\n  norm_eps: small\n", "accepted: a number"),
    ("bad:\n  batch_size: [1, 2]\n", "accepted: a single value"),
    ("bad:\n  eight_bit_io: 'yes'\n", "accepted: true or false"),
    ("bad:\n  device: tpu\n", "accepted: auto, ipu, cuda, cpu"),
    ("bad:\n  batch_sise: 4\n", "unknown key 'batch_sise'"),
    ("bad:\n  pipeline_splits: [[layer2]]\n", "not nested lists"),
    ("bad:\n  batch_size: 0\n", "--batch-size must be at least 1"),
    ("bad:\n  norm_eps: .nan\n", "not a finite number"),
    ("bad:\n  available_memory_proportion: [0.5, 7]\n", "must be in (0, 1]"),
]


@pytest.mark.parametrize("text,fragment", PRESETS)
def test_bad_preset_is_one_error_line(text, fragment, tmp_path, monkeypatch, capsys):
    module = load_script("run_benchmark", os.path.join(REPO, "inference", "run_benchmark.py"))
    config = tmp_path / "configs.yml"
    config.write_text(text)
    monkeypatch.setattr(module, "CONFIG_FILE", str(config))
    monkeypatch.setattr(module, "select_backend", _sentinel)
    monkeypatch.chdir(tmp_path)
    code, err = call(module.main, ["--config", "bad"], capsys)
    assert_one_error_line(code, err, 2, fragment)


WORKER_REAL = ["--index", "0", "--model", "{text}", "--batch_size", "1", "--batches_per_step", "1", "--log_file", "{tmp}/w/log.txt"]
WORKER = WORKER_REAL + ["--synthetic"]
ONNX_CASES = [
    ("get_model.py", ["--opset", "1"], 2, "--opset 1 is outside"),
    ("get_model.py", ["--batch-size", "0"], 2, "--batch-size must be at least 1"),
    ("get_model.py", ["--weights", "{missing}"], 2, "does not exist"),
    ("get_model.py", ["--model-name", "vgg"], 2, "invalid choice"),
    ("get_model.py", ["--weights", "{text}", "--output-dir", "{tmp}/m"], 2, "is not a PyTorch file"),
    ("get_model.py", ["--weights", "{dir}", "--output-dir", "{tmp}/m"], 2, "is a folder"),
    ("get_model.py", ["--output-dir", "{text}", "--random-weights"], 2, "cannot be written to"),
    ("get_model.py", ["--exporter", "dynamo", "--opset", "9"], 2, "pass --exporter legacy"),
    ("get_model.py", ["--weights", "{evil}", "--random-weights"], 2, "not allowed with argument"),
    ("get_model.py", ["--weights", "{evil}", "--output-dir", "{tmp}/m"], 2, "could not load"),
    ("get_model.py", ["--batch-size", "100000000", "--random-weights", "--output-dir", "{tmp}/m"], 2,
     "--batch-size 100000000 (resnext101_32x4d, 224x224 images) needs at least"),
    ("partition_dataset.py", ["--data-dir", "{missing}"], 2, "is not an existing folder"),
    ("partition_dataset.py", ["--data-dir", "{dir}", "--partitions", "0"], 2, "--partitions must be at least 1"),
    ("partition_dataset.py", ["--data-dir", "{dir}", "--partitions", "2"], 2, "fewer than the 2 partitions"),
    ("resnext_inference_launch.py", ["--batch_size", "0"], 2, "--batch_size must be >= 1"),
    ("resnext_inference_launch.py", ["--num_ipus", "0"], 2, "--num_ipus must be >= 1"),
    ("resnext_inference_launch.py", ["--provider", "tpu", "--synthetic"], 2, "--provider must be auto, cpu or cuda"),
    ("resnext_inference_launch.py", ["--model_dir", "{dir}", "--synthetic"], 2, "no onnx model"),
    ("resnext_inference_launch.py", ["--model_dir", "{onnx_garbage}", "--synthetic", "--num_ipus", "1"], 2,
     "resnext101_32x4d_bs6.onnx cannot be read"),
    ("resnext_inference_launch.py", ["--model_dir", "{onnx_empty}", "--synthetic", "--num_ipus", "1"], 2,
     "resnext101_32x4d_bs6.onnx holds no ONNX graph"),
    ("resnext_inference_launch.py", ["--synthetic", "--num_threads", "100000"], 2, "--num_threads must be at most"),
    ("resnext_inference_launch.py", ["--synthetic", "--num_workers", "100000"], 2, "--num_workers must be at most"),
    ("resnext_inference_launch.py", ["--synthetic", "--num_ipus", "100000"], 2, "--num_ipus must be at most"),
    ("resnext_inference_launch.py", ["--synthetic", "--num_ipus", "1", "--model_dir", "{onnx_garbage}",
                                     "--log_dir", "{text}"], 2, "--log_dir '{text}' is a file"),
    ("inference_worker.py", [], 2, "the following arguments are required: --index"),
    ("inference_worker.py", WORKER + ["--batch_size", "0"], 2, "--batch_size must be 1 or more"),
    ("inference_worker.py", WORKER + ["--batch_size", "x"], 2, "invalid int value: 'x'"),
    ("inference_worker.py", WORKER + ["--index", "-1"], 2, "--index must be 0 or more"),
    ("inference_worker.py", WORKER + ["--threads", "0"], 2, "--threads must be 1 or more"),
    ("inference_worker.py", WORKER + ["--model", "{missing}"], 2, "is not a file"),
    ("inference_worker.py", WORKER_REAL + ["--data_dir", "{missing}"], 2, "is not a folder"),
    ("inference_worker.py", WORKER + ["--provider", "tpu"], 2, "--provider must be auto, cpu or cuda"),
    ("inference_worker.py", WORKER + ["--log_file", "{dir}"], 2, "is a folder; give a file name"),
    ("inference_worker.py", WORKER + ["--results_file", "{dir}"], 2, "is a folder; give a file name"),
    ("inference_worker.py", WORKER, 2, "--model {text} is not an ONNX model: it cannot be read"),
    ("inference_worker.py", WORKER + ["--model", "{empty_onnx}"], 2, "is not an ONNX model: it holds no ONNX graph"),
]


@pytest.mark.parametrize("script,argv,code,fragment", ONNX_CASES)
def test_onnx_bulk_bad_input_is_one_error_line(script, argv, code, fragment, files, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", os.path.join(files["tmp"], "torch_home"))
    monkeypatch.chdir(files["tmp"])
    module = load_script(f"onnx_bulk_{script[:-3]}", os.path.join(ONNX_BULK, script))
    try:
        returned = module.main(_fill(argv, files))
    except SystemExit as exited:
        returned = exited.code
    assert_one_error_line(returned, capsys.readouterr().err, code, fragment.format(**files))
    assert not os.path.exists(os.path.join(files["tmp"], MARKER_NAME))
    assert not os.path.exists(os.path.join(files["tmp"], "m")), "a refused export left an output folder"


PROGRAM = ["python", "-c", "pass"]
POPRUN_CASES = [
    (["--num-instances", "1", "--num-replicas", "0"] + PROGRAM, "--num-replicas must be at least 1, got 0"),
    (["--num-instances", "2", "--ipus-per-replica", "0"] + PROGRAM, "--ipus-per-replica must be at least 1, got 0"),
    (["--num-instances", "2", "--only-output-from-instance", "5"] + PROGRAM, "accepted: 0 to 1"),
    (["--num-instances", "-1"] + PROGRAM, "--num-instances must be at least 1, got -1"),
    (["--num-instances", "abc"] + PROGRAM, "invalid int value: 'abc'"),
    (["--num-instances", "2", "--num-replicas", "3"] + PROGRAM, "does not divide between 2 instances"),
    (["--num-instances", "2"], "no program given"),
    (["--host", ""] + PROGRAM, "--host '' has an empty host name"),
    (["--host", "localhost,,h2"] + PROGRAM, "has an empty host name"),
    (["--max-restarts", "-1"] + PROGRAM, "--max-restarts must be 0 or more, got -1"),
    (["--num-ilds", "0"] + PROGRAM, "--num-ilds must be at least 1, got 0"),
    (["--vipu-server-port", "70000"] + PROGRAM, "accepted: 1 to 65535"),
    (["--vipu-server-timeout", "nan"] + PROGRAM, "--vipu-server-timeout must be a positive number of seconds, got nan"),
    (["--vipu-server-timeout", "-3"] + PROGRAM, "--vipu-server-timeout must be a positive number of seconds"),
    (["--numa-aware", "maybe"] + PROGRAM, "invalid value 'maybe'"),
    (["--print-topology", "maybe"], "invalid value 'maybe'"),
    (["--executable-cache-path", "{text}"] + PROGRAM, "--executable-cache-path '{text}' is a file, not a folder"),
    (["--executable-cache-path", "{under_file}"] + PROGRAM, "cannot be written to"),
    (["no-such-program-xyz"], "program 'no-such-program-xyz' is not an executable on this machine's path"),
    (["{text}"], "is not an executable on this machine's path"),
    (["--host", "localhost,127.0.0.1", "--num-instances", "2"] + PROGRAM, "the remote shell /nonexistent/ssh ($POPRUN_SSH)"),
]


@pytest.mark.parametrize("argv,fragment", POPRUN_CASES)
def test_poprun_bad_input_is_one_error_line_and_nothing_starts(argv, fragment, files, monkeypatch, capsys):
    from cnns.utils import poprun
    monkeypatch.setattr(poprun, "Launch", _sentinel)
    monkeypatch.setenv("POPRUN_SSH", "/nonexistent/ssh")
    monkeypatch.chdir(files["tmp"])
    code = poprun.main(_fill(argv, files))
    assert_one_error_line(code, capsys.readouterr().err, 2, fragment.format(**files))


def test_the_table_is_large_and_covers_every_entry_point():
    scripts = {c[0] for c in CASES} | {c[0] for c in ONNX_CASES} | {"poprun"}
    assert len(CASES) + len(PRESETS) + len(ONNX_CASES) + len(POPRUN_CASES) > 200
    assert len(scripts) == 26, sorted(scripts)


CHILDREN = [
    ("raise SystemExit('error: --size must be at least 1.')", "The child exited with code 1: --size must be at least 1."),
    ("import sys; print('error: bad value.', file=sys.stderr); sys.exit(2)", "The child exited with code 2: bad value."),
    ("raise ValueError('boom')", "The child exited with code 1: ValueError: boom."),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "The child was killed by SIGKILL."),
]


@pytest.mark.parametrize("code,sentence", CHILDREN)
def test_a_failed_child_process_ends_the_benchmark_in_one_error_line(code, sentence, capsys):
    """What the benchmarks' child processes (run_child) end in: the child's own line, not its traceback."""
    from cnns.utils.errors import exit_on_usage_error, run_child

    @exit_on_usage_error
    def main(argv: List[str]) -> None:
        run_child([sys.executable, "-c", code], "The child")
    exit_code, err = call(main, [], capsys)
    assert_one_error_line(exit_code, err, 1, sentence)


def test_a_second_training_run_into_a_locked_checkpoint_folder_is_refused(files, monkeypatch, capsys):
    from cnns.utils.atomic import FolderLock
    folder = os.path.join(files["tmp"], "ckpt")
    os.makedirs(folder)
    holder = FolderLock(folder, "--checkpoint-path")
    try:
        main = _entry("train", monkeypatch)
        code, err = call(main, TR + ["--checkpoint-path", folder], capsys)
    finally:
        holder.release()
    assert_one_error_line(code, err, 2, f"is in use by another run (process {os.getpid()})")


def test_a_run_that_does_not_validate_needs_no_validation_folder(files, monkeypatch):
    monkeypatch.chdir(files["tmp"])
    main = _entry("train", monkeypatch)
    with pytest.raises(ReachedWork):
        main(TR + ["--data", "imagenet", "--imagenet-data-path", _fill(["{only_train}"], files)[0],
                   "--validation-mode", "none", "--debug"])
