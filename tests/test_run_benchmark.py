"""run_benchmark.py end to end: seed command lines, presets, log folder, and usage errors."""
import glob
import json
import os
import re
import shlex
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

INFERENCE_DIR = os.path.join(REPO_ROOT, "inference")
FINAL = re.compile(r"Throughput at bs=(\d+), data_mode=(\w+), data_type=([\w.]+), num_ipus=(\d+), of ([\w-]+): "
                   r"min=([\d.]+) imgs/s, max=([\d.]+) imgs/s, mean=([\d.]+) imgs/s, std=([\d.]+) imgs/s\.")

# Seed 000's command lines, as written. CI appends only --iterations 1 --warmup-iterations 0; where a
# command asks for more device iterations than a 2-core CPU runs in CI's time it also appends
# --device-iterations 2 (the seed's value is checked by test_seed_values_reach_the_options).
SEED_000 = [
    "python3 run_benchmark.py --data real --replicas 1  --batch-size 1 --model resnet18 --device-iteration 1",
    "python3 run_benchmark.py --data synthetic --replicas 1 --batch-size 16 --model resnet18 --device-iteration 1000 --normlayer none --precision half",
    "python3 run_benchmark.py --data real --replicas 1 --batch-size 24 --model resnet18 --device-iteration 64 --normlayer batch --precision half",
    "python3 run_benchmark.py --data real --replicas 1 --batch-size 19 --model resnet34 --device-iteration 64 --normlayer batch --precision half",
    "python3 run_benchmark.py --data real --replicas 1 --batch-size 8 --model resnet50 --device-iteration 64 --normlayer batch --precision half",
    "python3 run_benchmark.py --data real --replicas 1 --batch-size 11 --model efficientnet-b0 --device-iteration 1000 --normlayer batch --precision half",
]
CPU_DEVICE_ITERATION_BUDGET = 2


def run(args, cwd=INFERENCE_DIR, tmp_path=None, env=None, timeout=900):
    """The script in a child process; one that outlives ``timeout`` is stopped with SIGABRT, so that
    Python's fault handler prints where each of its threads was, and the test fails with that."""
    script = "run_benchmark.py" if cwd == INFERENCE_DIR else os.path.join("inference", "run_benchmark.py")
    cmd = [sys.executable, script] + args
    if tmp_path is not None:
        cmd += ["--log-path", str(tmp_path)]
    env = dict(env if env is not None else os.environ, PYTHONFAULTHANDLER="1")
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGABRT)
            out, err = child.communicate()
            pytest.fail(f"{' '.join(args)} still ran after {timeout} s; its output:\n{out[-3000:]}\n{err[-6000:]}")
    return subprocess.CompletedProcess(cmd, child.returncode, out, err)


def seed_args(line):
    words = shlex.split(line)
    assert words[:2] == ["python3", "run_benchmark.py"]
    return words[2:]


def device_iterations(words):
    for flag in ("--device-iteration", "--device-iterations"):
        if flag in words:
            return int(words[words.index(flag) + 1])
    return 1


