"""benchmarks/peers.py --in-process: the harness's inferenceModel and the chosen peers in one process."""
import pathlib
import re

from tests.scripts import load_benchmark


def test_in_process_runs_the_harness_and_only_the_chosen_peers():
    result = load_benchmark("peers").in_process("mobilenet-v3-small", 2, rounds=2, seconds=0.01, executor="eager", peers=["eager"])
    assert result["executor"] == "eager" and result["streams"] == 1
    assert set(result["throughput"]) == {"run_benchmark", "eager"}
    assert all(v > 0 for v in result["throughput"].values())
    assert {k: len(v) for k, v in result["rounds"].items()} == {"run_benchmark": 2, "eager": 2}


def test_paired_ratio_divides_within_each_round_and_gives_the_quartiles():
    peers = load_benchmark("peers")
    rounds = {"run_benchmark": [90.0, 50.0, 110.0, 120.0], "onnxruntime": [100.0, 50.0, 100.0, 100.0]}
    assert peers.paired_ratios(rounds, "onnxruntime") == [0.9, 1.0, 1.1, 1.2]
    # medians 100 and 100 would read 1.000; the rounds' own ratios centre on 1.05
    assert peers.spread([0.9, 1.0, 1.1, 1.2]) == "1.050 (0.975-1.125)"
    assert peers.spread([0.97]) == "0.970"


def test_in_process_table_ratio_is_harness_over_fastest_peer(capsys):
    load_benchmark("peers").main(["--in-process", "--models", "mobilenet-v3-small", "--batch-sizes", "1", "--rounds", "1",
                   "--seconds", "0.01", "--peers", "eager", "--executor", "eager"])
    out = capsys.readouterr().out
    row = re.search(r"^\| mobilenet-v3-small \| 1 \| ([\d.]+) \(eager\) \| ([\d.]+) \| eager \| ([\d.]+) \| "
                    r"([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert row, out
    harness, eager, ratio, paired, own = map(float, row.groups())   # figures printed to 0.05, ratios to 0.0005
    assert (harness - 0.05) / (eager + 0.05) - 5e-4 <= ratio <= (harness + 0.05) / (eager - 0.05) + 5e-4
    assert paired == ratio   # one round: the paired ratio is that round's, the same as the ratio of medians
    assert own == paired     # the harness ran eager, and the eager peer is also the fastest
    assert "inferenceModel, in process (executor)" in out


def test_own_runtime_ratio_pairs_the_harness_with_the_runtime_it_ran():
    peers = load_benchmark("peers")
    rounds = {"run_benchmark": [90.0, 99.0], "onnxruntime": [100.0, 100.0], "openvino": [90.0, 110.0]}
    row = peers.Row("resnet18", 1, {}, rounds, "openvino")
    assert peers.own_runtime(row, ["onnxruntime", "openvino"]) == "0.950 (0.925-0.975)"
    assert peers.own_runtime(row._replace(executors="openvino x2 streams"), ["onnxruntime", "openvino"]) == "0.950 (0.925-0.975)"
    assert peers.own_runtime(row._replace(executors="onnxruntime/openvino"), ["onnxruntime", "openvino"]) == "-"
    assert peers.own_runtime(row._replace(executors="inductor"), ["onnxruntime", "openvino"]) == "-"


def test_memory_table_sets_the_measured_calls_against_the_eager_loop(capsys):
    peers = load_benchmark("peers")
    rss = {"run_benchmark": 1185.0, peers.MEASURED: 1174.0, "onnxruntime": 2525.0, "eager": 1021.0}
    row = peers.Row("resnet50", 16, {}, {}, "onnxruntime", rss)
    peers.print_memory([row], ["run_benchmark", "onnxruntime", "eager"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == ("| model | batch | run_benchmark | run_benchmark measured calls | onnxruntime | eager "
                        "| measured calls / eager |")
    assert lines[3] == "| resnet50 | 16 | 1185 | 1174 | 2525 | 1021 | 1.15 |"


def test_run_benchmark_gets_a_cache_only_when_the_rounds_share_one(monkeypatch, tmp_path):
    """Default options, as the issue's table asks: no executable cache, not even one the environment
    names, so each round's auto times afresh; with a cache given, that one."""
    peers = load_benchmark("peers")
    seen = []

    def fake_child(cmd, what, env):
        seen.append(env.get("POPTORCH_CACHE_DIR"))
        run = pathlib.Path(cmd[cmd.index("--log-path") + 1]) / "run"
        run.mkdir()
        (run / "results.json").write_text('{"metrics": {"throughput_mean": 10.0}, "process_max_rss_mb": 900, '
                                          '"peak_host_rss_mb": 800, "executor": "openvino", "executor_streams": 2}')
    monkeypatch.setattr(peers, "run_child", fake_child)
    monkeypatch.setenv("POPTORCH_CACHE_DIR", str(tmp_path / "users_cache"))
    result = peers.run_engine("run_benchmark", "resnet18", 16, 1.0, None, {})
    assert result["throughput"] == 10.0 and result["executor"] == "openvino x2 streams"
    peers.run_engine("run_benchmark", "resnet18", 16, 1.0, str(tmp_path / "shared"), {})
    assert seen == [None, str(tmp_path / "shared")]


def test_share_cache_gives_each_row_one_folder_for_all_its_rounds(monkeypatch, capsys):
    peers = load_benchmark("peers")
    caches = []

    def fake_engine(engine, name, batch, seconds, cache, iterations, executor="auto"):
        if engine == "run_benchmark":
            caches.append((name, batch, cache))
        return {"throughput": 10.0, "peak_rss_mb": 900.0, "measured_rss_mb": 800.0, "executor": "eager"}
    monkeypatch.setattr(peers, "run_engine", fake_engine)
    argv = ["--models", "resnet18", "--batch-sizes", "1", "16", "--rounds", "2", "--peers", "eager"]
    peers.main(argv)
    assert [c for _, _, c in caches] == [None] * 4
    caches.clear()
    peers.main(argv + ["--share-cache"])
    by_row = {(n, b): {c for m, d, c in caches if (m, d) == (n, b)} for n, b, _ in caches}
    assert len(caches) == 4 and all(len(folders) == 1 and None not in folders for folders in by_row.values())
    assert len({folder for folders in by_row.values() for folder in folders}) == 2
    assert "| resnet18 | 16 | 10.0 (eager) | 10.0 | eager | 1.000 |" in capsys.readouterr().out
