"""How one executor's call runs right after another's, in one process: the situation of auto's timings.

Builds the harness's ``inferenceModel`` with each executor named, then for every ordered pair (A, B) makes
one call of A and times one call of B, the pairs in turn and in reverse every repetition. The baseline
of each column is B right after B; the table prints each median in ms and its ratio to that baseline.
``--settle`` waits as auto does before each timing (the process idle for two 5 ms windows), ``--warm``
adds an untimed call of B before the timed one.

    python3 benchmarks/after_call.py --model resnet18 --batch-size 16 --repeats 8 [--settle] [--warm]
"""

import argparse
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from cnns.utils.argparser import add_debug_option, new_parser
from cnns.utils.errors import exit_on_usage_error
from cnns.utils.validation import at_least, known_models

EXECUTORS = {"inductor": ("inductor", 1), "onnxruntime": ("onnxruntime", 1),
             "openvino-x2": ("openvino", 2), "openvino": ("openvino", 1)}


def build(name: str, batch: int, executors: Sequence[str]) -> Dict[str, Callable[[], Any]]:
    """One warmed-up call per executor, all on the same model and input."""
    import torch
    import portable_poptorch as poptorch
    from cnns import models
    from cnns.utils.cpu_threads import visible_cores
    torch.set_num_threads(visible_cores())
    model = models.get_model(name, pretrained=False, log=lambda _: None).eval()
    size = models.model_input_size(name)
    x = torch.randn(batch, 3, size, size)
    calls: Dict[str, Callable[[], Any]] = {}
    for label in executors:
        executor, streams = EXECUTORS[label]
        opts = poptorch.Options()
        opts.Portable.executor(executor)
        opts.Portable.executorStreams(streams)
        compiled = poptorch.inferenceModel(model, opts)
        calls[label] = lambda m=compiled: m(x)
        for _ in range(5):
            calls[label]()
    return calls


def measure(calls: Dict[str, Callable[[], Any]], repeats: int, settle: bool, warm: bool) -> Dict[Tuple[str, str], float]:
    """Median seconds of one call of B right after one call of A, for every ordered pair."""
    from portable_poptorch.compilers.selection import _settle
    pairs = [(a, b) for a in calls for b in calls]
    times: Dict[Tuple[str, str], List[float]] = {p: [] for p in pairs}
    for r in range(repeats):
        for a, b in (pairs if r % 2 == 0 else pairs[::-1]):
            calls[a]()
            if settle:
                _settle()
            if warm:
                calls[b]()
            start = time.perf_counter()
            calls[b]()
            times[(a, b)].append(time.perf_counter() - start)
    return {p: statistics.median(v) for p, v in times.items()}


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = new_parser(__doc__, raw_description=True)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--executors", nargs="+", choices=list(EXECUTORS), default=list(EXECUTORS))
    p.add_argument("--settle", action="store_true", help="Wait for an idle process before each timing, as auto does")
    p.add_argument("--warm", action="store_true", help="An untimed call of B before the timed one")
    add_debug_option(p)
    args = p.parse_args(argv)
    at_least(args, 1, ("batch_size", "repeats"))
    known_models(args, "model")
    return args


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_arguments(argv)
    calls = build(args.model, args.batch_size, args.executors)
    medians = measure(calls, args.repeats, args.settle, args.warm)
    print(f"{args.model}, batch {args.batch_size}: ms of one call of B (column) right after one of A (row); "
          f"(ratio to B after B){', settled' if args.settle else ''}{', warmed' if args.warm else ''}")
    print("| after A \\ B | " + " | ".join(calls) + " |")
    print("|---|" + "---:|" * len(calls))
    for a in calls:
        print(f"| {a} | " + " | ".join(f"{medians[(a, b)] * 1e3:.1f} ({medians[(a, b)] / medians[(b, b)]:.2f})"
                                        for b in calls) + " |")


if __name__ == "__main__":
    main()
