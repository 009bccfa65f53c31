"""Harness overhead: run_benchmark.py's synthetic-data throughput against a hand-written torch loop.

Both run the same model, batch, precision and memory format in this process, interleaved with the
order alternating, on the same device; the ratio harness/hand is printed per model (1.0 = no overhead)
for the median runs and for the best runs (the best run is the least disturbed by other load).

    python3 benchmarks/inference_overhead.py --models resnet18 resnet50 --batch-size 8
"""

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from typing import List, Optional, Sequence

import torch

from portable_poptorch.device import device_name, synchronize
from cnns import models
from cnns.inference import run_benchmark
from cnns.utils.argparser import add_debug_option, new_parser
from cnns.utils.backend import check_device
from cnns.utils.errors import exit_on_usage_error
from cnns.utils.host_memory import MODES, configure_host_allocator
from cnns.utils.validation import at_least, known_models


def hand_loop(model_name: str, batch: int, steps: int, calls: int, device: torch.device, dtype: torch.dtype,
              channels_last: bool) -> float:
    """images/s of a plain eval loop: input made once on the device, ``steps`` forwards per timed call."""
    model = models.get_model(model_name, pretrained=False, log=lambda _: None).eval().to(device, dtype)
    size = models.model_input_size(model_name)
    x = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            for _ in range(steps):
                model(x)
            synchronize(device)
        elapsed = time.perf_counter() - start
    return batch * steps * calls / elapsed


def harness(model_name: str, batch: int, steps: int, calls: int, device: str, precision: str, fmt: str,
            allocator: str) -> float:
    with tempfile.TemporaryDirectory() as logs, contextlib.redirect_stdout(io.StringIO()):
        results = run_benchmark.main([
            "--data", "synthetic", "--model", model_name, "--batch-size", str(batch),
            "--device-iterations", str(steps), "--iterations", str(calls), "--warmup-iterations", "1",
            "--precision", precision, "--random-weights", "--device", device, "--memory-format", fmt,
            "--host-allocator", allocator, "--log-path", logs])
    return results["metrics"]["throughput_mean"]


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The options, every value checked before the host allocator is set or a model is built."""
    p = new_parser(__doc__, raw_description=True)
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device-iterations", type=int, default=4)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--repeats", type=int, default=6, help="Interleaved repeats (order alternates); medians are compared")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="32.32", choices=["32.32", "16.16"])
    p.add_argument("--host-allocator", choices=MODES, default="resident",
                   help="Host allocator for both sides (set once for the process, so the hand loop runs under "
                        "the same one as the harness)")
    add_debug_option(p)
    args = p.parse_args(argv)
    at_least(args, 1, ("batch_size", "device_iterations", "iterations", "repeats"))
    check_device(args.device)
    known_models(args, "models")
    return args


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_arguments(argv)
    device = torch.device(args.device)
    allocator = configure_host_allocator(args.host_allocator, device.type)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    dtype = torch.float32 if args.precision == "32.32" else torch.float16
    fmt = "channels_last" if device.type == "cuda" else "contiguous"
    print(f"device: {device_name(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"batch {args.batch_size}, device iterations {args.device_iterations}, precision {args.precision}, {fmt}; "
          f"host allocator for both: {allocator['mode']}")
    for name in args.models:
        hand: List[float] = []
        tool: List[float] = []
        for r in range(args.repeats):
            runs = [lambda: hand.append(hand_loop(name, args.batch_size, args.device_iterations, args.iterations,
                                                  device, dtype, fmt == "channels_last")),
                    lambda: tool.append(harness(name, args.batch_size, args.device_iterations, args.iterations,
                                                args.device, args.precision, fmt, args.host_allocator))]
            for run in (runs if r % 2 == 0 else runs[::-1]):  # alternate the order so drift cancels
                run()
        h, t = statistics.median(hand), statistics.median(tool)
        print(f"{name}: hand loop {h:.2f} img/s, run_benchmark {t:.2f} img/s (medians), ratio {t / h:.3f}; "
              f"best runs ratio {max(tool) / max(hand):.3f} "
              f"(runs: hand {', '.join(f'{v:.1f}' for v in hand)}; harness {', '.join(f'{v:.1f}' for v in tool)})")


if __name__ == "__main__":
    main()
