"""One inference process: the stand-in for one IPU's PopART session.

Started by resnext_inference_launch.py.  It opens an ONNX Runtime session,
stages a host buffer, runs one untimed warm-up batch, reports READY and waits
for GO on stdin so all processes start timing together, then times only the
session.run calls.  The summary goes to stdout as one ``RESULT {json}`` line
and, with every step, to this process's own log file.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import logging
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from cnns.inference.onnx_bulk.data import ImageFolderDataset, image_transform, synthetic_batch
from cnns.inference.onnx_bulk.dataloader import HostBufferLoader, Step
from cnns.inference.onnx_bulk.resnext101 import (
    ResNeXtSession,
    choose_providers,
    input_preprocessing,
    onnx_model_problem,
    top5,
)
from cnns.utils import gc_settle
from cnns.utils.argparser import new_parser
from cnns.utils.atomic import atomic_file
from cnns.utils.errors import UsageError, exit_on_usage_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = new_parser("internal: one child inference process")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--batches_per_step", type=int, required=True)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--data_dir", type=Path)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--provider", default="auto")
    parser.add_argument("--log_file", type=Path, required=True)
    parser.add_argument("--results_file", type=Path)
    parser.add_argument("--wait_for_go", action="store_true")
    return parser.parse_args(argv)


def input_problem(args: argparse.Namespace) -> str | None:
    """The first bad value of a command line, as one sentence (the launcher checks its own flags, but this
    process can be started by hand too)."""
    for name, minimum in (("index", 0), ("batch_size", 1), ("batches_per_step", 1), ("iterations", 1),
                          ("num_workers", 0), ("threads", 1)):
        if getattr(args, name) < minimum:
            return f"--{name} must be {minimum} or more, got {getattr(args, name)}."
    if not args.model.is_file():
        return f"--model {args.model} is not a file; give the .onnx model that get_model.py wrote."
    if not args.synthetic and (args.data_dir is None or not args.data_dir.is_dir()):
        return f"--data_dir {args.data_dir} is not a folder; give a partition folder or --synthetic."
    if args.provider not in ("auto", "cpu", "cuda"):
        return f"--provider must be auto, cpu or cuda, not {args.provider!r}."
    for option, path in (("--log_file", args.log_file), ("--results_file", args.results_file)):
        if path is not None and path.is_dir():
            return f"{option} {path} is a folder; give a file name."
    model_problem = onnx_model_problem(args.model)
    if model_problem:
        return f"--model {args.model} is not an ONNX model: it {model_problem}; give the .onnx file get_model.py wrote."
    return None


def synthetic_steps(batch_size: int, side: int, batches_per_step: int, iterations: int) -> Iterator[Step]:
    """The same batch reused for every slot: made once, no file is opened."""
    batch = synthetic_batch(batch_size, side)
    buffer = np.broadcast_to(batch, (batches_per_step,) + batch.shape)
    for iteration in range(iterations):
        names = [f"synthetic/iter{iteration}/image{i}" for i in range(batches_per_step * batch_size)]
        yield Step(buffer, batches_per_step * batch_size, names)


def run_step(session: ResNeXtSession, step: Step) -> tuple[float, list[np.ndarray]]:
    """Run every batch of a staged step; returns (seconds spent in session.run, fetched outputs)."""
    outputs = []
    start = time.perf_counter()
    for batch in step.batches:
        outputs.append(session.run(batch))
    return time.perf_counter() - start, outputs


def write_results(writer, step: Step, outputs: list[np.ndarray]) -> None:
    logits = np.concatenate(outputs)[: step.valid]
    indices, probs = top5(logits)
    for name, idx, prob in zip(step.names, indices, probs, strict=True):
        writer.writerow([name, *idx.tolist(), *(f"{p:.6f}" for p in prob)])


def step_report(preprocessing: float, compute: float, images: int) -> str:
    """The original's per-step line: total = waiting for the host buffer + session.run time."""
    total = preprocessing + compute
    return (f"Total {total:<8.3} sec.   Preprocessing {preprocessing:<8.3} sec ({100 * preprocessing / total:4.3}%)."
            f"   Compute {compute:<8.3} sec ({100 * compute / total:4.3}%).   {int(images / total):5f} images/sec.")


def wait_for_go() -> None:
    print("READY", flush=True)
    line = sys.stdin.readline().strip()
    if line != "GO":
        raise SystemExit(f"expected GO from the launcher, got {line!r}")


@exit_on_usage_error
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = input_problem(args)
    if problem:
        raise UsageError(problem)
    try:
        args.log_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--log_file {args.log_file} cannot be written ({error.strerror or error}).") from None
    logging.basicConfig(
        filename=args.log_file,
        filemode="w",
        level=logging.INFO,
        format="%(asctime)s proc%(process)d %(message)s",
    )
    log = logging.getLogger("worker")

    setup = time.perf_counter()
    session = ResNeXtSession(args.model, args.threads, choose_providers(args.provider))
    log.info(
        "session: model=%s providers=%s input=%s intra_op_threads=%d weights=%s created in %.2f s",
        args.model,
        session.providers,
        session.input_dtype.__name__,
        args.threads,
        session.metadata.get("weights", "unknown"),
        time.perf_counter() - setup,
    )
    model_input, side = input_preprocessing()
    if args.synthetic:
        steps: Iterable[Step] = synthetic_steps(args.batch_size, side, args.batches_per_step, args.iterations)
        log.info(
            "input: synthetic, %d iterations x %d batches x %d images",
            args.iterations,
            args.batches_per_step,
            args.batch_size,
        )
    else:
        dataset = ImageFolderDataset(args.data_dir, image_transform(model_input, side), side)
        steps = HostBufferLoader(dataset, args.batch_size, args.batches_per_step, args.num_workers)
        log.info("input: %d images from %s, %d loader threads", len(dataset), args.data_dir, args.num_workers)

    images, seconds, batches = 0, 0.0, 0
    iterator = iter(steps)
    with contextlib.ExitStack() as stack:
        results = stack.enter_context(atomic_file(str(args.results_file), "w")) if args.results_file else None
        writer = csv.writer(results) if results else None
        for number in itertools.count():
            waited = time.perf_counter()
            step = next(iterator, None)
            if step is None:
                break
            preprocessing = time.perf_counter() - waited
            if number == 0:
                session.run(step.batches[0])
                log.info("warm-up batch done (not timed)")
                log.info(gc_settle.settle()["note"])
                if args.wait_for_go:
                    wait_for_go()
            elapsed, outputs = run_step(session, step)
            images += step.valid
            seconds += elapsed
            batches += len(step.batches)
            log.info(
                "step %d: %d batches, %d images in %.4f s (%.2f images/s)",
                number,
                len(step.batches),
                step.valid,
                elapsed,
                step.valid / elapsed,
            )
            log.info(step_report(preprocessing, elapsed, step.valid))
            if writer:
                write_results(writer, step, outputs)

    throughput = images / seconds if seconds > 0 else 0.0
    summary = {
        "index": args.index,
        "images": images,
        "batches": batches,
        "seconds": seconds,
        "throughput": throughput,
        "providers": session.providers,
        "threads": args.threads,
        "weights": session.metadata.get("weights", "unknown"),
        "log": str(args.log_file),
    }
    log.info("total: %d images in %.4f s of session.run = %.2f images/s", images, seconds, throughput)
    print("RESULT " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
