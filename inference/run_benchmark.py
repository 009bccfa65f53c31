"""CNN inference throughput/latency benchmark, PopTorch semantics on IPU, CUDA or CPU."""

import argparse
import os
import sys
import time
from contextlib import nullcontext
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from cnns.utils.host_memory import relaunch_with_huge_pages

if __name__ == "__main__":
    relaunch_with_huge_pages()   # before torch is imported: the restart then costs ~0.1 s

import torch
from tqdm import tqdm

from cnns import datasets
from cnns.utils import distributed, metrics, sweep
from cnns.utils.argparser import add_common_options, executor_streams, new_parser, parse_with_config
from cnns.utils.backend import Backend, resolve_device, select_backend
from cnns.utils.backend_report import report_backend
from cnns.utils import gc_settle, peak_memory
from cnns.utils.errors import UsageError, exit_on_usage_error
from cnns.utils.executor_report import executor_report, log_compiled
from cnns.utils.ipu_settings import inference_options, num_stages
from cnns.utils.logger import RunLogger
from cnns.utils.profiling import torch_trace
from cnns.utils.model_setup import (check_pipeline_splits, for_executor, input_preprocessing, input_size,
                                    prepare_model)

CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs.yml")


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = new_parser("CNN inference benchmark (PopTorch on IPU; portable_poptorch on CUDA/CPU)")
    add_common_options(parser)
    for action in parser._actions:
        if any(flag in sweep.SWEEP_FLAGS for flag in action.option_strings):
            action.help += "; several values run every combination in turn (a sweep: table, sweep.csv, sweep.png)"
    parser.add_argument("--data", choices=["real", "synthetic", "generated", "imagenet"], default="real",
                        help="real: sample images in data/images; generated: random host data sent every step; "
                             "synthetic: data made on the device, no host-device IO; imagenet: validation folder")
    datasets.add_data_options(parser)
    parser.add_argument("--iterations", type=int, default=100, help="Measured host calls (program iterations)")
    parser.add_argument("--warmup-iterations", type=int, default=2,
                        help="Calls after compilation run before measuring, excluded from the figures")
    parser.add_argument("--executor-streams", type=executor_streams, default=None, metavar="auto|N",
                        help="Off IPU, concurrent sub-batches per micro-batch for the onnxruntime and openvino "
                             "executors, each on its share of the threads: auto (default) times one stream and one "
                             "per thread and keeps the faster; N asks for N (at most the micro-batch)")
    parser.add_argument("--random-weights", action="store_true", help="Use random weights, skip the pretrained download")
    args = parse_with_config(parser, CONFIG_FILE, argv)
    check_benchmark_input(args)
    return args


def check_benchmark_input(args: argparse.Namespace) -> None:
    """What the run reads and the pipeline rule, before a model is built or a log folder is made."""
    if args.data == "imagenet":
        if not args.imagenet_data_path:
            raise UsageError("--data imagenet needs --imagenet-data-path: a folder with validation/ class "
                             "sub-folders, or a WebDataset folder from datasets/create_webdataset.py.")
        datasets.check_imagenet_path(args.imagenet_data_path, train=False)
    check_pipeline_splits(args)
    stages = num_stages(args)
    if args.device_iterations < stages and resolve_device(args.device) != "ipu":
        raise UsageError(f"--pipeline-splits make {stages} pipeline stages but --device-iterations is "
                         f"{args.device_iterations}; inference needs device iterations >= number of stages ({stages}).")


def batches(loader: Any, count: int) -> Iterator[Any]:
    """``count`` host batches, cycling over the loader if it is shorter."""
    produced = 0
    while produced < count:
        empty = True
        for batch in loader:
            empty = False
            yield batch
            produced += 1
            if produced == count:
                return
        if empty:
            raise UsageError("The data loader yields no full batch; the dataset is smaller than one host batch "
                             "(--batch-size x --device-iterations x --replicas); lower one of them.")


def profiler(args: argparse.Namespace, backend: Backend, log_dir: str) -> Any:
    """torch.profiler trace in the log folder off IPU; on IPU Poplar's report is asked for by the engine
    options before compilation (utils/ipu_settings.engine_options)."""
    if not args.profile or not backend.is_portable:
        return nullcontext()
    return torch_trace(backend.device, log_dir)


