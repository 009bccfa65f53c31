"""Tests for inference/onnx_bulk: ONNX export, dataset partitioning and the bulk launcher.

The scripts run as a user would run them (subprocesses); a few checks import
their modules (cnns.inference.onnx_bulk) directly.  The ONNX export is the slow part, so it happens once per run and is shared
between pytest-xdist workers through a file lock.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BULK = REPO / "inference" / "onnx_bulk"
MODEL = "resnext101_32x4d"
BATCH = 2
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "camera", "rocket", "horse")
PROCESS_LINE = re.compile(r"^Process (\d+): ([0-9.]+) images/s \((\d+) images", re.M)
AGGREGATE_LINE = re.compile(r"^Aggregate throughput: ([0-9.]+) images/s over (\d+) processes", re.M)


def run_script(script: str, *args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    path = BULK / script if cwd != BULK else Path(script)
    return subprocess.run(
        [sys.executable, str(path), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def write_photos(folder: Path) -> list[str]:
    """Save scikit-image's bundled photographs as JPEGs (colour and greyscale)."""
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name in SKIMAGE_PHOTOS:
        pixels = getattr(skimage.data, name)()
        Image.fromarray(pixels).save(folder / f"{name}.jpg", quality=90)
    return sorted(f"{name}.jpg" for name in SKIMAGE_PHOTOS)


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory, worker_id):
    """Random weights saved to a file, exported with --weights at batch size 2; built once per run."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if worker_id != "master" else base) / "onnx_bulk_shared"
    shared.mkdir(exist_ok=True)
    weights = shared / "random_weights.pth"
    model_dir = shared / "models"
    onnx_file = model_dir / MODEL / f"{MODEL}_bs{BATCH}.onnx"
    with FileLock(str(shared / "export.lock")):
        if not onnx_file.is_file():
            import pretrainedmodels
            import torch

            torch.manual_seed(0)
            model = pretrainedmodels.resnext101_32x4d(num_classes=1000, pretrained=None)
            torch.save(model.state_dict(), weights)
            result = run_script(
                "get_model.py",
                "--batch-size",
                str(BATCH),
                "--weights",
                str(weights),
                "--output-dir",
                str(model_dir),
            )
            assert result.returncode == 0, result.stderr
            assert f"Weights: local:{weights}" in result.stdout
            assert "onnx.checker passed" in result.stdout
    return {"weights": weights, "model_dir": model_dir, "onnx": onnx_file}


@pytest.mark.slow
def test_exported_onnx_matches_pytorch(exported_model):
    import onnx
    import onnxruntime as ort
    import pretrainedmodels
    import torch

    metadata = {
        p.key: p.value
        for p in onnx.load(str(exported_model["onnx"]), load_external_data=False).metadata_props
    }
    assert metadata["weights"].startswith("local:")
    assert metadata["batch_size"] == str(BATCH)

    model = pretrainedmodels.resnext101_32x4d(num_classes=1000, pretrained=None)
    model.load_state_dict(torch.load(exported_model["weights"], weights_only=True))
    model.eval()
    batch = torch.from_numpy(np.random.default_rng(1).standard_normal((BATCH, 3, 224, 224), dtype=np.float32))
    with torch.no_grad():
        expected = model(batch).numpy()

    session = ort.InferenceSession(str(exported_model["onnx"]), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [BATCH, 3, 224, 224]
    actual = session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]

    assert actual.shape == (BATCH, 1000)
    # The two images' logits differ by far more than the tolerance, so the check can fail.
    assert np.abs(expected[0] - expected[1]).max() > 100 * 1e-5
    np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("link", ["symlink", "copy"])
def test_partition_covers_every_file_exactly_once(tmp_path, link):
    source = tmp_path / "images"
    source.mkdir()
    names = [f"img{i:02d}.jpg" for i in range(11)]
    for name in names:
        (source / name).write_bytes(name.encode())
    (source / "notes.txt").write_text("not an image")

    result = run_script(
        "partition_dataset.py",
        "--data-dir",
        str(source),
        "--partitions",
        "3",
        "--output",
        str(tmp_path / "parts"),
        "--link",
        link,
    )
    assert result.returncode == 0, result.stderr

    folders = sorted((tmp_path / "parts").iterdir())
    assert [f.name for f in folders] == ["part00", "part01", "part02"]
    placed = [sorted(p.name for p in folder.iterdir()) for folder in folders]
    assert sorted(n for part in placed for n in part) == names
    assert sorted(len(part) for part in placed) == [3, 4, 4]
    for folder in folders:
        for entry in folder.iterdir():
            assert entry.is_symlink() == (link == "symlink")
            assert entry.read_bytes() == entry.name.encode()

    again = run_script(
        "partition_dataset.py",
        "--data-dir",
        str(source),
        "--partitions",
        "3",
        "--output",
        str(tmp_path / "parts"),
    )
    assert again.returncode == 2
    assert "--force" in again.stderr and "Traceback" not in again.stderr


def parse_throughput(stdout: str) -> tuple[list[tuple[int, float, int]], float, int]:
    processes = [(int(i), float(t), int(n)) for i, t, n in PROCESS_LINE.findall(stdout)]
    aggregate = AGGREGATE_LINE.search(stdout)
    assert aggregate, stdout
    return processes, float(aggregate.group(1)), int(aggregate.group(2))


@pytest.mark.slow
def test_launcher_real_data_two_processes(tmp_path, exported_model):
    photos = write_photos(tmp_path / "photos")
    split = run_script(
        "partition_dataset.py",
        "--data-dir",
        str(tmp_path / "photos"),
        "--partitions",
        "2",
        "--output",
        str(tmp_path / "parts"),
    )
    assert split.returncode == 0, split.stderr

    result = run_script(
        "resnext_inference_launch.py",
        "--num_ipus",
        "2",
        f"--batch_size={BATCH}",
        "--batches_per_step",
        "1",
        "--num_workers",
        "2",
        "--data_dir",
        str(tmp_path / "parts"),
        "--model_dir",
        str(exported_model["model_dir"]),
        "--log_dir",
        str(tmp_path / "logs"),
        "--save_results",
        "--nosynthetic",
    )
    assert result.returncode == 0, result.stderr
    processes, aggregate, count = parse_throughput(result.stdout)
    assert count == 2
    assert [p[0] for p in processes] == [0, 1]
    assert [p[2] for p in processes] == [3, 3]
    assert all(p[1] > 0 for p in processes)
    assert aggregate == pytest.approx(sum(p[1] for p in processes), abs=0.02)

    # the original's layout and lines: logs/<timestamp>/log_<i>, a "Total ... images/sec." line per step
    logs = sorted((tmp_path / "logs").glob("*/log_*"))
    assert [log.name for log in logs] == ["log_0", "log_1"]
    for log in logs:
        text = log.read_text()
        assert "warm-up batch done (not timed)" in text and text.count("Python's garbage collector:") == 1
        assert re.search(r"total: 3 images in [0-9.]+ s of session.run", text)
        assert len(re.findall(r"Total \S+ +sec\.   Preprocessing \S+ +sec \( ?[\d.]+%\)\.   Compute \S+ +sec "
                              r"\( ?[\d.]+%\)\.   \d+\.0+ images/sec\.", text)) == len(re.findall(r"step \d+:", text))
    assert "All processes finished with exit codes: [0, 0]" in result.stdout
    steps = len(re.findall(r"step \d+:", logs[0].read_text()))
    assert len(re.findall(r"^Total \S+ +sec\.   \d+\.0+ images/sec\.$", result.stdout, re.M)) == steps

    [summary] = (tmp_path / "logs").glob("*/results.json")
    recorded = json.loads(summary.read_text())
    assert recorded["status"] == "completed" and recorded["aggregate_throughput"] == pytest.approx(aggregate, abs=0.02)
    assert [p["index"] for p in recorded["processes"]] == [0, 1]
    [results_file] = list((tmp_path / "logs").glob("*_top5.csv"))
    assert recorded["top5_csv"] == str(results_file)
    with open(results_file, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(Path(row["image"]).name for row in rows) == photos
    for row in rows:
        probs = [float(row[f"top{i}_prob"]) for i in range(1, 6)]
        classes = {int(row[f"top{i}_class"]) for i in range(1, 6)}
        assert probs == sorted(probs, reverse=True) and 0 < probs[-1] <= probs[0] <= 1
        assert len(classes) == 5 and all(0 <= c < 1000 for c in classes)


@pytest.mark.slow
def test_launcher_synthetic_from_own_folder_reads_no_files(tmp_path, exported_model):
    missing = tmp_path / "no_such_dataset"
    result = run_script(
        "resnext_inference_launch.py",
        "--synthetic",
        "--num_ipus=2",
        "--batch_size",
        str(BATCH),
        "--batches_per_step",
        "2",
        "--iterations",
        "1",
        "--data_dir",
        str(missing),
        "--model_dir",
        str(exported_model["model_dir"]),
        "--log_dir",
        str(tmp_path / "logs"),
        cwd=BULK,
    )
    assert result.returncode == 0, result.stderr
    processes, aggregate, count = parse_throughput(result.stdout)
    assert count == 2 and len(processes) == 2
    assert [p[2] for p in processes] == [4, 4]
    assert aggregate == pytest.approx(sum(p[1] for p in processes), abs=0.02)
    assert not missing.exists()
    for log in (tmp_path / "logs").glob("*.log"):
        assert "input: synthetic" in log.read_text()
    assert result.stdout.count("Flag --data_dir=") == 1 and "--synthetic reads no files" in result.stdout
    (results_file,) = (tmp_path / "logs").glob("*/results.json")
    assert [e["flag"] for e in json.loads(results_file.read_text())["no_effect"]] == ["--data_dir"]


def fake_model(model_dir: Path, batch: int) -> None:
    """A tiny stand-in: the launcher's checks run before any session opens it."""
    tiny_onnx(model_dir / MODEL / f"{MODEL}_bs{batch}.onnx", batch)


