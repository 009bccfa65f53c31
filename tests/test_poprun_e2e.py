"""poprun end to end over two loopback "hosts" (the second reached through a fake remote shell): the
seed-003 inference command and a short training run give the same results as a one-host launch, and an
elastic restart after SIGKILL of one training instance ends with an uninterrupted run's weights."""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.test_poprun import fake_ssh, launch_env  # noqa: F401  (fixture)
from cnns.utils import process_tree

POPRUN = os.path.join(REPO_ROOT, "utils", "poprun.py")
TWO_HOSTS = ["--host", "127.0.0.1,127.0.0.1"]
SEED_003 = ["--mpi-global-args=--allow-run-as-root --tag-output", "--mpi-local-args=-x POPLAR_ENGINE_OPTIONS",
            "--num-instances=4", "--numa-aware=yes", "--num-replicas=4", "--ipus-per-replica=1",
            "python", "run_benchmark.py", "--config", "resnet50-mk2", "--model", "resnet18", "--data", "generated",
            "--batch-size", "1", "--device-iterations", "2", "--iterations", "2", "--num-io-tiles", "64",
            "--random-weights"]
TRAIN = ["python", "train/train.py", "--data", "generated", "--model", "resnet18", "--input-size", "16",
         "--precision", "32.32", "--dataloader-worker", "0", "--batch-size", "2", "--iterations", "4", "--epoch", "3",
         "--validation-mode", "none", "--seed", "0", "--executor", "eager"]


def poprun(argv, env, cwd=REPO_ROOT):
    result = subprocess.run([sys.executable, POPRUN, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def shape(line):
    """A result line with its measured numbers blanked, to compare launches."""
    return re.sub(r"\d+\.\d+", "#", line)


@pytest.mark.slow
def test_seed_003_inference_on_two_loopback_hosts_matches_one_host(tmp_path, fake_ssh):  # noqa: F811
    env = launch_env(fake_ssh, POPLAR_ENGINE_OPTIONS='{"exchange.enablePrefetch": "false"}')
    env["TMPDIR"] = str(tmp_path / "system_tmp")
    os.makedirs(env["TMPDIR"])
    cwd = os.path.join(REPO_ROOT, "inference")
    runs = {}
    for name, hosts in (("one", []), ("two", TWO_HOSTS)):
        out = poprun([*hosts, *SEED_003, "--log-path", str(tmp_path / name)], env, cwd).stdout
        instances = sorted(set(re.findall(r"^\[1,(\d)\]<stdout>:\[instance(\d)/4\] Throughput: ", out, re.M)))
        assert instances == [(str(k), str(k + 1)) for k in range(4)]
        runs[name] = sorted({shape(line.split(":", 1)[1]) for line in out.splitlines()
                             if re.search(r"Throughput at bs=|Latency: min=", line)})
        check_instance_figures(out, tmp_path / name)
    assert runs["two"] == runs["one"] and len(runs["one"]) == 2
    assert "num_ipus=4, of resnet18" in runs["two"][1] + runs["two"][0]
    left = [name for name in os.listdir(env["TMPDIR"]) if name.startswith(("torchelastic_", "poprun_agent_"))]
    assert left == []   # the node agents' log folders are removed with them


def check_instance_figures(out, log_path):
    """results.json's per-instance throughputs are what each instance's own step lines give, and the
    combined sum is their sum."""
    (path,) = glob.glob(str(log_path / "*" / "results.json"))
    summary = json.load(open(path))["metrics"]
    for k in range(4):
        rates = [float(r) for r in re.findall(rf"^\[1,{k}\]<stdout>:\[instance{k + 1}/4\] Throughput: ([\d.]+) "
                                              rf"imgs/sec; Latency range: [^(\n]*$", out, re.M)]
        assert len(rates) == 2  # --iterations 2 measured calls of 2 images each
        own = 2 * len(rates) / sum(2 / r for r in rates)
        assert summary["instance_throughputs"][k] == pytest.approx(own, rel=1e-2)
    assert summary["throughput_sum"] == pytest.approx(sum(summary["instance_throughputs"]), rel=1e-12)


def final_weights(folder):
    (path,) = glob.glob(os.path.join(folder, "*_3.pt"))
    return torch.load(path, map_location="cpu", weights_only=True)["model_state_dict"]


def epoch_lines(out):
    return sorted(set(re.findall(r"^Epoch \d: Train accuracy is [\d.]+%$", out, re.M)))


def kill_instance_after_first_checkpoint(proc, folder, instance):
    """SIGKILL one instance's training process once epoch 1's checkpoint is on disk."""
    deadline = time.monotonic() + 300
    while not glob.glob(os.path.join(folder, "*_1.pt")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    for pid in process_tree.descendants(proc.pid):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"train.py" in cmdline and f"POPDIST_INSTANCE_INDEX={instance}".encode() in environ:
            os.kill(pid, signal.SIGKILL)
            return pid
    raise AssertionError("instance process not found")


@pytest.mark.slow
def test_training_on_two_hosts_and_after_an_elastic_restart_matches_one_host(tmp_path, fake_ssh):  # noqa: F811
    env = launch_env(fake_ssh)
    one = poprun(["--num-instances", "2", *TRAIN, "--checkpoint-path", str(tmp_path / "one"),
                  "--log-path", str(tmp_path / "logs")], env)
    two = poprun([*TWO_HOSTS, "--num-instances", "2", *TRAIN, "--checkpoint-path", str(tmp_path / "two"),
                  "--log-path", str(tmp_path / "logs")], env)
    assert len(epoch_lines(one.stdout)) == 3 and epoch_lines(two.stdout) == epoch_lines(one.stdout)
    expected = final_weights(str(tmp_path / "one"))
    assert all(torch.equal(v, expected[k]) for k, v in final_weights(str(tmp_path / "two")).items())

    folder = str(tmp_path / "elastic")
    proc = subprocess.Popen([sys.executable, POPRUN, *TWO_HOSTS, "--num-instances", "2", "--max-restarts", "1",
                             *TRAIN, "--checkpoint-path", folder, "--log-path", str(tmp_path / "logs")],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kill_instance_after_first_checkpoint(proc, folder, 1)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-4000:]
    assert "poprun: instance 1 on host 127.0.0.1 was killed by SIGKILL" in err
    assert "restarting every instance on every host (restart 1 of 1)" in err
    assert re.search(r"^Resuming training at epoch [23]/3\.$", out, re.M)
    assert all(torch.equal(v, expected[k]) for k, v in final_weights(folder).items())
