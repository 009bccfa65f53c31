"""run_benchmark.py against the same network run directly by ONNX Runtime, OpenVINO, torch.compile and
eager PyTorch, each engine in its own process, the order of engines alternating between rounds.

Each figure is images/s of synchronous calls on one input batch made once in memory (run_benchmark.py
with ``--data synthetic``), fp32, random weights; the median over the rounds is reported with the ratio
run_benchmark / fastest peer, and the median peak RSS of each engine's process.

    python3 benchmarks/peers.py --models resnet18 resnet50 efficientnet-b0 mobilenet-v3-large \\
        --batch-sizes 1 16 --rounds 5 --seconds 3
"""

import argparse
import json
import math
import os
import pathlib
import resource
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence

from cnns.utils.argparser import add_debug_option, new_parser
from cnns.utils.errors import exit_on_usage_error, run_child
from cnns.utils.validation import at_least, check_finite, in_range, known_models

REPO = pathlib.Path(__file__).resolve().parents[1]
PEERS = ("onnxruntime", "openvino", "torch.compile", "eager")
ENGINES = ("run_benchmark",) + PEERS


def _model_and_input(name: str, batch: int) -> Any:
    import torch
    from cnns import models
    model = models.get_model(name, pretrained=False, log=lambda _: None).eval()
    size = models.model_input_size(name)
    return model, torch.randn(batch, 3, size, size)


def _peer_call(engine: str, name: str, batch: int) -> Callable[[], Any]:
    """A no-argument callable running one batch through ``engine`` the way its users write it."""
    import torch
    threads = torch.get_num_threads()
    model, x = _model_and_input(name, batch)
    if engine == "eager":
        def call() -> Any:
            with torch.inference_mode():
                return model(x)
        return call
    if engine == "torch.compile":
        import torch._inductor.config as inductor_config
        inductor_config.freezing = True
        model = model.to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        compiled = torch.compile(model)

        def call() -> Any:
            with torch.inference_mode():
                return compiled(xc)
        return call
    if engine == "onnxruntime":
        import onnxruntime as ort
        path = os.path.join(tempfile.mkdtemp(), "model.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17, input_names=["x"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        return lambda: session.run(None, {"x": xn})
    if engine == "openvino":
        import openvino as ov
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = ov.convert_model(model, example_input=x)
        converted.reshape(list(x.shape))  # static input shape: the CPU plugin picks kernels for it
        compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                              "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()
        xn = x.numpy()
        return lambda: request.infer({0: xn})
    raise ValueError(engine)


def child(engine: str, name: str, batch: int, seconds: float) -> Dict[str, float]:
    """Runs in its own process: warm up, then time calls for about ``seconds``. Every engine gets one
    intra-op thread per visible core, as run_benchmark.py gives a single instance."""
    import torch
    from cnns.utils.cpu_threads import visible_cores
    torch.set_num_threads(visible_cores())
    call = _peer_call(engine, name, batch)
    call()
    start = time.perf_counter()
    call()
    per_call = time.perf_counter() - start
    calls = max(3, int(seconds / max(per_call, 1e-4)))
    start = time.perf_counter()
    for _ in range(calls):
        call()
    elapsed = time.perf_counter() - start
    return {"throughput": batch * calls / elapsed, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_engine(engine: str, name: str, batch: int, seconds: float, cache: str, iterations: Dict[Any, int]) -> Dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # every engine picks its threads alike
    if engine == "run_benchmark":
        with tempfile.TemporaryDirectory() as logs:
            calls = iterations.get((name, batch), 5)
            cmd = [sys.executable, str(REPO / "inference" / "run_benchmark.py"), "--data", "synthetic", "--model", name,
                   "--batch-size", str(batch), "--precision", "32.32", "--random-weights", "--iterations", str(calls),
                   "--log-path", logs]
            run_child(cmd, f"run_benchmark.py ({name}, batch {batch})", env=dict(env, POPTORCH_CACHE_DIR=cache))
            folder = next(pathlib.Path(logs).iterdir())
            results = json.loads((folder / "results.json").read_text())
            return {"throughput": results["metrics"]["throughput_mean"], "peak_rss_mb": results["process_max_rss_mb"],
                    "executor": results["executor"]}
    cmd = [sys.executable, __file__, "--child", engine, "--models", name, "--batch-sizes", str(batch),
           "--seconds", str(seconds)]
    out = run_child(cmd, f"The {engine} measurement ({name}, batch {batch})", env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    iterations[(name, batch)] = max(3, int(seconds * result["throughput"] / batch))
    return result


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The options, every value checked before an engine starts (a child process checks its own again)."""
    p = new_parser(__doc__, raw_description=True)
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "efficientnet-b0", "mobilenet-v3-large"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0, help="Measured seconds per engine and round")
    p.add_argument("--child", choices=PEERS, default=None, help=argparse.SUPPRESS)
    add_debug_option(p)
    args = p.parse_args(argv)
    check_finite(args)
    at_least(args, 1, ("batch_sizes", "rounds"))
    in_range(args, "seconds", 0.0, math.inf, low_open=True, high_open=True)
    known_models(args, "models")
    return args


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_arguments(argv)
    if args.child:
        print(json.dumps(child(args.child, args.models[0], args.batch_sizes[0], args.seconds)))
        return
    from portable_poptorch.device import device_name
    import torch
    print(f"CPU: {device_name(torch.device('cpu'))}, {os.cpu_count()} cores, torch {torch.__version__}")
    rows = []
    cache = tempfile.mkdtemp(prefix="peers_cache_")
    iterations: Dict[Any, int] = {}
    for name in args.models:
        for batch in args.batch_sizes:
            figures: Dict[str, List[Dict[str, Any]]] = {e: [] for e in ENGINES}
            for r in range(args.rounds):
                peers_first = list(PEERS) + ["run_benchmark"]
                order = peers_first if r % 2 == 0 else list(reversed(peers_first))
                for engine in order:
                    figures[engine].append(run_engine(engine, name, batch, args.seconds, cache, iterations))
            med = {e: statistics.median(f["throughput"] for f in figures[e]) for e in ENGINES}
            rss = {e: statistics.median(f["peak_rss_mb"] for f in figures[e]) for e in ENGINES}
            best_peer = max(PEERS, key=lambda e: med[e])
            executors = sorted({f["executor"] for f in figures["run_benchmark"]})
            rows.append((name, batch, med, rss, best_peer, executors))
            print(f"{name} bs={batch}: " + ", ".join(f"{e} {med[e]:.1f}" for e in ENGINES)
                  + f" | run_benchmark/{best_peer} = {med['run_benchmark'] / med[best_peer]:.3f} "
                  f"(executor {'/'.join(executors)})", flush=True)
    print()
    print("| model | batch | run_benchmark (executor) | onnxruntime | openvino | torch.compile | eager | fastest peer | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for name, batch, med, rss, best, executors in rows:
        print(f"| {name} | {batch} | {med['run_benchmark']:.1f} ({'/'.join(executors)}) | "
              + " | ".join(f"{med[e]:.1f}" for e in PEERS)
              + f" | {best} | {med['run_benchmark'] / med[best]:.3f} |")
    print()
    print("Median peak RSS (MB) per process:")
    print("| model | batch | " + " | ".join(ENGINES) + " |")
    print("|---|---:|" + "---:|" * len(ENGINES))
    for name, batch, med, rss, best, executors in rows:
        print(f"| {name} | {batch} | " + " | ".join(f"{rss[e]:.0f}" for e in ENGINES) + " |")


if __name__ == "__main__":
    main()