def benchmark(model: Any, data: Iterator[Any], args: argparse.Namespace, logger: RunLogger,
              info: distributed.InstanceInfo, portable: bool) -> Tuple[List[metrics.Step], List[float]]:
    """Run warm-up then measured calls; each call is timed on the host around a synchronous call.
    Returns the measured steps and the per-micro-batch latencies (seconds) when the backend gives them."""
    steps: List[metrics.Step] = []
    total = args.warmup_iterations + args.iterations
    bar = tqdm(total=args.iterations, disable=not sys.stderr.isatty(), desc="Measuring", leave=False)
    synthetic = args.data == "synthetic"
    samples: List[float] = []
    lines = PerCallLines(logger)
    try:
        for i, (images, _) in enumerate(batches(data, total)):
            start = time.perf_counter()
            model(images)
            elapsed = time.perf_counter() - start
            n = images.shape[0]
            latency = None if synthetic else model.getLatency()
            shown = "N/A..N/A" if latency is None else f"{latency[0] * 1e3:.3f}..{latency[1] * 1e3:.3f}"
            warm = " (warm-up, excluded)" if i < args.warmup_iterations else ""
            lines.add(f"{info.prefix} Throughput: {n / elapsed:.2f} imgs/sec; Latency range: {shown} ms{warm}".strip())
            if i >= args.warmup_iterations:
                steps.append(metrics.Step(n, elapsed, latency))
                if portable and not synthetic:
                    samples.extend(model.latencySamples())
                bar.update(1)
    finally:
        lines.flush()
    bar.close()
    return steps, samples


class PerCallLines:
    """The per-call lines, written together at most every FLUSH_EVERY_S seconds: writing each between two
    calls left the runtime's worker threads idle for ~100 us, long enough for them to sleep, and waking
    them landed inside the next timed call (2% of a 3 ms OpenVINO call, benchmarks/RESULTS.md)."""

    FLUSH_EVERY_S = 0.5

    def __init__(self, logger: RunLogger) -> None:
        self.logger, self.pending, self.since = logger, [], time.perf_counter()

    def add(self, line: str) -> None:
        self.pending.append(line)
        if time.perf_counter() - self.since >= self.FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.logger.log("\n".join(self.pending))
            self.pending = []
        self.since = time.perf_counter()


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> dict:
    """One run, or with several values of --batch-size/--model/--executor, one run per combination."""
    argv = list(sys.argv[1:] if argv is None else argv)
    runs = sweep.combinations(argv)
    if len(runs) == 1:
        return run_one(runs[0])
    parsed = [parse_arguments(words) for words in runs]  # every combination is checked before any runs
    rows, results = [], []
    for words in runs:
        result = run_one(words)
        results.append(result)
        rows.append(sweep.row(result, result.get("log_folder", "")))
    info = distributed.instance_info()
    files = sweep.summarise(rows, parsed[0].log_path, print) if info.rank == 0 else {}
    return {"sweep": results, **files}


def run_one(argv: Sequence[str]) -> dict:
    args = parse_arguments(argv)
    info = distributed.instance_info()
    backend = select_backend(args.device, args.half_dtype)
    distributed.init_process_group(info, backend.device, args.collective_timeout, num_stages(args))
    logger = RunLogger(args, info)
    for note in getattr(args, "notes", []):
        logger.once(note)
    opts = inference_options(args, backend, info, report_dir=logger.path if info.rank == 0 else None)
    torch.manual_seed(args.seed)   # random weights drawn alike in every run: reproducible, and a cached executable reused
    model = prepare_model(args, backend, datasets.DATASETS_INFO[args.data]["num_classes"], logger.log,
                          pretrained=not args.random_weights)
    model.eval()
    size = input_size(args)
    data = datasets.get_data(args, opts, backend.poptorch, train=False, input_size=size,
                             half_dtype=backend.half_dtype, batches=args.warmup_iterations + args.iterations,
                             preprocessing=input_preprocessing(args))
    inference_model = backend.poptorch.inferenceModel(for_executor(model, args, backend), opts)
    env = report_backend(args, opts, backend, logger)
    stream = batches(data, args.warmup_iterations + args.iterations)
    first_images, first_labels = next(stream)
    before_compile_mb = peak_memory.resident_mb()
    start = time.perf_counter()
    inference_model.compile(first_images)
    compile_s = time.perf_counter() - start
    executor = executor_report(inference_model, backend, compile_s)
    log_compiled(executor, compile_s, logger.log, logger.once)
    if backend.is_portable:
        for message in inference_model.portableMessages():
            logger.once(message)
    settled = gc_settle.settle()
    logger.once(settled.pop("note"))
    heap_returned_mb = peak_memory.reset()
    after_compile_mb = peak_memory.resident_mb()
    compile_kept_mb = (None if before_compile_mb is None or after_compile_mb is None
                       else round(max(0.0, after_compile_mb - before_compile_mb), 1))

    def replay() -> Iterator[Any]:
        yield first_images, first_labels
        yield from stream
    with profiler(args, backend, logger.path):
        steps, samples = benchmark(inference_model, replay(), args, logger, info, backend.is_portable)
    memory = peak_memory.peaks(backend.device)
    compiled_here = executor.get("executors_compiled", [])
    trial_mb = executor.get("trial_process_max_rss_mb")
    logger.once(memory_line(memory, before_compile_mb, compile_kept_mb, heap_returned_mb, len(compiled_here) or 1,
                            trial_mb))
    summary = metrics.summarise(steps)
    report(args, summary, info, backend, logger, first_images.dtype)
    results = {
        **env.results_fields(args, backend, info.size), "input_dtype": str(first_images.dtype),
        "executor": executor["executor"], "executor_streams": executor.get("streams", 1),
        "executor_reason": executor["reason"],
        "executor_trials": executor["trials"], "compile_s": round(compile_s, 3), **memory, **settled,
        "heap_returned_mb": None if heap_returned_mb is None else round(heap_returned_mb, 1),
        "before_compile_mb": before_compile_mb, "compile_kept_mb": compile_kept_mb, "executors_compiled": compiled_here,
        "trial_process_max_rss_mb": trial_mb,
        "warmup_iterations_excluded": args.warmup_iterations, "metrics": summary,
        "latency_p50_ms": metrics.percentile(samples, 50) * 1e3 if samples else None,
        "latency_p99_ms": metrics.percentile(samples, 99) * 1e3 if samples else None,
        "log_folder": logger.path,
    }
    logger.write_results(results)
    inference_model.detachFromDevice()
    logger.close()
    distributed.shutdown()
    return results


