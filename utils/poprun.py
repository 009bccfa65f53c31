"""``poprun``-compatible launcher: starts one process per instance through torch.distributed.run.

    poprun --num-instances=4 --num-replicas=4 --ipus-per-replica=1 python run_benchmark.py ...

poprun's options map to torch.distributed.run (instances = processes on this host); replicas are
divided between the instances and passed through the environment; options about MPI, NUMA, V-IPU
and remote hosts are accepted and reported once. ``--install DIR`` writes a ``poprun`` command there.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # noqa: E401,E702

import argparse
import os
import shlex
import socket
import stat
import subprocess
from typing import List, Optional, Sequence, Tuple

ENV_REPLICAS = "POPRUN_LOCAL_REPLICAS"
ENV_IPUS_PER_REPLICA = "POPRUN_IPUS_PER_REPLICA"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="poprun", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--num-instances", type=int, default=1, help="Processes to start (one per instance)")
    p.add_argument("--num-replicas", type=int, default=None, help="Replicas in total, divided between instances")
    p.add_argument("--ipus-per-replica", type=int, default=1, help="Devices per replica (pipeline stages)")
    p.add_argument("--numa-aware", default="no", help="Accepted; process pinning is left to the OS")
    p.add_argument("--mpi-global-args", default="", help="--tag-output prefixes each line with the instance; "
                   "--allow-run-as-root accepted")
    p.add_argument("--mpi-local-args", default="", help="-x VAR exports VAR to the instances (they inherit the environment)")
    p.add_argument("--host", "--hosts", dest="hosts", default=None, help="Only this host is supported")
    p.add_argument("--vipu-server-host", default=None, help="Accepted, no effect off IPU")
    p.add_argument("--vipu-partition", default=None, help="Accepted, no effect off IPU")
    p.add_argument("--reset-partition", default=None, help="Accepted, no effect off IPU")
    p.add_argument("--update-partition", default=None, help="Accepted, no effect off IPU")
    p.add_argument("--only-output-from-instance", type=int, default=None, help="Show only this instance's output")
    p.add_argument("--install", metavar="DIR", default=None, help="Write a `poprun` command into DIR and exit")
    p.add_argument("program", nargs=argparse.REMAINDER, help="Command run by every instance")
    return p


def split_program(program: List[str]) -> Tuple[List[str], bool]:
    """(script and args, whether it is a Python script) from ``python x.py ...`` or ``x.py ...``."""
    if program and os.path.basename(program[0]).startswith("python"):
        return program[1:], True
    return program, program[0].endswith(".py") if program else False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_command(args: argparse.Namespace) -> Tuple[List[str], dict, List[str]]:
    """The torch.distributed.run command line, the environment, and notes on options with no effect."""
    notes = []
    if args.num_instances < 1:
        raise SystemExit("poprun: --num-instances must be at least 1.")
    replicas = args.num_replicas if args.num_replicas is not None else args.num_instances
    if replicas % args.num_instances != 0:
        print(f"poprun: --num-replicas {replicas} does not divide between {args.num_instances} instances.",
              file=sys.stderr)
        raise SystemExit(2)
    if args.hosts and args.hosts.split(",")[0] not in ("localhost", "127.0.0.1", socket.gethostname()):
        print(f"poprun: remote hosts ({args.hosts}) are not supported; instances run on this host.", file=sys.stderr)
        raise SystemExit(2)
    for name in ("vipu_server_host", "vipu_partition", "reset_partition", "update_partition"):
        if getattr(args, name):
            notes.append(f"--{name.replace('_', '-')} has no effect off IPU")
    if args.numa_aware not in ("no", "0", "false"):
        notes.append("--numa-aware: no NUMA pinning is done; the OS places the processes")
    script, is_python = split_program(args.program)
    if not script:
        print("poprun: no program given; usage: poprun [options] python script.py [args]", file=sys.stderr)
        raise SystemExit(2)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={args.num_instances}",
           "--nnodes=1", "--master-addr=127.0.0.1", f"--master-port={free_port()}"]
    tag = "--tag-output" in shlex.split(args.mpi_global_args)
    if tag:
        cmd += ["--tee=3", "--log-line-prefix-template=[1,${local_rank}]<stdout>:"]
    if args.only_output_from_instance is not None:
        cmd += [f"--local-ranks-filter={args.only_output_from_instance}"]
    if not is_python:
        cmd.append("--no-python")
    cmd += script
    env = dict(os.environ)
    env[ENV_REPLICAS] = str(replicas // args.num_instances)
    env[ENV_IPUS_PER_REPLICA] = str(args.ipus_per_replica)
    env.setdefault("HARNESS_RUN_NAME", f"poprun_{os.getpid()}")
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.num_instances)))
    return cmd, env, notes


def install(folder: str) -> None:
    path = os.path.join(folder, "poprun")
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\nexec "{sys.executable}" "{os.path.abspath(__file__)}" "$@"\n')
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(f"Installed {path}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.install:
        install(args.install)
        return 0
    cmd, env, notes = build_command(args)
    for note in notes:
        print(f"poprun: {note}", file=sys.stderr)
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
