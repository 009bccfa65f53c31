"""poprun-compatible launcher: seed 003's option set, instances, replica split and combined metrics."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from utils import poprun


def test_options_map_to_torch_distributed_run():
    args = poprun.parser().parse_args([
        "--mpi-global-args=--allow-run-as-root --tag-output", "--mpi-local-args=-x POPLAR_ENGINE_OPTIONS",
        "--num-instances=4", "--numa-aware=yes", "--num-replicas=8", "--ipus-per-replica=1",
        "python", "run_benchmark.py", "--config", "resnet50-mk2"])
    cmd, env, notes = poprun.build_command(args)
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--nproc-per-node=4" in cmd
    assert cmd[-3:] == ["run_benchmark.py", "--config", "resnet50-mk2"]
    assert any(c.startswith("--log-line-prefix-template") for c in cmd)
    assert env[poprun.ENV_REPLICAS] == "2" and env[poprun.ENV_IPUS_PER_REPLICA] == "1"
    assert any("numa" in n for n in notes)


def test_replicas_must_divide_between_instances():
    args = poprun.parser().parse_args(["--num-instances=4", "--num-replicas=6", "python", "x.py"])
    with pytest.raises(SystemExit) as exc:
        poprun.build_command(args)
    assert exc.value.code == 2


@pytest.mark.slow
def test_two_instances_run_the_benchmark_and_sum_throughput(tmp_path):
    env = dict(os.environ, POPLAR_ENGINE_OPTIONS='{"exchange.enablePrefetch": "false"}')
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "utils", "poprun.py"),
         "--mpi-global-args=--allow-run-as-root --tag-output", "--mpi-local-args=-x POPLAR_ENGINE_OPTIONS",
         "--num-instances=2", "--numa-aware=yes", "--num-replicas=2", "--ipus-per-replica=1",
         "python", "run_benchmark.py", "--config", "resnet50-mk2", "--model", "resnet18", "--data", "generated",
         "--batch-size", "1", "--device-iterations", "2", "--iterations", "2", "--num-io-tiles", "64",
         "--random-weights", "--log-path", str(tmp_path)],
        cwd=os.path.join(REPO_ROOT, "inference"), env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^\[1,0\]<stdout>:\[instance1/2\] Throughput: ", out, re.M)
    assert re.search(r"^\[1,1\]<stdout>:\[instance2/2\] Throughput: ", out, re.M)
    finals = re.findall(r"num_ipus=(\d+), of resnet18: .*mean=([\d.]+) imgs/s", out)
    assert finals and all(n == "2" for n, _ in finals)
    folder, = glob.glob(str(tmp_path / "*"))
    results = json.load(open(os.path.join(folder, "results.json")))
    assert results["instances"] == 2 and results["replicas"] == 1
    assert results["metrics"]["images"] == 2 * 2 * 1 * 2  # instances x calls x replicas x (bs x DI)
    assert any(e["option"] == "POPLAR_ENGINE_OPTIONS" for e in results["no_effect"])
