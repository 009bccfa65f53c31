"""run_benchmark.py against the same network run directly by ONNX Runtime, OpenVINO, torch.compile and
eager PyTorch, each engine in its own process, the order of engines alternating between rounds.

Each figure is images/s of synchronous calls on one input batch made once in memory (run_benchmark.py
with ``--data synthetic``), fp32, random weights; run_benchmark.py runs with its default options, so
every round's ``--executor auto`` times the executors afresh, as a user's run without an executable
cache does (``--share-cache`` gives all rounds of a row one cache folder instead, so the first round's
choice is reused, as with ``--model-cache-path``); the median over the rounds is reported with the ratio
run_benchmark / fastest peer, and the median peak RSS of each engine's process. Beside that ratio of
medians stands the paired one: in each round the harness's figure over the fastest peer's figure of
the same round, their median and interquartile range. Where the machine's speed drifts between rounds
the pairs cancel the drift that both engines of a round share, and the range says whether a ratio's
distance from 1 is resolved at all.

    python3 benchmarks/peers.py --models resnet18 resnet50 efficientnet-b0 mobilenet-v3-large \\
        --batch-sizes 1 16 --rounds 5 --seconds 3

Where the machine's speed drifts between runs by more than the margins of interest, ``--in-process``
builds the harness's ``inferenceModel`` (the executor run_benchmark.py would use) and every peer in one
process and alternates rounds of calls between them, so a slow spell lands on all of them alike. That
measures the executor and its call path, not run_benchmark.py's process set-up, and gives no peak RSS.
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
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from cnns.utils.argparser import add_debug_option, new_parser
from cnns.utils.errors import exit_on_usage_error, run_child
from cnns.utils.metrics import spread
from cnns.utils.validation import at_least, check_finite, in_range, known_models
from portable_poptorch.compilers import EXECUTORS
from portable_poptorch.compilers.selection import label

REPO = pathlib.Path(__file__).resolve().parents[1]
PEERS = ("onnxruntime", "openvino", "torch.compile", "eager")
MEASURED = "run_benchmark measured calls"
RUNTIME_OF_EXECUTOR = {"onnxruntime": "onnxruntime", "openvino": "openvino", "inductor": "torch.compile", "eager": "eager"}


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
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        with tempfile.TemporaryDirectory(prefix="peers_onnx_") as folder, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = os.path.join(folder, "model.onnx")
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17, input_names=["x"])
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        return lambda: session.run(None, {"x": xn})
    if engine == "openvino":
        from portable_poptorch.compilers.openvino_runtime import without_telemetry
        with warnings.catch_warnings(), without_telemetry():   # its forked senders can hang this process
            import openvino as ov
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


def in_process(name: str, batch: int, rounds: int, seconds: float, executor: str, peers: Sequence[str]) -> Dict[str, Any]:
    """Median images/s of the harness's inferenceModel and of each peer, all in this process, rounds of
    about ``seconds`` each alternating in order; also the executor the harness ran."""
    import torch
    import portable_poptorch as poptorch
    from cnns.utils.cpu_threads import visible_cores
    torch.set_num_threads(visible_cores())
    model, x = _model_and_input(name, batch)
    opts = poptorch.Options()
    opts.Portable.executor(executor)
    harness = poptorch.inferenceModel(model, opts)
    harness(x)   # compiled first, so that auto times its executors before any peer exists
    report = harness.executorReport()
    calls: Dict[str, Callable[[], Any]] = {"run_benchmark": lambda: harness(x)}
    calls.update({engine: _peer_call(engine, name, batch) for engine in peers})
    figures: Dict[str, List[float]] = {engine: [] for engine in calls}

    def rate(call: Callable[[], Any]) -> float:
        done, start = 0, time.perf_counter()
        while done < 3 or time.perf_counter() - start < seconds:
            call()
            done += 1
        return batch * done / (time.perf_counter() - start)
    for call in calls.values():
        rate(call)   # warm-up round: each runtime's first calls run below its steady state
    for r in range(rounds):
        order = list(calls) if r % 2 == 0 else list(reversed(list(calls)))
        for engine in order:
            figures[engine].append(rate(calls[engine]))
    medians = {engine: statistics.median(values) for engine, values in figures.items()}
    return {"throughput": medians, "rounds": figures, "executor": report["executor"], "streams": report["streams"]}


def run_engine(engine: str, name: str, batch: int, seconds: float, cache: Optional[str], iterations: Dict[Any, int],
               executor: str = "auto") -> Dict[str, Any]:
    """One engine's figures from its own process; run_benchmark.py uses ``cache`` as its executable cache
    when given, and none otherwise (not one the environment names either)."""
    # every engine picks its threads alike
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "POPTORCH_CACHE_DIR")}
    if engine == "run_benchmark":
        with tempfile.TemporaryDirectory() as logs:
            calls = iterations.get((name, batch), 5)
            cmd = [sys.executable, str(REPO / "inference" / "run_benchmark.py"), "--data", "synthetic", "--model", name,
                   "--batch-size", str(batch), "--precision", "32.32", "--random-weights", "--iterations", str(calls),
                   "--executor", executor, "--log-path", logs]
            run_child(cmd, f"run_benchmark.py ({name}, batch {batch})", env=dict(env, POPTORCH_CACHE_DIR=cache) if cache else env)
            folder = next(pathlib.Path(logs).iterdir())
            results = json.loads((folder / "results.json").read_text())
            return {"throughput": results["metrics"]["throughput_mean"], "peak_rss_mb": results["process_max_rss_mb"],
                    "measured_rss_mb": results["peak_host_rss_mb"],
                    "executor": label(results["executor"], int(results.get("executor_streams") or 1))}
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
    p.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS), help="Peers to run")
    p.add_argument("--executor", choices=EXECUTORS, default="auto",
                   help="The harness's --executor (auto is run_benchmark.py's default)")
    p.add_argument("--share-cache", action="store_true",
                   help="One executable cache folder for all rounds of a row: auto's first-round choice is reused")
    p.add_argument("--in-process", action="store_true",
                   help="Run the harness's inferenceModel and the peers in this one process, alternating rounds")
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
    if args.in_process:
        print_in_process(args)
        return
    engines = ["run_benchmark"] + list(args.peers)
    rows = []
    with tempfile.TemporaryDirectory(prefix="peers_cache_") as folder:   # removed when the run ends
        iterations: Dict[Any, int] = {}
        for name in args.models:
            for batch in args.batch_sizes:
                cache = os.path.join(folder, f"{name}_{batch}") if args.share_cache else None
                figures: Dict[str, List[Dict[str, Any]]] = {e: [] for e in engines}
                for r in range(args.rounds):
                    peers_first = list(args.peers) + ["run_benchmark"]
                    order = peers_first if r % 2 == 0 else list(reversed(peers_first))
                    for engine in order:
                        figures[engine].append(run_engine(engine, name, batch, args.seconds, cache, iterations,
                                                          args.executor))
                rates = {e: [f["throughput"] for f in figures[e]] for e in engines}
                med = {e: statistics.median(rates[e]) for e in engines}
                rss = {e: statistics.median(f["peak_rss_mb"] for f in figures[e]) for e in engines}
                rss[MEASURED] = statistics.median(f["measured_rss_mb"] for f in figures["run_benchmark"])
                executors = "/".join(sorted({f["executor"] for f in figures["run_benchmark"]}))
                rows.append(Row(name, batch, med, rates, executors, rss))
                print_row(rows[-1], args.peers)
    print_table("run_benchmark", rows, args.peers)
    print()
    print_memory(rows, engines)


def print_memory(rows: List["Row"], engines: Sequence[str]) -> None:
    """Median peak RSS per process and, for run_benchmark.py, that of its measured calls (compiling
    excluded), with its ratio to the eager loop's process peak where eager ran (the issue's bound: 1.25)."""
    columns = ["run_benchmark", MEASURED] + [e for e in engines if e != "run_benchmark"]
    eager = "eager" in engines
    print("Median peak RSS (MB) per process (run_benchmark.py's measured calls apart):")
    print("| model | batch | " + " | ".join(columns) + (" | measured calls / eager |" if eager else " |"))
    print("|---|---:|" + "---:|" * (len(columns) + eager))
    for row in rows:
        ratio = f" | {row.peak_rss_mb[MEASURED] / row.peak_rss_mb['eager']:.2f}" if eager else ""
        print(f"| {row.name} | {row.batch} | " + " | ".join(f"{row.peak_rss_mb[c]:.0f}" for c in columns) + ratio + " |")


def print_in_process(args: argparse.Namespace) -> None:
    """The --in-process table: every engine in this process, one model and batch size at a time."""
    rows = []
    for name in args.models:
        for batch in args.batch_sizes:
            result = in_process(name, batch, args.rounds, args.seconds, args.executor, args.peers)
            executors = label(result["executor"], result["streams"])
            rows.append(Row(name, batch, result["throughput"], result["rounds"], executors))
            print_row(rows[-1], args.peers)
    print_table("inferenceModel, in process", rows, args.peers)


class Row(NamedTuple):
    """One model and batch size: median images/s and each round's figure per engine, the harness's executor."""

    name: str
    batch: int
    median: Dict[str, float]
    rounds: Dict[str, List[float]]
    executors: str
    peak_rss_mb: Optional[Dict[str, float]] = None


def paired_ratios(rounds: Dict[str, List[float]], peer: str) -> List[float]:
    """The harness's figure over ``peer``'s in each round (the two ran minutes apart at most)."""
    return [h / p for h, p in zip(rounds["run_benchmark"], rounds[peer])]


def comparison(row: Row, peers: Sequence[str]) -> Tuple[str, str, str]:
    """The fastest peer by median, the harness's ratio of medians to it, and the paired ratio's spread."""
    best = max(peers, key=lambda e: row.median[e])
    return best, f"{row.median['run_benchmark'] / row.median[best]:.3f}", spread(paired_ratios(row.rounds, best))


def own_runtime(row: Row, peers: Sequence[str]) -> str:
    """The paired ratio to the peer that runs what the harness ran (its overhead, apart from auto's choice
    among runtimes that tie); '-' when the rounds used several executors or that peer did not run."""
    peer = RUNTIME_OF_EXECUTOR.get(row.executors.split(" ")[0])   # "a/b" (several executors) maps to none
    return spread(paired_ratios(row.rounds, peer)) if peer in peers else "-"


def print_row(row: Row, peers: Sequence[str]) -> None:
    med = row.median
    best, ratio, paired = comparison(row, peers)
    print(f"{row.name} bs={row.batch}: " + ", ".join(f"{e} {med[e]:.1f}" for e in ["run_benchmark", *peers])
          + f" | run_benchmark/{best} = {ratio}, paired {paired} (executor {row.executors}; paired to the same "
          f"runtime bare {own_runtime(row, peers)})", flush=True)


def print_table(harness: str, rows: List[Row], peers: Sequence[str]) -> None:
    """The throughput table in Markdown: the harness, each peer, the fastest peer, the ratio of medians
    and the paired ratio (median and interquartile range of the per-round ratios)."""
    print()
    print(f"| model | batch | {harness} (executor) | " + " | ".join(peers)
          + " | fastest peer | ratio | paired ratio (IQR) | paired to its own runtime (IQR) |")
    print("|---|---:|---:|" + "---:|" * len(peers) + "---|---:|---:|---:|")
    for row in rows:
        med = row.median
        best, ratio, paired = comparison(row, peers)
        print(f"| {row.name} | {row.batch} | {med['run_benchmark']:.1f} ({row.executors}) | "
              + " | ".join(f"{med[e]:.1f}" for e in peers) + f" | {best} | {ratio} | {paired} | {own_runtime(row, peers)} |")


if __name__ == "__main__":
    main()
