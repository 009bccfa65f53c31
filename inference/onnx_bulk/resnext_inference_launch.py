"""Launch N ResNeXt-101 inference processes and aggregate their throughput.

The IPU original ran one PopART session per IPU, each on its own dataset
partition.  Here each "IPU" is a child process with its own ONNX Runtime
session and an even share of the host's CPUs (or the GPU's execution
provider).  Every child logs to logs/ (its stderr to stderr_<i> beside its
log); this launcher prints each child's throughput and their sum.  The first
child to fail (killed, or a non-zero exit) ends the launch at once: the others
are stopped, the error names the failed process, and no results file is left.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from cnns.datasets.errors import DataError
from cnns.inference.onnx_bulk.data import list_images
from cnns.inference.onnx_bulk.dataloader import step_buffer_bytes
from cnns.inference.onnx_bulk.flags import Flag, parse_flags
from cnns.inference.onnx_bulk.resnext101 import (
    input_preprocessing,
    model_file,
    onnx_model_problem,
    threads_per_process,
)
from cnns.utils.atomic import atomic_file, is_temporary, pid_alive, remove_stale_temporaries, write_json
from cnns.utils.errors import UsageError, describe_exit, exit_on_usage_error, last_error_line
from cnns.utils.memory_need import available_host_bytes
from cnns.utils.validation import at_most_workers, writable_folder

HERE = Path(__file__).resolve().parent

# The original's partition layout (<data_dir>/<i>/pytorch_subdir) and its per-step log lines.
ORIGINAL_SUBDIR = "pytorch_subdir"
STEP_THROUGHPUT = re.compile(r"Compute .* sec .* (.*) images/sec\.")
STEP_TOTAL = re.compile(r"Total (\S+)\s+sec\.   Preprocessing")
# Per-process result files of a launch: <YYYYmmdd-HHMMSS>-<launcher pid>_..._top5.part (or their temporaries).
LAUNCH_FILE = re.compile(r"^\.?\d{8}-\d{6}-(\d+)_.*_top5\.")
STOP_GRACE_SECONDS = 10.0

FLAGS = (
    Flag("batch_size", "int", 6, "Batch size (per device)", minimum=1),
    Flag(
        "batches_per_step",
        "int",
        1500,
        "Number of batches to fetch on the host ready for streaming onto the device, reducing host IO",
        minimum=1,
    ),
    Flag(
        "data_dir",
        "string",
        "datasets/",
        "Parent directory containing subdirectory dataset(s). Number of subdirs should equal num_ipus",
    ),
    Flag(
        "iterations",
        "int",
        1,
        "Number of iterations to run if using synthetic data. Each iteration uses one batches_per_step x batch_size x H x W x C sized input tensor.",
        minimum=1,
    ),
    Flag("model_name", "string", "resnext101_32x4d", "model name. Used to locate ONNX protobuf in models/"),
    Flag("num_ipus", "int", 8, "Number of IPUs to be used. One IPU runs one compute process.", minimum=1),
    Flag("num_workers", "int", 12, "Number of threads per dataloader", minimum=1),
    Flag("synthetic", "bool", False, "Use synthetic data created on the IPU for inference"),
    Flag(
        "model_dir",
        "string",
        "models/",
        "Folder holding <model_name>/<model_name>_bs<batch_size>.onnx, as written by get_model.py",
    ),
    Flag("log_dir", "string", "logs/", "Folder for the per-process logs and the --save_results file"),
    Flag(
        "save_results",
        "bool",
        False,
        "Write top-5 class indices and probabilities per image to a CSV file in log_dir",
    ),
    Flag(
        "num_threads",
        "int",
        0,
        "ONNX Runtime intra-op threads per process; 0 means CPU count // num_ipus, at least 1",
        minimum=0,
    ),
    Flag(
        "provider",
        "string",
        "auto",
        "ONNX Runtime execution provider: auto (CUDA when available, else CPU), cpu or cuda",
    ),
)


def resolve(flags, name: str) -> Path:
    """User-given paths are relative to the working directory, defaults to this script's folder."""
    value = Path(getattr(flags, name))
    if not flags[name].present and not value.is_absolute():
        return HERE / value
    return value


