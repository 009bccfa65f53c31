"""How near this CPU's fp32 arithmetic peak a network runs under ONNX Runtime: the room any executor has.

In one process: the baseline is the fp32 rate of a large matrix product (``torch.mm`` of 2048 x 2048, one
intra-op thread per core, median of several). The network is exported as the onnxruntime executor exports
it (static shape) and run by ONNX Runtime with one thread per core; its own profiler gives the time per
operator type, and forward hooks on the torch model count the multiply-adds of its convolutions and
linear layers. Printed: each operator type's share of the call, the rate of the convolutions and of the
whole call in GFLOP/s (2 per multiply-add), each as a ratio to the matrix-product rate. A ratio near or
above 1 says the network is bound by the arithmetic of its convolutions, where another runtime or
executor can only tie (unless it does fewer operations); a low one says where time goes instead.

    python3 benchmarks/conv_bound.py --model resnet18 --batch-size 16 --calls 8
"""

import argparse
import collections
import json
import os
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from cnns.utils.argparser import add_debug_option, new_parser
from cnns.utils.errors import exit_on_usage_error
from cnns.utils.validation import at_least, known_models

GEMM_SIZE = 2048
GEMM_CALLS = 7


def median_seconds(call: Callable[[], Any], calls: int, warmup: int = 2) -> float:
    """Median seconds of ``calls`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times: List[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_rate(threads: int) -> float:
    """GFLOP/s of an fp32 ``torch.mm`` of GEMM_SIZE squared: the median of GEMM_CALLS timed calls."""
    import torch
    torch.set_num_threads(threads)
    a, b = torch.randn(GEMM_SIZE, GEMM_SIZE), torch.randn(GEMM_SIZE, GEMM_SIZE)
    return 2 * GEMM_SIZE ** 3 / median_seconds(lambda: torch.mm(a, b), GEMM_CALLS) / 1e9


def multiply_adds(model: Any, x: Any) -> Dict[str, int]:
    """Multiply-adds of one forward pass, for convolutions ('conv') and linear layers ('linear')."""
    import torch
    counts = {"conv": 0, "linear": 0}

    def conv_hook(module: Any, _: Any, out: Any) -> None:
        kh, kw = module.kernel_size
        counts["conv"] += out.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: Any, _: Any, out: Any) -> None:
        counts["linear"] += out.numel() * module.in_features
    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return counts


def ort_profile(name: str, batch: int, calls: int, threads: int) -> Tuple[Dict[str, float], float, Dict[str, int]]:
    """ONNX Runtime's milliseconds per call by operator type (its profiler), the wall-clock milliseconds per
    call of an unprofiled session (median of ``calls``), and the network's multiply-adds."""
    import onnxruntime as ort
    import torch
    from cnns import models
    from portable_poptorch.compilers.onnx_runtime import export_onnx
    model = models.get_model(name, pretrained=False, log=lambda _: None).eval()
    size = models.model_input_size(name)
    x = torch.randn(batch, 3, size, size)
    macs = multiply_adds(model, x)
    with tempfile.TemporaryDirectory(prefix="conv_bound_") as folder:
        path = os.path.join(folder, "model.onnx")
        export_onnx(model, (x,), path, free_batch=False)

        def session(profile: bool) -> Any:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.enable_profiling = profile
            options.profile_file_prefix = os.path.join(folder, "profile")
            return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = {"input_0": x.numpy()}
        plain = session(False)
        wall_s = median_seconds(lambda: plain.run(None, feed), calls)
        del plain
        profiled = session(True)
        for _ in range(2 + calls):
            profiled.run(None, feed)
        with open(profiled.end_profiling()) as f:
            events = json.load(f)
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"][-calls:]
    by_op: Dict[str, float] = collections.defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time") and any(
                run["ts"] <= event["ts"] <= run["ts"] + run["dur"] for run in runs):
            by_op[event["args"].get("op_name", "?")] += event["dur"] / 1e3 / len(runs)
    return dict(by_op), wall_s * 1e3, macs


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = new_parser(__doc__, raw_description=True)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--calls", type=int, default=8, help="Timed and profiled calls of the network")
    add_debug_option(p)
    args = p.parse_args(argv)
    at_least(args, 1, ("batch_size", "calls"))
    known_models(args, "model")
    return args


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_arguments(argv)
    from cnns.utils.cpu_threads import visible_cores
    threads = visible_cores()
    by_op, wall_ms, macs = ort_profile(args.model, args.batch_size, args.calls, threads)
    peak = gemm_rate(threads)
    conv_ms = sum(ms for op, ms in by_op.items() if "Conv" in op)
    node_ms = sum(by_op.values())
    conv_rate = 2 * macs["conv"] / (conv_ms / 1e3) / 1e9 if conv_ms else float("nan")
    call_rate = 2 * (macs["conv"] + macs["linear"]) / (wall_ms / 1e3) / 1e9
    print(f"{args.model}, batch {args.batch_size}, {threads} threads: ONNX Runtime {wall_ms:.2f} ms per call "
          f"({args.batch_size / wall_ms * 1e3:.1f} img/s); under its profiler, which adds its own time, the "
          f"operators take {node_ms:.2f} ms:")
    for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"  {op:24s} {ms:8.2f} ms  {ms / node_ms:6.1%}")
    print(f"Baseline, fp32 matrix product {GEMM_SIZE}x{GEMM_SIZE}: {peak:.0f} GFLOP/s")
    print(f"Convolutions: {macs['conv'] / 1e9:.2f} G multiply-adds in {conv_ms:.2f} ms = {conv_rate:.0f} GFLOP/s, "
          f"{conv_rate / peak:.2f}x the baseline")
    print(f"Whole call: {(macs['conv'] + macs['linear']) / 1e9:.2f} G multiply-adds in {wall_ms:.2f} ms = "
          f"{call_rate:.0f} GFLOP/s, {call_rate / peak:.2f}x the baseline")


if __name__ == "__main__":
    main()
