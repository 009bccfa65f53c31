"""Scaling with instances: inference and training throughput of 1, 2 and 4 poprun instances on this
machine (and the same commands over two loopback "hosts", the second reached through a local remote
shell), next to the single-instance figure and with the CPU cores each instance is bound to.

    python3 benchmarks/scaling.py --instances 1 2 4

Each launch's figures come from its results.json: "combined" is the harness's figure (all images over
the slowest instance's time per call or epoch); "sum" adds what each instance measured on its own.
Training runs two epochs and reports the second (the first includes compilation).
"""

import argparse
import glob
import json
import os
import pathlib
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

from cnns.train.arguments import MIN_INPUT_SIZE
from cnns.utils import numa_binding
from cnns.utils.argparser import add_debug_option, new_parser
from cnns.utils.errors import exit_on_usage_error, run_child
from cnns.utils.validation import MAX_IMAGE_SIDE, at_least, at_most_workers, in_range, known_models

REPO = str(pathlib.Path(__file__).resolve().parents[1])
POPRUN = os.path.join(REPO, "utils", "poprun.py")


def loopback_shell(folder: str) -> str:
    """A remote shell that runs the command on this machine, for the two-"host" launches."""
    path = os.path.join(folder, "loopback_shell")
    with open(path, "w") as f:
        f.write('#!/bin/sh\nshift\nexec sh -c "$*"\n')
    os.chmod(path, 0o755)
    return path


def launch(mode: str, instances: int, hosts: Optional[str], args: argparse.Namespace, work: str) -> Dict:
    """One poprun launch; returns its results.json."""
    logs = tempfile.mkdtemp(dir=work)
    common = ["--model", args.model, "--batch-size", str(args.batch_size), "--precision", "32.32", "--log-path", logs]
    if mode == "inference":
        program = ["python", "inference/run_benchmark.py", "--data", "generated", "--device-iterations", "2",
                   "--iterations", str(args.iterations), "--random-weights", *common]
    else:
        program = ["python", "train/train.py", "--data", "generated", "--input-size", str(args.train_input_size),
                   "--iterations", str(args.iterations), "--epoch", "2", "--validation-mode", "none",
                   "--dataloader-worker", "0", *common]
    cmd = [sys.executable, POPRUN, "--num-instances", str(instances), "--num-replicas", str(instances),
           "--numa-aware", "yes", *(["--host", hosts] if hosts else []), *program]
    env = dict(os.environ, POPRUN_SSH=loopback_shell(work))
    env.pop("OMP_NUM_THREADS", None)  # poprun gives each instance its share of the host's cores
    where = f" over {hosts.count(',') + 1} hosts" if hosts else ""
    run_child(cmd, f"The {mode} launch of {instances} instance(s){where}", cwd=REPO, env=env)
    (path,) = glob.glob(os.path.join(logs, "*", "results.json"))
    with open(path) as f:
        return json.load(f)


def figures(mode: str, results: Dict) -> Dict[str, object]:
    if mode == "inference":
        m = results["metrics"]
        each = m.get("instance_throughputs", [m["throughput_mean"]])
        return {"combined": m["throughput_mean"], "each": each}
    epoch = results["epochs"][-1]
    each = epoch.get("instance_throughputs", [epoch["throughput"]])
    return {"combined": epoch["throughput"], "each": each}


def cores_per_instance(instances: int, hosts: int) -> str:
    per_host = -(-instances // hosts)
    counts = sorted({len(numa_binding.plan(k, per_host).cpus) for k in range(per_host)})
    on_this_machine = instances  # loopback "hosts" are all this machine: their bindings overlap
    shared = " (shared)" if on_this_machine > len(numa_binding.allowed_cpus()) else ""
    overlap = " per host (overlapping)" if hosts > 1 else ""
    return "/".join(map(str, counts)) + overlap + shared


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The options, every value checked before the first launch."""
    p = new_parser(__doc__, raw_description=True)
    p.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--modes", nargs="+", choices=["inference", "training"], default=["inference", "training"])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--iterations", type=int, default=8, help="Measured calls (inference) or steps (training)")
    p.add_argument("--train-input-size", type=int, default=64)
    p.add_argument("--no-two-hosts", action="store_true", help="Skip the launches over two loopback hosts")
    add_debug_option(p)
    args = p.parse_args(argv)
    at_least(args, 1, ("instances", "batch_size", "iterations"))
    at_most_workers(args, ("instances",))
    in_range(args, "train_input_size", MIN_INPUT_SIZE, MAX_IMAGE_SIDE)  # what train.py accepts
    known_models(args, "model")
    return args


@exit_on_usage_error
def main(argv: Optional[List[str]] = None) -> None:
    args = parse_arguments(argv)
    print(f"| mode | hosts | instances | cores per instance | combined img/s | sum of instances img/s | "
          f"each instance img/s | sum vs 1 instance |")
    print("|---|---|---:|---|---:|---:|---|---:|")
    with tempfile.TemporaryDirectory() as work:
        for mode in args.modes:
            single: Optional[float] = None
            for instances in args.instances:
                layouts = [(None, 1)] + ([("127.0.0.1,127.0.0.1", 2)] if instances > 1 and not args.no_two_hosts else [])
                for hosts, count in layouts:
                    f = figures(mode, launch(mode, instances, hosts, args, work))
                    total = float(sum(f["each"]))
                    single = total if instances == 1 and hosts is None else single
                    ratio = f"{total / single:.2f}x" if single else "-"
                    each = ", ".join(f"{e:.1f}" for e in f["each"])
                    print(f"| {mode} | {count} | {instances} | {cores_per_instance(instances, count)} | "
                          f"{f['combined']:.1f} | {total:.1f} | {each} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
