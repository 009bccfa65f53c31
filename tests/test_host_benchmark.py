"""host_benchmark.py: per-epoch throughput lines for each loading setting, and its usage errors."""
import json
import os
import re
import subprocess
import sys

import pytest

from cnns.datasets.create_webdataset import main as create_webdataset
from cnns.datasets.host_benchmark import main
from cnns.datasets.make_sample_folder import build_image_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"^Throughput of the epoch:(\d+\.\d) img/sec$", re.M)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("host")
    build_image_folder(str(base / "imagenet"), photos=False)
    create_webdataset(["--source", str(base / "imagenet"), "--target", str(base / "wds"), "--samples-per-shard", "5",
                       "--num-workers", "0"])
    return {"folder": str(base / "imagenet"), "webdataset": str(base / "wds")}


SETTINGS = [
    ["--dataloader-worker", "0", "--disable-async-loading"],
    ["--dataloader-worker", "2", "--eight-bit-io"],
    ["--dataloader-worker", "2", "--dataloader-rebatch-size", "2", "--normalization-location", "none"],
    ["--dataloader-worker", "1", "--split", "validation", "--precision", "32.32"],
]


@pytest.mark.slow
@pytest.mark.parametrize("source", ["folder", "webdataset"])
@pytest.mark.parametrize("setting", range(len(SETTINGS)))
def test_prints_one_throughput_line_per_epoch(folders, capsys, source, setting):
    rates = main(["--imagenet-data-path", folders[source], "--batch-size", "4", "--input-size", "32",
                  *SETTINGS[setting]])
    lines = LINE.findall(capsys.readouterr().out)
    assert len(lines) == len(rates) == 2
    assert all(float(x) > 0 for x in lines)


@pytest.mark.parametrize("argv,message", [
    (["--data", "imagenet"], "needs --imagenet-data-path"),
    (["--imagenet-data-path", "/nonexistent/imagenet"], "/nonexistent/imagenet does not exist"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--normalization-location", "device"], "invalid choice: 'device'"),
])
def test_usage_errors_exit_2_with_one_sentence(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err


def test_batch_larger_than_the_data_is_a_usage_error(folders, capsys):
    with pytest.raises(SystemExit):
        main(["--imagenet-data-path", folders["folder"], "--batch-size", "1000", "--dataloader-worker", "0"])
    assert "fewer images than one batch of 1000" in capsys.readouterr().err


@pytest.mark.slow
def test_script_runs_from_the_command_line(folders):
    out = subprocess.run([sys.executable, "datasets/host_benchmark.py", "--imagenet-data-path", folders["webdataset"],
                          "--batch-size", "8", "--input-size", "32", "--dataloader-worker", "2", "--epochs", "3"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(LINE.findall(out.stdout)) == 3 and "PIL " in out.stdout


@pytest.mark.slow
def test_jpeg_decode_benchmark_reports_each_decoder_and_which_pil(tmp_path):
    result = tmp_path / "jpeg.json"
    out = subprocess.run([sys.executable, "benchmarks/jpeg_decode.py", "--seconds", "0.05", "--json", str(result)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    decoders = [r["decoder"] for r in json.loads(result.read_text())["results"]]
    assert decoders[0] in ("pillow", "pillow-simd") and "torchvision.io.decode_jpeg (CPU)" in decoders
    assert "CPU: " in out.stdout and "vs pillow" in out.stdout