def memory_line(memory: Dict[str, Any], before_mb: Optional[float], kept_mb: Optional[float],
                returned_mb: Optional[float], compiled: int, trial_mb: Optional[float] = None) -> str:
    """The log's memory sentence: the measured calls' peak and its parts (what the process held before
    compiling: libraries, the model, the input; what compiling brought and kept: the executors' libraries,
    their own copies of the weights, their buffers), what compiling freed and gave back, and the process's
    peak. The parts say why a compiled executor's run can sit above an eager loop's. Where auto compiled
    several executors in this process to time them (off the CPU, or a model that could not go to auto's
    trial process), what their libraries keep after it dropped them stays in this process
    (resnet50, batch 1: about 100 MB for ONNX Runtime, 150 for OpenVINO, 250 for Inductor; see
    benchmarks/RESULTS.md), which a run reusing a cached choice does not pay: the line says so. Where they
    were timed in auto's trial process, that process's peak (``trial_mb``) is said apart: it is memory the
    machine needed while compiling, not the run's."""
    parts = ""
    if before_mb is not None and kept_mb is not None:
        parts = (f" ({before_mb:.0f} MB held before compiling: libraries, the model, its input; {kept_mb:.0f} MB "
                 "that compiling brought and kept: the executors' libraries, their copies of the weights, their buffers)")
    returned = "" if returned_mb is None else f"; {returned_mb:.0f} MB that compiling freed went back to the OS before them"
    line = (f"Peak host memory of the measured calls: {memory['peak_host_rss_mb']:.0f} MB{parts}{returned}; the "
            f"process's peak, {memory['process_max_rss_mb']:.0f} MB, includes compiling {compiled} executor(s).")
    if trial_mb is not None:
        line += (f" auto compiled and timed the executors in a separate process, which peaked at {trial_mb:.0f} MB "
                 "while this one waited; none of that is in these figures.")
    if compiled > 1:
        line += (f" auto compiled {compiled} executors to time them, and the libraries of those it dropped keep part "
                 "of their memory in this process; with --model-cache-path (or POPTORCH_CACHE_DIR) later runs reuse "
                 "the choice and compile only the chosen executor.")
    return line


def report(args: argparse.Namespace, s: dict, info: distributed.InstanceInfo, backend: Backend,
           logger: RunLogger, dtype: torch.dtype) -> None:
    num_ipus = info.size * args.replicas * num_stages(args)
    logger.log("-" * 91)
    logger.log(f"The first {args.warmup_iterations} calls after compilation (warm-up) are excluded; "
               f"mean = images / wall time over {s['steps']} measured calls.")
    logger.log(f"Throughput at bs={args.batch_size}, data_mode={args.data}, data_type={dtype}, num_ipus={num_ipus}, "
               f"of {args.model}: min={s['throughput_min']:.2f} imgs/s, max={s['throughput_max']:.2f} imgs/s, "
               f"mean={s['throughput_mean']:.2f} imgs/s, std={s['throughput_std']:.2f} imgs/s.")
    if "instance_throughputs" in s:
        each = ", ".join(f"{t:.2f}" for t in s["instance_throughputs"])
        logger.log(f"Each instance measured {each} imgs/s; sum={s['throughput_sum']:.2f} imgs/s (the mean above "
                   f"divides all images by the slowest instance's time per call).")
    if "latency_min_ms" in s:
        logger.log(f"Latency: min={s['latency_min_ms']:.3f} ms, max={s['latency_max_ms']:.3f} ms, "
                   f"mean={s['latency_mean_ms']:.3f} ms.")
    else:
        logger.log("Latency: min=N/A ms, max=N/A ms, mean=N/A ms.")


def cli() -> None:
    """The ``cnns-run-benchmark`` command: main's return value is for callers, not the exit status."""
    relaunch_with_huge_pages()
    main()


if __name__ == "__main__":
    cli()
