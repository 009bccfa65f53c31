"""poprun: placement over hosts, option checks, the launch plan, popdist semantics in the programs,
and launches of small programs over two loopback "hosts" (failures, signals, MPI-style and torchrun)."""
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import REPO_ROOT
from cnns.utils import distributed, numa_binding, poprun, poprun_instance, process_tree
from cnns.utils.errors import UsageError
from cnns.utils.poprun_topology import place

POPRUN = os.path.join(REPO_ROOT, "utils", "poprun.py")


@pytest.fixture
def fake_ssh(tmp_path):
    """A remote shell that runs the command here: ``fake_ssh HOST COMMAND`` (tests have no sshd)."""
    path = tmp_path / "fake_ssh"
    path.write_text('#!/bin/sh\nshift\nexec sh -c "$*"\n')
    path.chmod(0o755)
    return str(path)


def launch_env(fake_ssh, **extra):
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO_ROOT, POPRUN_SSH=fake_ssh, **extra)


def write_program(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_print_topology_four_instances_over_two_hosts(capsys):
    assert poprun.main(["--host", "h1,h2", "--num-instances", "4", "--num-replicas", "8", "--ipus-per-replica", "2",
                        "--print-topology"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "4 instances on 2 hosts, 8 replicas (2 per instance), 2 devices per replica (pipeline stages)"
    rows = [line.split()[:5] for line in out[3:]]
    assert rows == [["0", "h1", "0", "0-1", "0-1"], ["1", "h2", "0", "2-3", "0-1"],
                    ["2", "h1", "1", "4-5", "2-3"], ["3", "h2", "1", "6-7", "2-3"]]


@pytest.mark.parametrize("argv, message", [
    (["--num-replicas", "0"], "error: --num-replicas must be at least 1, got 0."),
    (["--ipus-per-replica", "0"], "error: --ipus-per-replica must be at least 1, got 0."),
    (["--num-instances", "0"], "error: --num-instances must be at least 1, got 0."),
    (["--num-instances", "2", "--only-output-from-instance", "5"],
     "error: --only-output-from-instance 5 is not an instance of this launch; accepted: 0 to 1."),
    (["--num-instances", "4", "--num-replicas", "6"],
     "error: --num-replicas 6 does not divide between 4 instances; give a multiple of 4."),
    (["--numa-aware", "maybe"], "error: Argument --numa-aware: invalid value 'maybe' (accepted: yes, no, 1, 0, true, false)*"),
])
def test_bad_values_are_one_error_line_and_exit_2(argv, message, capsys):
    assert poprun.main(argv + ["python", "x.py"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and re.fullmatch(re.escape(message).replace(r"\*", ".*"), lines[0])


def test_launch_plan_one_launcher_per_host_and_only_exported_variables_go_remote(fake_ssh, monkeypatch):
    monkeypatch.setenv("POPRUN_SSH", fake_ssh)
    monkeypatch.setenv("EXPORTED_VAR", "yes")
    monkeypatch.setenv("NOT_EXPORTED_VAR", "secret")
    args, topo, make_nodes, notes = poprun.prepare([
        "--host", "127.0.0.1,127.0.0.1", "--num-instances", "3", "--num-replicas", "6", "--num-ilds", "2",
        "--mpi-local-args=-x EXPORTED_VAR -x SET_HERE=1 --bind-to none", "--mpi-global-args=--tag-output",
        "--executable-cache-path", "cache", "python", "run_benchmark.py", "--model", "resnet18"])
    nodes = make_nodes()
    assert [n.local for n in nodes] == [True, False]
    local, remote = nodes
    again = make_nodes()  # a restart: fresh rendezvous port, same launch id
    assert [c for c in again[0].command if c.startswith("--rdzv-id")] == [c for c in local.command if c.startswith("--rdzv-id")]
    assert "--nproc-per-node=2" in local.command and "--nproc-per-node=1" in nodes[1].command[-1]
    endpoint = next(c for c in local.command if c.startswith("--rdzv-endpoint="))
    assert endpoint.startswith("--rdzv-endpoint=127.0.0.1:") and endpoint in remote.command[-1]
    assert "--rdzv-conf=is_host=true" in local.command and "is_host=false" in remote.command[-1]
    assert remote.command[:2] == [fake_ssh, "127.0.0.1"]
    assert "EXPORTED_VAR=yes" in remote.command[-1] and "SET_HERE=1" in remote.command[-1]
    assert "NOT_EXPORTED_VAR" not in remote.command[-1] and "POPRUN_NODE=1" in remote.command[-1]
    assert local.env["POPDIST_NUM_LOCAL_REPLICAS"] == "2" and local.env["POPDIST_NUM_TOTAL_REPLICAS"] == "6"
    assert local.env["POPDIST_EXECUTABLE_CACHE_PATH"] == os.path.abspath("cache")
    assert local.env["POPRUN_TAG_OUTPUT"] == "1" and local.env["NOT_EXPORTED_VAR"] == "secret"
    assert notes == ["--num-ilds has no effect off IPU", "--mpi-local-args --bind-to none: no equivalent off MPI, no effect"]


def test_instances_are_numbered_round_robin_over_hosts():
    base = {"POPRUN_NUM_HOSTS": "2", "POPDIST_NUM_LOCAL_REPLICAS": "2"}
    numbers = {}
    for node in (0, 1):
        for local in (0, 1):
            env = poprun_instance.instance_environment({**base, "POPRUN_NODE": str(node), "LOCAL_RANK": str(local)})
            numbers[(node, local)] = (env["RANK"], env["POPDIST_INSTANCE_INDEX"], env["POPDIST_REPLICA_INDEX_OFFSET"])
    assert numbers == {(0, 0): ("0", "0", "0"), (1, 0): ("1", "1", "2"), (0, 1): ("2", "2", "4"), (1, 1): ("3", "3", "6")}
    assert [(i.host, i.local_index) for i in place(["a", "b"], 4, 4, 1).instances] == \
        [("a", 0), ("b", 0), ("a", 1), ("b", 1)]


@pytest.mark.parametrize("env, expected", [
    ({}, (0, 1, 0, None)),
    ({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}, (3, 4, 1, None)),
    ({"POPDIST_NUM_INSTANCES": "2", "POPDIST_INSTANCE_INDEX": "1", "POPDIST_NUM_TOTAL_REPLICAS": "8",
      "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, (1, 2, 0, 4)),
    ({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "0",
      "POPDIST_NUM_LOCAL_REPLICAS": "3"}, (2, 4, 0, 3)),
    ({"PMI_SIZE": "2", "PMI_RANK": "1", "MPI_LOCALRANKID": "1"}, (1, 2, 1, None)),
])
def test_instance_info_from_every_launcher(env, expected):
    info = distributed.instance_info(env)
    assert (info.rank, info.size, info.local_rank, distributed.local_replicas(env)) == expected


def test_ipus_per_replica_must_match_pipeline_stages_and_cache_path_is_passed(monkeypatch, tmp_path):
    from cnns.inference.run_benchmark import parse_arguments
    monkeypatch.setenv("POPDIST_NUM_IPUS_PER_REPLICA", "2")
    monkeypatch.setenv("POPDIST_EXECUTABLE_CACHE_PATH", str(tmp_path))
    with pytest.raises(UsageError, match=r"poprun --ipus-per-replica 2 does not match this program's 1 pipeline"):
        parse_arguments(["--model", "resnet18"])
    args = parse_arguments(["--model", "resnet18", "--pipeline-splits", "layer3", "--device-iterations", "2"])
    assert args.model_cache_path == str(tmp_path)


def test_each_instance_gets_its_stages_own_gpus_and_wraps_round_when_short():
    info = lambda local: distributed.InstanceInfo(local, 4, local)  # noqa: E731
    assert [distributed.instance_cuda_devices(info(k), 2, 4) for k in range(2)] == [["cuda:0", "cuda:1"],
                                                                                  ["cuda:2", "cuda:3"]]
    assert [distributed.instance_cuda_devices(info(k), 1, 2) for k in range(4)] == [["cuda:0"], ["cuda:1"],
                                                                                  ["cuda:0"], ["cuda:1"]]
    assert distributed.instance_cuda_devices(info(1), 2, 3) == ["cuda:2", "cuda:0"]


def test_numa_binding_plans():
    two_nodes = {0: [0, 1], 1: [2, 3]}
    bound = numa_binding.plan(1, 2, two_nodes, [0, 1, 2, 3], "/usr/bin/numactl")
    assert bound.prefix == ["/usr/bin/numactl", "--physcpubind=2,3", "--membind=1"] and bound.numa_node == 1
    unbound = numa_binding.plan(1, 2, two_nodes, [0, 1, 2, 3], "")
    assert unbound.prefix == [] and unbound.cpus == [2, 3] and "numactl is not installed" in unbound.note
    split = [numa_binding.plan(k, 4, {0: [0, 1]}, [0, 1], "").cpus for k in range(4)]
    assert split == [[0], [0], [1], [1]]


FAILING = """
    import time
    from cnns.utils import distributed
    info = distributed.instance_info()
    distributed.init_process_group(info, "cpu", 120)
    print("instance", info.rank, "of", info.size, flush=True)
    if info.rank == 1:
        time.sleep(2)
        raise RuntimeError("instance one broke")
    distributed.barrier()
    time.sleep(120)
"""


@pytest.mark.slow
def test_failing_instance_ends_the_launch_and_is_named(tmp_path, fake_ssh):
    program = write_program(tmp_path, "failing.py", FAILING)
    start = time.monotonic()
    result = subprocess.run([sys.executable, POPRUN, "--host", "127.0.0.1,127.0.0.1", "--num-instances", "2",
                             "python", program], env=launch_env(fake_ssh), capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 60
    assert result.returncode == 1, result.stderr[-3000:]
    assert "instance 0 of 2" in result.stdout and "instance 1 of 2" in result.stdout
    assert re.search(r"^poprun: instance 1 on host 127\.0\.0\.1 exited with code 1; its last lines:$", result.stderr, re.M)
    assert re.search(r"^poprun:   \| .*RuntimeError: instance one broke$", result.stderr, re.M)
    assert result.stderr.rstrip().splitlines()[-1].startswith("poprun: the launch failed: instance ")


SLEEPING = """
    import os, time
    print("started", os.getpid(), flush=True)
    time.sleep(300)
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_to_poprun_stops_every_instance_on_every_host(tmp_path, fake_ssh, sig, code):
    program = write_program(tmp_path, "sleeping.py", SLEEPING)
    proc = subprocess.Popen([sys.executable, POPRUN, "--host", "127.0.0.1,127.0.0.1", "--num-instances", "2",
                             "python", program], env=launch_env(fake_ssh), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pids = []
    deadline = time.monotonic() + 90
    while len(pids) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("started"):
            pids.append(int(line.split()[1]))
    assert len(pids) == 2
    launched = process_tree.descendants(proc.pid)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in out + err
    assert f"poprun: {signal.Signals(sig).name} received; stopping every instance on every host." in err
    alive = [p for p in launched if os.path.exists(f"/proc/{p}") and "Z" not in open(f"/proc/{p}/stat").read().split()[2]]
    assert alive == [] and all(p in launched for p in pids)


COMBINING = """
    from cnns.utils import distributed, metrics
    info = distributed.instance_info()
    distributed.init_process_group(info, "cpu", 60)
    steps = [metrics.Step(4 * (info.rank + 1), 0.5 + info.rank), metrics.Step(2, 1.0)]
    s = metrics.summarise(steps)
    print(f"instance {info.rank}/{info.size} local {info.local_rank} images {s['images']:g} "
          f"seconds {s['seconds']:g} replicas {distributed.local_replicas()} each {s['instance_throughputs']} "
          f"sum {s['throughput_sum']:g}", flush=True)
    distributed.shutdown()
"""


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["mpi", "torchrun"])
def test_programs_combine_metrics_under_mpi_and_torchrun(tmp_path, launcher):
    """No MASTER_ADDR under MPI (the SDK's poprun): the instances still join one group and sum."""
    program = write_program(tmp_path, "combining.py", COMBINING)
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=REPO_ROOT, HARNESS_RENDEZVOUS_DIR=str(tmp_path))
    if launcher == "mpi":
        procs = [subprocess.Popen([sys.executable, program], stdout=subprocess.PIPE, text=True,
                                  env=dict(env, OMPI_COMM_WORLD_SIZE="2", OMPI_COMM_WORLD_RANK=str(r),
                                           OMPI_COMM_WORLD_LOCAL_RANK=str(r), OMPI_MCA_ess_base_jobid="4242",
                                           POPDIST_NUM_TOTAL_REPLICAS="4"))
                 for r in range(2)]
        out = "".join(p.communicate(timeout=120)[0] for p in procs)
        assert [p.returncode for p in procs] == [0, 0]
        replicas = "2"
    else:
        # torch.distributed.run keeps its per-run log folder in the temporary folder: this test's, removed with it
        result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                                 program], env=dict(env, TMPDIR=str(tmp_path)), capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        out, replicas = result.stdout, "None"
    # step 1: 4 + 8 images over max(0.5, 1.5) s; step 2: 2 + 2 images over 1 s;
    # instance 0 alone: 6 images in 1.5 s, instance 1: 10 images in 2.5 s
    for rank in range(2):
        assert f"instance {rank}/2 local {rank} images 16 seconds 2.5 replicas {replicas} each [4.0, 4.0] sum 8" in out


def test_installed_poprun_command_runs_this_launcher():
    """`make install` puts ``poprun`` (a console script of the cnns distribution) next to the venv's python,
    where the READMEs and the launch tests call it."""
    command = shutil.which("poprun", path=os.path.dirname(sys.executable))
    assert command, f"no poprun command next to {sys.executable}"
    out = subprocess.run([command, "--print-topology", "yes", "--num-instances", "2", "--num-replicas", "2"],
                         capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert "instance" in out.stdout.lower()


@pytest.mark.slow
def test_ipus_per_replica_against_pipeline_stages_is_one_error(tmp_path, fake_ssh):
    result = subprocess.run([sys.executable, POPRUN, "--num-instances", "2", "--ipus-per-replica", "2", "python",
                             "inference/run_benchmark.py", "--model", "resnet18", "--log-path", str(tmp_path)],
                            cwd=REPO_ROOT, env=launch_env(fake_ssh), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: poprun --ipus-per-replica 2 does not match this program's 1 pipeline stage(s) "
                      "(--pipeline-splits none); give --ipus-per-replica 1 or 1 pipeline split(s)."]
    assert "Traceback" not in result.stderr
