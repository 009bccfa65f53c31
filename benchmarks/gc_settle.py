"""The measured calls with and without gc_settle (collect, then freeze start-up objects), each in a
fresh process that imports what run_benchmark.py imports, order alternating.

A child compiles the model through portable_poptorch's inferenceModel with the chosen executor, settles
or not, then times ``--calls`` calls one by one and prints images/s (all images / all call time, as
run_benchmark.py) and its slowest call. The paired ratio settled/plain is printed (> 1.0 = settling helps).

    python3 benchmarks/gc_settle.py --model resnet18 --batch-size 1 --executor onnxruntime --rounds 7
"""

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from cnns.utils.argparser import new_parser
from cnns.utils.errors import exit_on_usage_error, run_child
from cnns.utils.validation import at_least, known_models
from portable_poptorch.compilers import EXECUTORS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import _model_and_input, spread  # noqa: E402  (the sibling script's model and paired spread)


def child(name: str, batch: int, executor: str, calls: int, settle: bool) -> Dict[str, Any]:
    from cnns.inference import run_benchmark  # noqa: F401  (the harness's imports: the collector tracks as much)
    import torch
    import portable_poptorch as poptorch
    from cnns.utils import gc_settle
    from cnns.utils.cpu_threads import configure_cpu_threads
    configure_cpu_threads()
    model, x = _model_and_input(name, batch)
    opts = poptorch.Options()
    opts.Portable.executor(executor)
    harness = poptorch.inferenceModel(model, opts)
    harness.compile(x)
    frozen = gc_settle.settle()["gc_frozen_objects"] if settle else 0
    times: List[float] = []
    for _ in range(calls + 2):
        start = time.perf_counter()
        harness(x)
        times.append(time.perf_counter() - start)
    times = times[2:]   # run_benchmark.py's two warm-up calls
    return {"throughput": batch * len(times) / sum(times), "slowest_ms": max(times) * 1e3,
            "median_ms": statistics.median(times) * 1e3, "frozen": frozen, "torch": torch.__version__}


def measure(mode: str, args: argparse.Namespace) -> Dict[str, Any]:
    """One child process of ``mode`` (settled or plain); its figures."""
    cmd = [sys.executable, __file__, "--child", mode, "--model", args.model, "--batch-size",
           str(args.batch_size), "--executor", args.executor, "--calls", str(args.calls)]
    out = run_child(cmd, f"The {mode} measurement")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = new_parser(__doc__, raw_description=True)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--executor", choices=EXECUTORS, default="onnxruntime")
    p.add_argument("--calls", type=int, default=200, help="Measured calls per process")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--child", choices=["settled", "plain"], default=None, help=argparse.SUPPRESS)
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
    for r in range(args.rounds):
        for mode in (["settled", "plain"] if r % 2 == 0 else ["plain", "settled"]):
            figures[mode].append(measure(mode, args))
        print(f"round {r + 1}: " + ", ".join(f"{m} {f[-1]['throughput']:.1f} img/s (slowest call "
                                             f"{f[-1]['slowest_ms']:.0f} ms)" for m, f in figures.items()), flush=True)
    ratios = [s["throughput"] / p["throughput"] for s, p in zip(figures["settled"], figures["plain"])]
    print(f"| mode | images/s (median) | median call (ms) | slowest call (ms, median over rounds) |")
    print("|---|---:|---:|---:|")
    for mode, f in figures.items():
        print(f"| {mode} | {statistics.median(x['throughput'] for x in f):.1f} | "
              f"{statistics.median(x['median_ms'] for x in f):.1f} | {statistics.median(x['slowest_ms'] for x in f):.0f} |")
    print(f"settled/plain, paired: {spread(ratios)}; objects frozen: {figures['settled'][0]['frozen']}")


if __name__ == "__main__":
    main()