def flags_without_effect(flags) -> list[dict]:
    """Flags given on the command line that the chosen data source does not read, for the log and results."""
    moot = [("iterations", not flags.synthetic, "real data is read once over each partition"),
            ("data_dir", flags.synthetic, "--synthetic reads no files"),
            ("num_workers", flags.synthetic, "--synthetic data has no loader threads")]
    return [{"flag": f"--{name}", "value": str(getattr(flags, name)), "reason": reason}
            for name, applies, reason in moot if applies and flags[name].present]


def check_onnx_model(model: Path) -> None:
    """A model file ONNX cannot parse (truncated, not ONNX, an empty graph) is named here, not by every process."""
    problem = onnx_model_problem(model)
    if problem:
        raise UsageError(f"ONNX model {model} {problem}; export it again with get_model.py.")


def find_partitions(data_dir: Path, count: int) -> list[tuple[Path, int]]:
    """The first ``count`` sub-folders (sorted) with their image counts; raises DataError if unusable."""
    if not data_dir.is_dir():
        raise DataError(
            f"Data directory {data_dir} does not exist; create it with partition_dataset.py or pass --synthetic."
        )
    subdirs = sorted(p for p in data_dir.iterdir() if p.is_dir())
    if len(subdirs) < count:
        raise DataError(
            f"Data directory {data_dir} has {len(subdirs)} subdirectories but --num_ipus={count} needs one per process."
        )
    chosen = [(partition_folder(folder), len(list_images(partition_folder(folder)))) for folder in subdirs[:count]]
    for folder, images in chosen:
        if images == 0:
            raise DataError(f"Partition {folder} contains no images.")
    return chosen


def partition_folder(folder: Path) -> Path:
    """A partition's images: the folder itself, or its pytorch_subdir as the original's partitions hold them."""
    nested = folder / ORIGINAL_SUBDIR
    return nested if nested.is_dir() else folder


def step_lines(logs: list[Path]) -> list[str]:
    """The original's summary: per step, the processes' mean total time and summed images/sec, read from
    their logs (the first 2 steps left out when there are at least 4)."""
    throughputs, totals = [], []
    for log in logs:
        text = log.read_text() if log.is_file() else ""
        throughputs.append([float(m) for m in STEP_THROUGHPUT.findall(text)])
        totals.append([float(m) for m in STEP_TOTAL.findall(text)])
    sums = [sum(step) for step in zip(*throughputs)]
    means = [statistics.mean(step) for step in zip(*totals)]
    first = 2 if len(sums) >= 4 else 0
    return [f"Total {total:<8.3} sec.   {int(rate):5f} images/sec." for total, rate in list(zip(means, sums))[first:]]


