"""train.py's CPU training throughput against a hand-written eager and a hand-written torch.compile
training loop (forward, cross-entropy, backward, SGD step), each in its own process, order alternating.

train.py runs with ``--data synthetic`` (the batch is made once, as in the hand loops), fp32, plain SGD,
``--validation-mode none`` and its default ``--executor auto``; its figure is the epoch's images/s with
compilation done before the epoch. The hand loops time the same number of steps after two warm-up steps.

    python3 benchmarks/training_compiled.py --model resnet18 --batch-size 16 --steps 20 --rounds 3
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

from cnns.utils.argparser import add_debug_option, new_parser
from cnns.utils.errors import exit_on_usage_error, run_child
from cnns.utils.validation import at_least, known_models

REPO = pathlib.Path(__file__).resolve().parents[1]
LOOPS = ("hand-eager", "hand-compiled")


def hand_loop(kind: str, model_name: str, batch: int, steps: int) -> float:
    import torch
    from cnns import models
    model = models.get_model(model_name, num_classes=10, pretrained=False, log=lambda _: None).train()
    size = models.model_input_size(model_name)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(forward(x), y).backward()
        optimizer.step()
    forward = torch.compile(model) if kind == "hand-compiled" else model
    step()
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def train_py(model_name: str, batch: int, steps: int, cache: str) -> Dict[str, float]:
    """train.py in its own process; the executable cache is shared between rounds, as the hand loops
    share Inductor's default cache, so later rounds do not pay auto's trial compilation again."""
    with tempfile.TemporaryDirectory() as logs:
        cmd = [sys.executable, str(REPO / "train" / "train.py"), "--data", "synthetic", "--model", model_name,
               "--batch-size", str(batch), "--precision", "32.32", "--iterations", str(steps), "--epoch", "1",
               "--validation-mode", "none", "--optimizer", "sgd", "--log-path", logs, "--checkpoint-path", ""]
        run_child(cmd, f"train.py ({model_name}, batch {batch})", env=dict(os.environ, POPTORCH_CACHE_DIR=cache))
        results = json.loads(next(pathlib.Path(logs).rglob("results.json")).read_text())
    return {"throughput": results["epochs"][0]["throughput"], "executor": results.get("executor")}


def run_engine(engine: str, args: argparse.Namespace, cache: str) -> Dict[str, Any]:
    """One measurement: train.py, or a hand loop in a child process of this script."""
    if engine == "train.py":
        return train_py(args.model, args.batch_size, args.steps, cache)
    cmd = [sys.executable, __file__, "--child", engine, "--model", args.model,
           "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
    out = run_child(cmd, f"The {engine} loop ({args.model}, batch {args.batch_size})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The options, every value checked before the first round (a child process checks its own again)."""
    p = new_parser(__doc__, raw_description=True)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", choices=LOOPS, default=None, help=argparse.SUPPRESS)
    add_debug_option(p)
    args = p.parse_args(argv)
    at_least(args, 1, ("batch_size", "steps", "rounds"))
    known_models(args, "model")
    return args


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_arguments(argv)
    if args.child:
        print(json.dumps({"throughput": hand_loop(args.child, args.model, args.batch_size, args.steps)}))
        return
    import torch
    from portable_poptorch.device import device_name
    print(f"CPU: {device_name(torch.device('cpu'))}, torch {torch.__version__}")
    figures: Dict[str, List[float]] = {"train.py": [], **{k: [] for k in LOOPS}}
    executors = set()
    with tempfile.TemporaryDirectory(prefix="training_bench_cache_") as cache:   # removed when the run ends
        for r in range(args.rounds):
            order = ["train.py", *LOOPS] if r % 2 == 0 else [*reversed(LOOPS), "train.py"]
            for engine in order:
                result = run_engine(engine, args, cache)
                if engine == "train.py":
                    executors.add(result["executor"])
                figures[engine].append(result["throughput"])
                print(f"round {r + 1}: {engine} {result['throughput']:.2f} img/s", flush=True)
    med = {k: statistics.median(v) for k, v in figures.items()}
    print(f"\n| {args.model} bs{args.batch_size} | train.py ({'/'.join(sorted(map(str, executors)))}) | hand eager | "
          "hand torch.compile | train.py / hand eager | train.py / hand compiled |")
    print(f"| img/s (median of {args.rounds}) | {med['train.py']:.2f} | {med['hand-eager']:.2f} | "
          f"{med['hand-compiled']:.2f} | {med['train.py'] / med['hand-eager']:.3f} | "
          f"{med['train.py'] / med['hand-compiled']:.3f} |")


if __name__ == "__main__":
    main()
