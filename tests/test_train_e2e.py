"""train/*.py end to end on CPU: real learning on scikit-learn's digits, checkpoints, validation,
resuming, weight averaging, presets and usage errors."""
import csv
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from tests.conftest import REPO_ROOT

TRAIN_DIR = os.path.join(REPO_ROOT, "train")
ACCURACY = re.compile(r"Accuracy on test set: ([\d.]+)%")
# One intra-op thread per process: with pytest-xdist workers sharing 2 cores, 2-thread OpenMP ops
# spin against each other and small CPU kernels get hundreds of times slower.
torch.set_num_threads(1)
SINGLE_THREAD_ENV = dict(os.environ, OMP_NUM_THREADS="1")
# The executor is not these tests' subject (auto's choice is tested in test_executors.py and
# test_auto_retiming.py, and the presets' scripts run with it in test_train_presets.py): eager spares
# each run compiling the training step with Inductor, about 50 s here, for a step that auto then
# finds slower than eager on these 16-pixel inputs.
FAST = ["--model", "resnet18", "--input-size", "16", "--precision", "32.32", "--dataloader-worker", "0",
        "--train-crop-scale", "0.5", "1", "--executor", "eager"]


def write_digits(root, keep_every=1):
    """scikit-learn's 8x8 digits as an ImageNet-style folder: train/ and validation/ (every 5th image)."""
    from PIL import Image
    from sklearn.datasets import load_digits
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))[::keep_every]
    for rank, i in enumerate(order):
        split = "validation" if rank % 5 == 0 else "train"
        folder = os.path.join(root, split, f"digit{digits.target[i]}")
        os.makedirs(folder, exist_ok=True)
        pixels = (digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
        Image.fromarray(np.stack([pixels] * 3, -1)).save(os.path.join(folder, f"{i}.png"))
    return root


def run(script, args, cwd=REPO_ROOT, timeout=600):
    path = os.path.join("train", script) if cwd == REPO_ROOT else script
    return subprocess.run([sys.executable, path] + [str(a) for a in args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=SINGLE_THREAD_ENV)


def rows(log_root, pattern="*"):
    (path,) = glob.glob(os.path.join(str(log_root), pattern, "training.csv"))
    with open(path) as f:
        return list(csv.DictReader(f))


def train_digits(digits, out):
    """One 4-epoch training run on the digits with a checkpoint per epoch."""
    ckpts, logs = out / "ckpts", out / "logs"
    proc = run("train.py", ["--data", "imagenet", "--imagenet-data-path", digits, *FAST, "--batch-size", "32",
                            "--epoch", "4", "--optimizer", "adamw", "--lr", "0.002", "--lr-schedule", "cosine",
                            "--validation-mode", "after", "--checkpoint-path", ckpts, "--log-path", logs])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return types.SimpleNamespace(proc=proc, ckpts=str(ckpts), logs=logs)


def check_training_report(trained):
    out = trained.proc.stdout
    accuracy = float(ACCURACY.findall(out)[-1])
    assert accuracy > 80.0, out
    for epoch in range(1, 5):
        assert f"Epoch {epoch}/4" in out
        assert re.search(rf"Epoch {epoch}: Train accuracy is [\d.]+%", out)
    assert len(re.findall(r"Throughput of the epoch:[\d.]+ img/sec", out)) == 4
    assert "Loss:" in trained.proc.stderr and "Accuracy:" in trained.proc.stderr
    table = rows(trained.ckpts, "")
    assert len(table) == 4 and float(table[-1]["epoch"]) == 4.0
    assert float(table[-1]["loss_batch"]) < float(table[0]["loss_batch"])
    assert all(float(r["train_img_per_sec"]) > 0 and float(r["latency_ms"]) > 0 and r["learning_rate"] for r in table)
    # logs are written under --checkpoint-path, as the original
    assert os.path.getsize(os.path.join(trained.ckpts, "training.png")) > 0
    assert {"app.json", "log.txt", "results.json"} <= set(os.listdir(trained.ckpts))
    assert sorted(f for f in os.listdir(trained.ckpts) if f.endswith(".pt")) == [
        f"resnet18_imagenet_{e}.pt" for e in range(1, 5)]
    # --validation-mode after validates every checkpoint: one validation.csv row each
    with open(os.path.join(trained.ckpts, "validation.csv")) as f:
        validated = list(csv.DictReader(f))
    assert [int(r["validation_epoch"]) for r in validated] == [1, 2, 3, 4]
    assert float(validated[-1]["validation_accuracy"]) == pytest.approx(accuracy, abs=0.01)


def check_validate_reproduces_printed_accuracy(trained, tmp_path):
    printed = ACCURACY.findall(trained.proc.stdout)[-1]
    last = os.path.join(trained.ckpts, "resnet18_imagenet_4.pt")
    single = run("validate.py", ["--checkpoint-path", last, "--log-path", tmp_path])
    assert single.returncode == 0, single.stderr[-2000:]
    assert ACCURACY.findall(single.stdout) == [printed]
    every = run("validate.py", ["--checkpoint-path", trained.ckpts, "--log-path", tmp_path, "--batch-size", "7"],
                cwd=TRAIN_DIR)
    assert every.returncode == 0, every.stderr[-2000:]
    accuracies = ACCURACY.findall(every.stdout)
    assert len(accuracies) == 4 and accuracies[-1] == printed


def check_weight_avg_equals_manual_average(trained, tmp_path):
    folder = tmp_path / "ckpts"
    shutil.copytree(trained.ckpts, folder)
    proc = run("weight_avg.py", ["--checkpoint-path", folder, "--weight-avg-N", "3"])
    assert proc.returncode == 0, proc.stderr
    states = [torch.load(folder / f"resnet18_imagenet_{e}.pt", weights_only=True)["model_state_dict"]
              for e in (2, 3, 4)]
    averaged = torch.load(folder / "resnet18_imagenet_4_mean_avg.pt", weights_only=True)
    for key, value in averaged["model_state_dict"].items():
        if value.is_floating_point():
            assert torch.allclose(value, sum(s[key] for s in states) / 3, atol=1e-6), key
        else:
            assert torch.equal(value, states[-1][key])
    proc = run("weight_avg.py", ["--checkpoint-path", folder, "--weight-avg-N", "2",
                                 "--weight-avg-strategy", "exponential", "--weight-avg-exp-decay", "0.9"])
    assert proc.returncode == 0, proc.stderr
    exp = torch.load(folder / "resnet18_imagenet_4_exponential_avg.pt", weights_only=True)["model_state_dict"]
    key = "conv1.weight"
    assert torch.allclose(exp[key], 0.9 * states[1][key] + 0.1 * states[2][key], atol=1e-6)
    validated = run("validate.py", ["--checkpoint-path", folder / "resnet18_imagenet_4_mean_avg.pt",
                                    "--log-path", tmp_path])
    assert validated.returncode == 0 and float(ACCURACY.findall(validated.stdout)[0]) > 50.0


@pytest.mark.slow
def test_digits_training_then_validate_and_average(tmp_path):
    """Learning well above chance, the printed report and files, validate.py and weight_avg.py on its checkpoints
    (one test, so parallel workers do not each repeat the training)."""
    trained = train_digits(write_digits(str(tmp_path / "digits")), tmp_path / "run")
    check_training_report(trained)
    check_validate_reproduces_printed_accuracy(trained, tmp_path)
    check_weight_avg_equals_manual_average(trained, tmp_path)


@pytest.mark.slow
def test_restore_continues_exactly_like_an_uninterrupted_run(tmp_path):
    data = write_digits(str(tmp_path / "digits"), keep_every=5)
    common = ["--data", "imagenet", "--imagenet-data-path", data, *FAST, "--batch-size", "8",
              "--gradient-accumulation", "2", "--epoch", "2", "--optimizer", "sgd", "--momentum", "0.9",
              "--lr", "0.05", "--lr-schedule", "cosine", "--warmup-epoch", "0.5", "--mixup-alpha", "0.3",
              "--logs-per-epoch", "3", "--validation-mode", "none", "--seed", "7"]
    whole = run("train.py", common + ["--checkpoint-path", tmp_path / "whole", "--log-path", tmp_path / "log_whole"])
    assert whole.returncode == 0, whole.stderr[-3000:]
    os.makedirs(tmp_path / "resume")
    shutil.copy(tmp_path / "whole" / "resnet18_imagenet_1.pt", tmp_path / "resume")
    resumed = run("restore.py", ["--checkpoint-path", tmp_path / "resume" / "resnet18_imagenet_1.pt",
                                 "--log-path", tmp_path / "log_resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Epoch 2/2" in resumed.stdout and "Epoch 1/2" not in resumed.stdout
    second_epoch = [r for r in rows(tmp_path / "whole", "") if float(r["epoch"]) > 1]
    fields = ["epoch", "loss_batch", "train_accuracy_batch", "learning_rate", "loss_scaling"]
    assert [[r[f] for f in fields] for r in rows(tmp_path / "resume", "")] == [[r[f] for f in fields] for r in second_epoch]
    a = torch.load(tmp_path / "whole" / "resnet18_imagenet_2.pt", weights_only=True)
    b = torch.load(tmp_path / "resume" / "resnet18_imagenet_2.pt", weights_only=True)
    for key, value in a["model_state_dict"].items():
        assert torch.equal(value, b["model_state_dict"][key]), key


@pytest.mark.slow
def test_pipelined_replicated_mixed_precision_run(tmp_path):
    proc = run("train.py", ["--data", "synthetic", "--model", "resnet18", "--input-size", "16", "--batch-size", "3",
                            "--replicas", "2", "--gradient-accumulation", "3", "--pipeline-splits", "layer3",
                            "--precision", "16.32", "--recompute-mode", "auto",
                            "--iterations", "2", "--epoch", "1", "--validation-mode", "during",
                            "--optimizer", "rmsprop_tf", "--cutmix-lambda-low", "0.5", "--cutmix-lambda-high", "1",
                            "--label-smoothing", "0.1", "--executor", "eager", "--log-path", tmp_path], cwd=TRAIN_DIR)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Epoch 1: Train accuracy is" in proc.stdout and ACCURACY.search(proc.stdout)
    assert "Recomputation checkpoints on" in proc.stdout
    assert proc.stdout.count("Host allocator: buffers up to 32 MiB") == 1
    results_file, = glob.glob(os.path.join(str(tmp_path), "*", "results.json"))
    results = json.load(open(results_file))
    assert results["host_allocator"]["mode"] == "resident"
    assert results["log_folder"] == os.path.dirname(results_file)
    assert results["gc_frozen_objects"] > 10000 and proc.stdout.count("Python's garbage collector:") == 1


@pytest.mark.slow
def test_preset_compiles(tmp_path):
    """The pipelined preset's options build and attach (eager: compiling its training step with Inductor is
    tests/test_executors.py's subject and took 3.5 minutes here on 2 cores)."""
    proc = run("train.py", ["--config", "resnet50-pipelined", "--data", "generated", "--batch-size", "2",
                            "--replicas", "1", "--gradient-accumulation", "7", "--input-size", "32",
                            "--compile-only", "--executor", "eager", "--log-path", tmp_path])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Graph compilation complete" in proc.stdout


@pytest.mark.slow
def test_wandb_logs_every_point_offline(tmp_path, monkeypatch, capsys):
    logged, finished = [], []

    class FakeRun:
        def log(self, row):
            logged.append(row)

        def finish(self):
            finished.append(True)
    fake = types.ModuleType("wandb")
    fake.init = lambda **kwargs: (logged.append({"init": kwargs}), FakeRun())[1]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    from cnns.train import train
    train.main(["--data", "generated", *FAST, "--batch-size", "2", "--iterations", "4", "--epoch", "1",
                "--logs-per-epoch", "2", "--validation-mode", "none", "--wandb", "--log-path", str(tmp_path)])
    assert os.environ["WANDB_MODE"] == "offline"
    assert logged[0]["init"]["dir"].startswith(str(tmp_path))
    points = [r for r in logged if "loss_batch" in r]
    assert len(points) == 2 and {"learning_rate", "loss_scaling", "train_img_per_sec"} <= set(points[0]) and finished


@pytest.mark.slow
def test_bad_input_is_one_sentence_and_exit_code_2():
    proc = run("train.py", ["--data", "generated", "--optimizer", "lamb"], cwd=TRAIN_DIR)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "lamb" in lines[0], proc.stderr


def _exit_code(main, argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "Traceback" not in err[0], err
    return info.value.code, err[0]


@pytest.mark.slow
def test_usage_errors_of_every_script(tmp_path, capsys):
    from cnns.train import restore, train, validate, weight_avg
    code, msg = _exit_code(train.main, ["--data", "generated", "--pipeline-splits", "layer2", "layer3",
                                        "--gradient-accumulation", "3"], capsys)
    assert code == 2 and "2 x stages - 1 = 5" in msg
    code, msg = _exit_code(train.main, ["--data", "imagenet", "--imagenet-data-path", str(tmp_path / "none"),
                                        "--log-path", str(tmp_path)], capsys)
    assert code == 2 and "does not exist" in msg
    ckpt_dir = tmp_path / "ckpts"
    train.main(["--data", "generated", *FAST, "--batch-size", "2", "--iterations", "1", "--epoch", "1",
                "--validation-mode", "none", "--checkpoint-path", str(ckpt_dir), "--log-path", str(tmp_path)])
    capsys.readouterr()
    ckpt = str(ckpt_dir / "resnet18_generated_1.pt")
    code, msg = _exit_code(validate.main, ["--checkpoint-path", ckpt, "--model", "resnet34",
                                           "--log-path", str(tmp_path)], capsys)
    assert code == 2 and "does not fit resnet34" in msg
    code, msg = _exit_code(restore.main, ["--checkpoint-path", ckpt, "--log-path", str(tmp_path)], capsys)
    assert code == 2 and "pass --epoch" in msg
    junk = tmp_path / "junk_1.pt"
    junk.write_text("not a checkpoint")
    code, msg = _exit_code(restore.main, ["--checkpoint-path", str(junk)], capsys)
    assert code == 2 and "could not be read" in msg
    other = torch.load(ckpt, weights_only=True)
    other["args"]["model"] = "resnet34"
    other["model_state_dict"] = {"fc.weight": torch.zeros(3, 3)}
    torch.save(other, ckpt_dir / "resnet34_generated_2.pt")
    code, msg = _exit_code(weight_avg.main, ["--checkpoint-path", str(ckpt_dir)], capsys)
    assert code == 2 and "hold different models" in msg


@pytest.mark.slow
def test_profile_traces_one_step_and_records_it(tmp_path):
    out = run("train.py", ["--data", "generated", "--batch-size", "2", "--iterations", "2", "--epoch", "1",
                           "--profile", "--log-path", tmp_path, *FAST])
    assert out.returncode == 0, out.stderr[-2000:]
    (results_file,) = glob.glob(os.path.join(str(tmp_path), "*", "results.json"))
    results = json.load(open(results_file))
    assert results["status"] == "completed" and results["model"] == "resnet18" and results["pipeline_stages"] == 1
    trace = json.load(open(results["profile"]))
    assert any("conv" in str(event.get("name", "")).lower() for event in trace["traceEvents"])