def process_batch_size(flags, model_dir: Path) -> tuple[int, str]:
    """Each process's batch. As the original's code, --batch_size is the overall batch, split between the
    --num_ipus processes (48 over 8: 6 each, get_model.py --micro-batch-size 6); when no model exists for
    that split (or it does not divide), it is one process's batch, as the original README's help says."""
    total, processes = flags.batch_size, flags.num_ipus
    if total % processes == 0 and model_file(model_dir, flags.model_name, total // processes).is_file():
        return total // processes, f"Batch size {total} over {processes} processes: {total // processes} per process."
    if model_file(model_dir, flags.model_name, total).is_file():
        return total, f"Batch size {total} per process ({processes} processes)."
    split = f" or {total // processes} (overall batch {total} over {processes} processes)" if total % processes == 0 else ""
    raise UsageError(
        f"No ONNX model for batch size {total}{split} in {model_dir / flags.model_name}; run get_model.py "
        f"--micro-batch-size {total // processes if split else total} first."
    )


def check_memory(partitions: list[tuple[Path, int]], batch_size: int, batches_per_step: int) -> None:
    side = input_preprocessing()[1]
    needed = sum(step_buffer_bytes(n, batch_size, batches_per_step, side) for _, n in partitions)
    free = available_host_bytes()
    if free is not None and needed > free:
        raise UsageError(
            f"The host buffers need {needed / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB is available; lower --batches_per_step."
        )


def child_command(
    flags, index: int, model: Path, partition: Path | None, threads: int, log: Path, results: Path | None
) -> list[str]:
    command = [
        sys.executable,
        "-m", "cnns.inference.onnx_bulk.inference_worker",
        "--index",
        str(index),
        "--model",
        str(model),
        "--batch_size",
        str(flags.batch_size),
        "--batches_per_step",
        str(flags.batches_per_step),
        "--iterations",
        str(flags.iterations),
        "--num_workers",
        str(flags.num_workers),
        "--threads",
        str(threads),
        "--provider",
        flags.provider,
        "--log_file",
        str(log),
        "--wait_for_go",
    ]
    command += ["--synthetic"] if partition is None else ["--data_dir", str(partition)]
    if results is not None:
        command += ["--results_file", str(results)]
    return command


def _last_error_line(path: Path | None) -> str:
    """The child's own sentence from its stderr file, or ''."""
    try:
        return last_error_line(path.read_text(errors="replace")) if path else ""
    except OSError:
        return ""


def _read_lines(index: int, stream, events: "queue.Queue[tuple[int, str | None]]") -> None:
    """Forward a child's stdout lines to ``events``; None marks its end (the child exited)."""
    for line in stream:
        events.put((index, line.rstrip("\n")))
    events.put((index, None))


def stop_children(children: list[subprocess.Popen], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM every running child (each removes its temporary files), SIGKILL those still running after
    ``grace`` seconds, and wait for all."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_children(commands: list[list[str]], stderr_files: list[Path] | None = None) -> list[dict]:
    """Start all children, release them together once each is READY, and collect their RESULT lines.

    The first child to fail (killed, a non-zero exit, no result) ends the launch at once: the others are
    stopped and a RuntimeError names the failed process, with its last error line when it wrote one."""
    errs = [open(path, "w") for path in stderr_files] if stderr_files else [None] * len(commands)
    children: list[subprocess.Popen] = []
    try:
        for command, err in zip(commands, errs):
            children.append(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                             text=True))
        events: queue.Queue[tuple[int, str | None]] = queue.Queue()
        for index, child in enumerate(children):
            threading.Thread(target=_read_lines, args=(index, child.stdout, events), daemon=True).start()
        ready: set[int] = set()
        results: dict[int, dict] = {}
        codes: dict[int, int] = {}
        while len(codes) < len(children):
            index, line = events.get()
            child = children[index]
            if line is None:
                codes[index] = child.wait()
                if codes[index] != 0 or index not in results:
                    when = "" if index in ready else " before it was ready"
                    what = describe_exit(codes[index]) if codes[index] != 0 else "ended without a result"
                    detail = _last_error_line(stderr_files[index] if stderr_files else None)
                    raise RuntimeError(f"Inference process {index} (pid {child.pid}) {what}{when}"
                                       f"{': ' + detail if detail else ''}; the other processes were stopped.")
            elif line == "READY":
                ready.add(index)
                if len(ready) == len(children):
                    for other in children:
                        try:
                            other.stdin.write("GO\n")
                            other.stdin.flush()
                        except OSError:
                            pass  # it has died: its end of output reports it
            elif line.startswith("RESULT "):
                results[index] = json.loads(line[len("RESULT "):])
        print(f"All processes finished with exit codes: {[codes[i] for i in range(len(children))]}", flush=True)
        return [results[i] for i in range(len(children))]
    finally:
        stop_children(children)
        for child in children:
            for stream in (child.stdin, child.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        for err in errs:
            if err is not None:
                err.close()
                if os.path.getsize(err.name) == 0:
                    os.unlink(err.name)


def remove_killed_launch_files(log_dir: Path) -> int:
    """Deletes the per-process result files (and their temporaries) that launches killed before merging
    them left in ``log_dir``; files of launches still running are kept. Returns how many."""
    removed = 0
    try:
        names = os.listdir(log_dir)
    except OSError:
        return 0
    for name in names:
        match = LAUNCH_FILE.match(name)
        if match and (name.endswith(".part") or is_temporary(name)) and not pid_alive(int(match.group(1))):
            try:
                os.unlink(log_dir / name)
                removed += 1
            except (FileNotFoundError, IsADirectoryError):
                continue
    return removed


def remove_parts(parts: list[Path]) -> None:
    """A failed launch leaves no per-process result file, whole or half-written."""
    for part in parts:
        part.unlink(missing_ok=True)
        remove_stale_temporaries(str(part.parent), only_for=part.name)


def merge_results(parts: list[Path], target: Path) -> None:
    """Concatenate per-process top-5 files into one CSV with a header and a process column."""
    header = (
        ["process", "image"] + [f"top{i}_class" for i in range(1, 6)] + [f"top{i}_prob" for i in range(1, 6)]
    )
    with atomic_file(str(target), "w") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for index, part in enumerate(parts):
            with open(part, newline="") as handle:
                for row in csv.reader(handle):
                    writer.writerow([index, *row])
    for part in parts:
        part.unlink()


def report(results: list[dict], flags) -> float:
    total = 0.0
    for result in results:
        total += result["throughput"]
        print(
            f"Process {result['index']}: {result['throughput']:.2f} images/s "
            f"({result['images']} images in {result['seconds']:.3f} s, {result['threads']} threads, "
            f"{result['providers'][0]}), log: {result['log']}"
        )
    print(
        f"Aggregate throughput: {total:.2f} images/s over {len(results)} processes "
        f"(batch size {flags.batch_size}; sum of per-process throughputs; timing covers session.run only, "
        "excluding session creation, data loading and one warm-up batch)"
    )
    weights = {r["weights"] for r in results}
    if "random" in weights:
        print("Note: the model has random weights, so predictions are meaningless.")
    return total


@exit_on_usage_error
def main(argv: list[str] | None = None) -> int:
    flags = parse_flags(Path(sys.argv[0]).name, FLAGS, argv)
    model_dir, log_dir = resolve(flags, "model_dir"), resolve(flags, "log_dir")
    if flags.provider not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--provider must be auto, cpu or cuda, not {flags.provider!r}.")
    at_most_workers(flags, ("num_ipus", "num_workers", "num_threads"), spelling=lambda name: f"--{name}")
    writable_folder(str(log_dir), "--log_dir")
    remove_killed_launch_files(log_dir)
    flags.batch_size, note = process_batch_size(flags, model_dir)
    model = model_file(model_dir, flags.model_name, flags.batch_size)
    check_onnx_model(model)
    print(note, flush=True)
    partitions = None
    if not flags.synthetic:
        partitions = find_partitions(resolve(flags, "data_dir"), flags.num_ipus)
        check_memory(partitions, flags.batch_size, flags.batches_per_step)

    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    process_logs = log_dir / datetime.now().strftime("%d-%b-%Y (%H:%M:%S.%f)")
    process_logs.mkdir(parents=True)
    results_json = str(process_logs / "results.json")
    no_effect = flags_without_effect(flags)
    for entry in no_effect:
        print(f"Flag {entry['flag']}={entry['value']} has no effect in this launch ({entry['reason']}); "
              "recorded in results.json.", flush=True)
    write_json(results_json, {"status": "running", "pid": os.getpid(), "model": str(model),
                              "batch_size": flags.batch_size, "processes": flags.num_ipus, "no_effect": no_effect})
    stem = f"{run_id}_{flags.model_name}_bs{flags.batch_size}"
    threads = threads_per_process(flags.num_ipus, flags.num_threads)
    parts = (
        [log_dir / f"{stem}_proc{i}_top5.part" for i in range(flags.num_ipus)] if flags.save_results else None
    )
    commands = [
        child_command(
            flags,
            i,
            model,
            None if partitions is None else partitions[i][0],
            threads,
            process_logs / f"log_{i}",
            parts[i] if parts else None,
        )
        for i in range(flags.num_ipus)
    ]
    print(
        f"Launching {flags.num_ipus} inference processes on {model.name}, {threads} intra-op threads each, "
        f"{'synthetic data' if flags.synthetic else 'data from ' + str(resolve(flags, 'data_dir'))}.",
        flush=True,
    )
    try:
        results = run_children(commands, [process_logs / f"stderr_{i}" for i in range(flags.num_ipus)])
    except BaseException as error:
        if parts:
            remove_parts(parts)
        stopped = "stopped by a signal or Ctrl-C" if not isinstance(error, RuntimeError) else str(error)
        write_json(results_json, {"status": "failed", "error": stopped})
        if not isinstance(error, RuntimeError):
            raise
        print(f"error: {error} See the logs in {process_logs}.", file=sys.stderr)
        return 1
    for line in step_lines([process_logs / f"log_{i}" for i in range(flags.num_ipus)]):
        print(line)
    total = report(results, flags)
    target = None
    if parts:
        target = log_dir / f"{stem}_top5.csv"
        merge_results(parts, target)
        print(f"Top-5 results written to {target}")
    write_json(results_json, {"status": "completed", "aggregate_throughput": total, "batch_size": flags.batch_size,
                              "processes": results, "top5_csv": None if target is None else str(target),
                              "no_effect": no_effect})
    return 0


if __name__ == "__main__":
    sys.exit(main())