def tiny_onnx(path: Path, batch: int = 2) -> None:
    """A ResNeXt-shaped stand-in (batch x 3 x 224 x 224 in, 10 logits out) made with onnx.helper: no export."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weights = numpy_helper.from_array(np.linspace(-1, 1, 30, dtype=np.float32).reshape(3, 10), "w")
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
         helper.make_node("MatMul", ["m", "w"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])], [weights])
    path.parent.mkdir(parents=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_model", "No ONNX model for batch size 3"),
        ("missing_data_dir", "does not exist"),
        ("too_few_subdirs", "has 1 subdirectories but --num_ipus=2"),
        ("empty_partition", "contains no images"),
    ],
)
def test_launcher_bad_input_exits_2_with_one_sentence(tmp_path, case, expected):
    models, data = tmp_path / "models", tmp_path / "data"
    args = [
        "--num_ipus",
        "2",
        "--model_dir",
        str(models),
        "--log_dir",
        str(tmp_path / "logs"),
        "--data_dir",
        str(data),
    ]
    if case == "missing_model":
        args += ["--batch_size", "3"]
    else:
        fake_model(models, 6)
    if case == "too_few_subdirs":
        (data / "part00").mkdir(parents=True)
    if case == "empty_partition":
        for name in ("part00", "part01"):
            (data / name).mkdir(parents=True)
        (data / "part00" / "a.jpg").write_bytes(b"x")

    result = run_script("resnext_inference_launch.py", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_help_prints_flags_in_absl_layout():
    for spelling in ("-help", "--help"):
        result = run_script("resnext_inference_launch.py", spelling)
        assert result.returncode == 0
        assert (
            "  --batch_size: Batch size (per device)\n    (default: '6')\n    (an integer)\n" in result.stdout
        )
        assert (
            "  --[no]synthetic: Use synthetic data created on the IPU for inference\n    (default: 'false')\n"
            in result.stdout
        )
        for flag in (
            "batches_per_step",
            "data_dir",
            "iterations",
            "model_name",
            "num_ipus",
            "num_workers",
            "model_dir",
            "log_dir",
            "[no]save_results",
            "num_threads",
            "provider",
        ):
            assert f"  --{flag}: " in result.stdout


@pytest.mark.slow
def test_flag_errors_are_one_line():
    result = run_script("resnext_inference_launch.py", "--batch_size", "zero")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Flags parsing error: flag --batch_size=zero: invalid literal for int() with base 10: 'zero'; "
        "run with -help to list the flags."
    ]


@pytest.mark.slow
def test_get_model_mismatched_weights_exits_2(tmp_path):
    import torch

    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    result = run_script(
        "get_model.py",
        "--batch-size",
        "1",
        "--weights",
        str(tmp_path / "wrong.pth"),
        "--output-dir",
        str(tmp_path / "models"),
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: Could not load resnext101_32x4d weights from")
    assert "Missing key(s)" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
def test_get_model_missing_weights_file_exits_2(tmp_path):
    result = run_script(
        "get_model.py",
        "--batch-size",
        "1",
        "--weights",
        str(tmp_path / "absent.pth"),
        "--output-dir",
        str(tmp_path / "models"),
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
def test_get_model_original_command_and_partition_layout(tmp_path, exported_model):
    """test_resnext101.py's `get_model.py --micro-batch-size 6` flag and the original's partitions,
    <data_dir>/<i>/pytorch_subdir, are read as they are."""
    from cnns.inference.onnx_bulk import get_model
    from cnns.inference.onnx_bulk import resnext_inference_launch as launch
    assert get_model.parse_args(["--micro-batch-size", "6"]).batch_size == 6
    for i in range(2):
        folder = tmp_path / "datasets" / str(i) / "pytorch_subdir"
        folder.mkdir(parents=True)
        photos = write_photos(folder)
    partitions = launch.find_partitions(tmp_path / "datasets", 2)
    assert [p.parent.name for p, _ in partitions] == ["0", "1"] and all(n == len(photos) for _, n in partitions)
    assert all(p.name == "pytorch_subdir" for p, _ in partitions)


@pytest.mark.slow
def test_original_test_resnext101_commands(tmp_path):
    """The commands of the original's test_resnext101.py, run from this folder as written, with only
    output folders, random weights (no download in CI) and one batch per step appended."""
    models, logs = str(tmp_path / "models"), str(tmp_path / "logs")
    export = run_script("get_model.py", "--micro-batch-size", "6", "--output-dir", models, "--random-weights",
                        cwd=BULK, timeout=900)
    assert export.returncode == 0, export.stderr[-2000:]
    assert "Converting model to batch size " in export.stdout
    launch = run_script("resnext_inference_launch.py", "--batch_size", "48", "--num_ipus", "8", "--synthetic",
                        "--model_dir", models, "--log_dir", logs, "--batches_per_step", "1", cwd=BULK, timeout=900)
    assert launch.returncode == 0, launch.stderr[-2000:]
    assert re.search(r"All processes finished with exit codes: \[0, 0, 0, 0, 0, 0, 0, 0\]", launch.stdout)
    assert "Batch size 48 over 8 processes: 6 per process." in launch.stdout
    processes, aggregate, count = parse_throughput(launch.stdout)
    assert count == 8 and all(p[2] == 6 for p in processes)


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--batch_size", "0"], "--batch_size must be 1 or more, got 0."),
        (["--iterations", "-1"], "--iterations must be 1 or more, got -1."),
        (["--threads", "0"], "--threads must be 1 or more, got 0."),
        (["--model", "MISSING"], "is not a file"),
        (["--synthetic_off"], "--data_dir None is not a folder"),
        (["--provider", "tpu"], "--provider must be auto, cpu or cuda"),
    ],
)
def test_worker_started_by_hand_checks_its_values(tmp_path, extra, expected):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    args = {"--index": "0", "--model": str(model), "--batch_size": "2", "--batches_per_step": "1",
            "--log_file": str(tmp_path / "logs" / "w.log")}
    synthetic = "--synthetic_off" not in extra
    extra = [e for e in extra if e != "--synthetic_off"]
    for name, value in zip(extra[::2], extra[1::2]):
        args[name] = str(tmp_path / value) if value == "MISSING" else value
    argv = [token for pair in args.items() for token in pair] + (["--synthetic"] if synthetic else [])
    result = run_script("inference_worker.py", *argv)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and expected in result.stderr
    assert not (tmp_path / "logs").exists()


def test_half_export_runs_in_float16_and_keeps_the_model_float32(tmp_path):
    """get_model.py --half: float16 weights and input, as the original ran the model; the session feeds
    float16 and the logits stay close to the float32 PyTorch model's."""
    import torch

    from cnns.inference.onnx_bulk.get_model import export, parse_args
    from cnns.inference.onnx_bulk.resnext101 import ResNeXtSession, top5

    assert parse_args(["--micro-batch-size", "6", "--half"]).half and not parse_args([]).half
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=8), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 6)).eval()
    path = tmp_path / "half.onnx"
    export(model, 2, 224, path, "legacy", None, half=True)
    assert next(model.parameters()).dtype == torch.float32
    session = ResNeXtSession(path, 1, ["CPUExecutionProvider"])
    assert session.input_dtype is np.float16
    batch = torch.randn(2, 3, 224, 224)
    logits = session.run(batch.numpy())
    assert logits.dtype == np.float16 and logits.shape == (2, 6)
    with torch.no_grad():
        expected = model(batch).numpy()
    assert np.abs(logits.astype(np.float32) - expected).max() < 2e-2
    indices, probs = top5(logits)
    softmax = torch.softmax(torch.from_numpy(logits.astype(np.float32)), dim=1).topk(5).values.numpy()
    assert probs.dtype == np.float32 and np.allclose(probs, softmax)
    assert (indices[:, 0] == expected.argmax(axis=1)).all()
