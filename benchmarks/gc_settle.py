"""run_benchmark.py with and without gc_settle (collect, then freeze start-up objects before the
measured calls), each run in a fresh process, order alternating.

A child runs run_benchmark.py's main (synthetic data, random weights, fp32) with ``gc_settle.settle``
left or replaced by a no-op, and prints its images/s and its slowest and fastest call. Every child shares
one executable cache, so rounds after the first load the compiled model as a rerun does. The paired
ratio settled/plain is printed (> 1.0 = settling helps).

    python3 benchmarks/gc_settle.py --model resnet18 --batch-size 1 --executor onnxruntime --rounds 7
"""

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence

from cnns.utils.argparser import add_debug_option, new_parser
from cnns.utils.errors import exit_on_usage_error, run_child
from cnns.utils.metrics import spread
from cnns.utils.validation import at_least, known_models
from portable_poptorch.compilers import EXECUTORS


def child(name: str, batch: int, executor: str, calls: int, settle: bool) -> Dict[str, Any]:
    """run_benchmark.py's main in this process (synthetic data, random weights), settling or not."""
    from cnns.inference import run_benchmark
    from cnns.utils import gc_settle
    if not settle:
        gc_settle.settle = lambda: {"note": "Not settled (benchmarks/gc_settle.py's plain mode)."}
    with tempfile.TemporaryDirectory() as logs, contextlib.redirect_stdout(io.StringIO()):
        result = run_benchmark.main(["--data", "synthetic", "--model", name, "--batch-size", str(batch),
                                     "--precision", "32.32", "--random-weights", "--executor", executor,
                                     "--iterations", str(calls), "--log-path", logs])
    m = result["metrics"]
    return {"throughput": m["throughput_mean"], "slowest_ms": batch / m["throughput_min"] * 1e3,
            "fastest_ms": batch / m["throughput_max"] * 1e3, "frozen": result.get("gc_frozen_objects", 0)}


def measure(mode: str, args: argparse.Namespace, cache: str) -> Dict[str, Any]:
    """One child process of ``mode`` (settled or plain), compiling into or loading from ``cache``; its figures."""
    cmd = [sys.executable, __file__, "--child", mode, "--model", args.model, "--batch-size",
           str(args.batch_size), "--executor", args.executor, "--calls", str(args.calls)]
    out = run_child(cmd, f"The {mode} measurement", env=dict(os.environ, POPTORCH_CACHE_DIR=cache))
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = new_parser(__doc__, raw_description=True)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--executor", choices=EXECUTORS, default="onnxruntime")
    p.add_argument("--calls", type=int, default=200, help="Measured calls per process")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--child", choices=["settled", "plain"], default=None, help=argparse.SUPPRESS)
    add_debug_option(p)
    args = p.parse_args(argv)
    at_least(args, 1, ("batch_size", "calls", "rounds"))
    known_models(args, "model")
    return args


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_arguments(argv)
    if args.child:
        print(json.dumps(child(args.model, args.batch_size, args.executor, args.calls, args.child == "settled")))
        return
    from portable_poptorch.device import device_name
    import torch
    print(f"CPU: {device_name(torch.device('cpu'))}; {args.model} bs={args.batch_size}, --executor {args.executor}, "
          f"{args.calls} calls per process")
    figures: Dict[str, List[Dict[str, Any]]] = {"settled": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="gc_settle_cache_") as cache:  # rounds after the first load it
        for r in range(args.rounds):
            for mode in (["settled", "plain"] if r % 2 == 0 else ["plain", "settled"]):
                figures[mode].append(measure(mode, args, cache))
            print(f"round {r + 1}: " + ", ".join(f"{m} {f[-1]['throughput']:.1f} img/s (slowest call "
                                                 f"{f[-1]['slowest_ms']:.0f} ms)" for m, f in figures.items()), flush=True)
    ratios = [s["throughput"] / p["throughput"] for s, p in zip(figures["settled"], figures["plain"])]
    print(f"| mode | images/s (median) | fastest call (ms) | slowest call (ms, median over rounds) |")
    print("|---|---:|---:|---:|")
    for mode, f in figures.items():
        print(f"| {mode} | {statistics.median(x['throughput'] for x in f):.1f} | "
              f"{statistics.median(x['fastest_ms'] for x in f):.1f} | {statistics.median(x['slowest_ms'] for x in f):.0f} |")
    print(f"settled/plain, paired: {spread(ratios)}; objects frozen: {figures['settled'][0]['frozen']}")


if __name__ == "__main__":
    main()