@pytest.mark.slow
@pytest.mark.parametrize("line", SEED_000)
def test_seed_000_commands_run_and_report_throughput(line, tmp_path):
    args = seed_args(line) + ["--iterations", "1", "--warmup-iterations", "0"]
    if device_iterations(args) > CPU_DEVICE_ITERATION_BUDGET:
        args += ["--device-iterations", str(CPU_DEVICE_ITERATION_BUDGET)]
    result = run(args, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    match = FINAL.search(result.stdout)
    assert match, result.stdout[-2000:]
    assert float(match.group(7)) > 0
    folder, = glob.glob(str(tmp_path / "*"))
    results = json.load(open(os.path.join(folder, "results.json")))
    assert results["metrics"]["throughput_max"] > 0
    assert {"app.json", "log.txt", "results.json"} <= set(os.listdir(folder))


@pytest.mark.parametrize("line", SEED_000)
def test_seed_values_reach_the_options(line, monkeypatch):
    from cnns.inference import run_benchmark
    from cnns.utils.backend import select_backend
    from cnns.utils.distributed import InstanceInfo
    from cnns.utils.ipu_settings import inference_options
    args = run_benchmark.parse_arguments(seed_args(line))
    opts = inference_options(args, select_backend("cpu"), InstanceInfo(0, 1, 0))
    words = seed_args(line)
    assert opts.device_iterations == device_iterations(words)
    assert opts.replication_factor == int(words[words.index("--replicas") + 1])
    assert args.batch_size == int(words[words.index("--batch-size") + 1])
    assert opts.synthetic_data == ("synthetic" in words)
    assert args.precision == "16.16"  # 'half' and the original's default


@pytest.mark.slow
def test_generated_run_from_repo_root_writes_log_folder(tmp_path):
    result = run(["--data", "generated", "--model", "resnet18", "--batch-size", "2", "--device-iterations", "2",
                  "--iterations", "2", "--warmup-iterations", "1", "--precision", "32.32", "--replicas", "2",
                  "--random-weights", "--available-memory-proportion", "0.3"], cwd=REPO_ROOT, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    match = FINAL.search(result.stdout)
    assert match and match.group(1) == "2" and match.group(4) == "2" and match.group(3) == "torch.float32"
    assert len(re.findall(r"^Throughput: [\d.]+ imgs/sec; Latency range: [\d.]+\.\.[\d.]+ ms", result.stdout, re.M)) == 3
    assert "excluded" in result.stdout
    assert result.stdout.count("setAvailableMemoryProportion") == 1
    folder, = glob.glob(str(tmp_path / "resnet18_bs2_32.32fp_r2_di2_*"))
    app = json.load(open(os.path.join(folder, "app.json")))
    results = json.load(open(os.path.join(folder, "results.json")))
    assert app["replicas"] == 2 and app["available_memory_proportion"] == [0.3]
    assert results["metrics"]["images"] == 2 * 2 * 2 * 2
    assert results["backend"] == "portable" and results["device"] == "cpu"
    assert results["torch_version"] and results["device_name"]
    assert any(e["option"] == "setAvailableMemoryProportion" for e in results["no_effect"])
    assert results["host_allocator"]["mode"] == "resident"
    assert results["host_allocator"]["mmap_threshold_bytes"] == 32 << 20
    assert result.stdout.count("Host allocator:") == 1


@pytest.mark.slow
def test_preset_with_override_and_eight_bit_io(tmp_path):
    result = run(["--config", "resnet50-mk2", "--model", "resnet18", "--data", "generated", "--batch-size", "1",
                  "--device-iterations", "2", "--iterations", "1", "--warmup-iterations", "0",
                  "--random-weights"], tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    match = FINAL.search(result.stdout)
    assert match.group(5) == "resnet18" and match.group(3) == "torch.uint8"
    folder, = glob.glob(str(tmp_path / "*"))
    app = json.load(open(os.path.join(folder, "app.json")))
    assert app["eight_bit_io"] is True and app["normalization_location"] == "ipu" and app["half_partial"] is True


@pytest.mark.slow
def test_pipelined_synthetic_run(tmp_path):
    result = run(["--data", "synthetic", "--model", "resnet18", "--batch-size", "1", "--device-iterations", "2",
                  "--pipeline-splits", "layer3", "--iterations", "1", "--warmup-iterations", "0",
                  "--precision", "32.32", "--random-weights", "--host-allocator", "default"], tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert FINAL.search(result.stdout).group(4) == "2"
    assert "Latency: min=N/A ms" in result.stdout
    folder, = glob.glob(str(tmp_path / "*"))
    assert json.load(open(os.path.join(folder, "results.json")))["host_allocator"]["mode"] == "default"
    assert "glibc defaults (--host-allocator default)" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--model", "resnet19"], "resnet19"),
    (["--pipeline-splits", "layer9"], "layer9"),
    (["--config", "no-such-preset"], "no-such-preset"),
    (["--precision", "8.8"], "8.8"),
    (["--data", "floppy"], "floppy"),
    (["--pipeline-splits", "layer3", "--device-iterations", "1"], "device iterations"),
    (["--batch-size", "0"], "batch-size"),
])
def test_bad_input_is_one_sentence_and_exit_code_2(args, message, tmp_path, capsys):
    """In this process (a process each cost 10-15 s of imports on CI's 2 cores); the next test checks
    that a real process ends the same way."""
    from cnns.inference import run_benchmark
    base = ["--data", "generated", "--iterations", "1", "--random-weights", "--precision", "32.32"]
    with pytest.raises(SystemExit) as exited:
        run_benchmark.main(base + args + ["--log-path", str(tmp_path)])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert not os.listdir(tmp_path), "a refused run left a log folder"


@pytest.mark.slow
def test_a_bad_value_ends_the_process_with_one_sentence_and_exit_code_2(tmp_path):
    result = run(["--data", "generated", "--iterations", "1", "--random-weights", "--model", "resnet19"],
                 tmp_path=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[-1]]
    assert result.stderr.strip().startswith("error: ") and "resnet19" in result.stderr


def test_unknown_preset_key_is_rejected(tmp_path):
    config = tmp_path / "configs.yml"
    config.write_text("bad:\n  model: resnet18\n  batch_sise: 4\n")
    from cnns.inference import run_benchmark
    from cnns.utils.argparser import parse_with_config
    from cnns.utils.errors import UsageError
    parser = run_benchmark.new_parser("t")
    run_benchmark.add_common_options(parser)
    with pytest.raises(UsageError, match="batch_sise"):
        parse_with_config(parser, str(config), ["--config", "bad"])


def help_text(capsys) -> str:
    """run_benchmark.py -h's output, in this process (the console script's -h runs in test_installable.py)."""
    from cnns.inference import run_benchmark
    with pytest.raises(SystemExit) as exited:
        run_benchmark.parse_arguments(["-h"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_help_lists_every_seed_option(capsys):
    out = help_text(capsys)
    for flag in ["--data", "--replicas", "--batch-size", "--model", "--pipeline-splits", "--device-iteration",
                 "--device-iterations", "--precision", "--iterations", "--half-partial", "--normlayer", "--norm-type",
                 "--groupnorm-group-num", "--norm-num-groups", "--available-memory-proportion", "--config",
                 "--num-io-tiles", "--eight-bit-io", "--normalization-location", "--dataloader-worker",
                 "--dataloader-rebatch-size", "--batchnorm-momentum", "--norm-eps", "--full-precision-norm",
                 "--enable-fast-groupnorm", "--exchange-memory-target", "--profile", "--model-cache-path",
                 "--efficientnet-expand-ratio", "--efficientnet-group-dim", "--random-weights"]:
        assert flag in out, flag


def test_readme_documents_every_option(capsys):
    readme = open(os.path.join(REPO_ROOT, "README.md")).read()
    flags = set(re.findall(r"(--[a-z0-9-]+)", help_text(capsys))) - {"--help"}
    missing = sorted(f for f in flags if f"`{f}" not in readme)
    assert not missing, missing


@pytest.mark.slow
def test_profile_writes_a_trace_in_the_log_folder(tmp_path):
    result = run(["--data", "generated", "--model", "resnet18", "--batch-size", "1", "--iterations", "1",
                  "--warmup-iterations", "0", "--precision", "32.32", "--random-weights", "--profile",
                  "--executor", "eager"], tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    folder, = glob.glob(str(tmp_path / "*"))
    trace = json.load(open(os.path.join(folder, "profile_trace.json")))
    assert any("conv" in str(e.get("name", "")).lower() for e in trace["traceEvents"])


@pytest.mark.slow
def test_results_record_executor_compile_time_memory_and_threads(tmp_path):
    result = run(["--data", "generated", "--model", "resnet18", "--batch-size", "2", "--iterations", "2",
                  "--precision", "32.32", "--random-weights", "--executor", "onnxruntime"], tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    folder, = glob.glob(str(tmp_path / "*"))
    results = json.load(open(os.path.join(folder, "results.json")))
    assert results["executor"] == "onnxruntime" and results["compile_s"] > 0
    assert results["executor_reason"].startswith("asked for with --executor onnxruntime")
    assert results["executors_compiled"] == ["onnxruntime"]
    assert 50 < results["peak_host_rss_mb"] <= results["process_max_rss_mb"] + 1.0
    assert results["heap_returned_mb"] >= 0 and "went back to the OS" in result.stdout
    assert results["before_compile_mb"] > 50 and results["compile_kept_mb"] >= 0
    # the measured calls' peak starts from what the process held once compiled
    assert results["peak_host_rss_mb"] + 1.0 >= results["before_compile_mb"] + results["compile_kept_mb"]
    assert results["cpu_threads"]["intra_op_threads"] >= 1
    assert "with the onnxruntime executor in" in result.stdout and "(excluded from the figures)" in result.stdout
    assert "CPU threads:" in result.stdout
    assert results["gc_frozen_objects"] > 10000 and result.stdout.count("Python's garbage collector:") == 1


@pytest.mark.slow
def test_executor_that_cannot_run_here_is_a_usage_error(tmp_path):
    broken = tmp_path / "shadow" / "openvino"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('simulated: OpenVINO absent')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "shadow"))
    result = run(["--data", "generated", "--model", "resnet18", "--iterations", "1", "--random-weights",
                  "--executor", "openvino", "--device", "cpu"], tmp_path=tmp_path / "logs", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: --executor openvino cannot run here: openvino is not installed" in result.stderr


@pytest.mark.slow
def test_sweep_runs_every_batch_size_and_writes_csv_and_png(tmp_path):
    import csv
    from PIL import Image
    result = run(["--data", "synthetic", "--model", "resnet18", "--batch-size", "1", "2", "3", "--iterations", "1",
                  "--warmup-iterations", "1", "--precision", "32.32", "--random-weights", "--executor", "onnxruntime"],
                 tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("Throughput at bs=") == 3
    folder, = glob.glob(str(tmp_path / "sweep_*"))
    with open(os.path.join(folder, "sweep.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["batch_size"]) for r in rows] == [1, 2, 3]
    assert all(float(r["throughput_mean"]) > 0 and r["executor"] == "onnxruntime" for r in rows)
    assert all(os.path.isdir(r["log_folder"]) for r in rows)
    with Image.open(os.path.join(folder, "sweep.png")) as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_sweep_values_split_into_combinations():
    from cnns.utils.sweep import combinations
    runs = combinations(["--model", "resnet18", "resnet50", "--batch-size=4", "--executor", "eager", "--iterations", "2"])
    assert runs == [["--iterations", "2", "--model", "resnet18", "--batch-size", "4", "--executor", "eager"],
                    ["--iterations", "2", "--model", "resnet50", "--batch-size", "4", "--executor", "eager"]]
    assert combinations(["--batch-size", "1", "--data", "generated"]) == [["--data", "generated", "--batch-size", "1"]]


# Every value of the original's inference presets (inference/configs.yml, SDK 2.4), with the values of
# its `common` anchor that each preset merges.
COMMON = dict(precision="16.16", replicas=1, device_iterations=128, half_partial=True, norm_type="batch",
              eight_bit_io=True, normalization_location="ipu")
G16_GN = dict(COMMON, efficientnet_group_dim=16, efficientnet_expand_ratio=4, norm_type="group", norm_eps=0.001,
              norm_num_groups=4, enable_fast_groupnorm=True, random_weights=True)
ORIGINAL_INFERENCE_PRESETS = {
    "common": COMMON,
    "resnet50-mk2": dict(COMMON, model="resnet50", batch_size=90),
    "efficientnet-b0-mk2": dict(COMMON, model="efficientnet-b0", batch_size=49),
    "efficientnet-b4-mk2": dict(COMMON, model="efficientnet-b4", batch_size=12),
    "efficientnet-g16-gn": G16_GN,
    "efficientnet-b0-g16-gn-mk2": dict(G16_GN, model="efficientnet-b0", batch_size=106),
    "efficientnet-b4-g16-gn-mk2": dict(G16_GN, model="efficientnet-b4", batch_size=26),
    "mobilenet-v3-small-mk2": dict(COMMON, model="mobilenet-v3-small", batch_size=224, device_iterations=64),
    "mobilenet-v3-large-mk2": dict(COMMON, model="mobilenet-v3-large", batch_size=64),
}


@pytest.mark.parametrize("name", sorted(ORIGINAL_INFERENCE_PRESETS))
def test_every_value_of_the_original_inference_preset(name):
    """Each key of the original's inference preset reaches the args, and those the Options carry reach them."""
    import torch
    from cnns.inference import run_benchmark
    from cnns.utils.backend import select_backend
    from cnns.utils.distributed import InstanceInfo
    from cnns.utils.ipu_settings import inference_options
    expected = ORIGINAL_INFERENCE_PRESETS[name]
    args = run_benchmark.parse_arguments(["--config", name, "--data", "generated"])
    assert {key: getattr(args, key) for key in expected} == expected
    opts = inference_options(args, select_backend("cpu"), InstanceInfo(0, 1, 0))
    assert (opts.device_iterations, opts.replication_factor) == (expected["device_iterations"], 1)
    assert opts.Precision.partials_type == torch.float16
    recorded = {e["option"] for e in opts.no_effect()}
    assert ("_Popart.groupNormStridedChannelGrouping" in recorded) is ("enable_fast_groupnorm" in expected)


@pytest.mark.slow
def test_random_weights_follow_the_seed_so_a_rerun_reuses_the_cached_executable(tmp_path):
    cache = tmp_path / "cache"
    base = ["--data", "synthetic", "--model", "resnet18", "--batch-size", "1", "--iterations", "1",
            "--warmup-iterations", "0", "--precision", "32.32", "--random-weights", "--executor", "onnxruntime",
            "--model-cache-path", str(cache)]
    for n, extra in enumerate([[], [], ["--seed", "1"]]):
        result = run(base + extra, tmp_path=tmp_path / f"logs{n}")
        assert result.returncode == 0, result.stderr[-2000:]
        artefacts = sorted(p.name for p in (cache / "onnxruntime").glob("*.onnx"))
        assert len(artefacts) == (1 if n < 2 else 2), artefacts


def test_per_call_lines_are_written_together_in_order(monkeypatch):
    from cnns.inference import run_benchmark

    class Logger:
        def __init__(self):
            self.records = []

        def log(self, message):
            self.records.append(message)

    logger = Logger()
    lines = run_benchmark.PerCallLines(logger)
    monkeypatch.setattr(run_benchmark.PerCallLines, "FLUSH_EVERY_S", 3600.0)
    for i in range(3):
        lines.add(f"call {i}")
    assert logger.records == []   # nothing written between calls
    lines.flush()
    lines.flush()
    assert logger.records == ["call 0\ncall 1\ncall 2"]
    monkeypatch.setattr(run_benchmark.PerCallLines, "FLUSH_EVERY_S", 0.0)
    lines.add("call 3")
    assert logger.records[-1] == "call 3"


def test_memory_line_gives_the_parts_of_the_measured_calls_peak():
    from tests.scripts import load_script
    module = load_script("run_benchmark", os.path.join(INFERENCE_DIR, "run_benchmark.py"))
    memory = {"peak_host_rss_mb": 811.4, "process_max_rss_mb": 815.0}
    assert module.memory_line(memory, 707.2, 73.0, 31.0, 1) == (
        "Peak host memory of the measured calls: 811 MB (707 MB held before compiling: libraries, the model, its "
        "input; 73 MB that compiling brought and kept: the executors' libraries, their copies of the weights, their "
        "buffers); 31 MB that compiling freed went back to the OS before them; the process's peak, 815 MB, includes "
        "compiling 1 executor(s).")
    assert module.memory_line(memory, None, None, None, 2) == (
        "Peak host memory of the measured calls: 811 MB; the process's peak, 815 MB, includes compiling 2 executor(s). "
        "auto compiled 2 executors to time them, and the libraries of those it dropped keep part of their memory in "
        "this process; with --model-cache-path (or POPTORCH_CACHE_DIR) later runs reuse the choice and compile only "
        "the chosen executor.")
    assert module.memory_line(memory, None, None, None, 1, 1523.4) == (
        "Peak host memory of the measured calls: 811 MB; the process's peak, 815 MB, includes compiling 1 executor(s). "
        "auto compiled and timed the executors in a separate process, which peaked at 1523 MB while this one waited; "
        "none of that is in these figures.")
