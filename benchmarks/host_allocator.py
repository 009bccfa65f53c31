"""CPU inference with --host-allocator resident against glibc's defaults, for the same hand loop.

mallopt settings are process-wide and cannot be undone, so each measurement is a child process
(order alternating); a child prints images/s and minor page faults per forward pass. The ratio
resident/default is printed per model (> 1.0 = the setting helps).

    python3 benchmarks/host_allocator.py --models resnet18 resnet50 --batch-size 8
"""

import argparse
import json
import resource
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch

from portable_poptorch.device import device_name
from cnns import models
from cnns.utils.argparser import add_debug_option, new_parser
from cnns.utils.errors import exit_on_usage_error, run_child
from cnns.utils.host_memory import MODES, configure_host_allocator
from cnns.utils.validation import at_least, known_models


def child(model_name: str, batch: int, steps: int, mode: str) -> Dict[str, float]:
    """One measurement in this process: ``steps`` forwards after one warm-up forward."""
    configure_host_allocator(mode, "cpu")
    model = models.get_model(model_name, pretrained=False, log=lambda _: None).eval()
    size = models.model_input_size(model_name)
    x = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        model(x)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        elapsed = time.perf_counter() - start
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"img_s": batch * steps / elapsed, "faults_per_step": faults / steps}


def measure(model_name: str, batch: int, steps: int, mode: str) -> Dict[str, float]:
    """One child process's measurement."""
    out = run_child([sys.executable, __file__, "--child", mode, "--models", model_name, "--batch-size", str(batch),
                     "--steps", str(steps)], f"The {mode} measurement ({model_name}, batch {batch})").stdout
    return json.loads(out.strip().splitlines()[-1])


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The options, every value checked before the first child starts (a child checks its own again)."""
    p = new_parser(__doc__, raw_description=True)
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=12, help="Timed forwards per child process")
    p.add_argument("--repeats", type=int, default=4, help="Child processes per setting (order alternates)")
    p.add_argument("--child", choices=MODES, default=None, help=argparse.SUPPRESS)
    add_debug_option(p)
    args = p.parse_args(argv)
    at_least(args, 1, ("batch_size", "steps", "repeats"))
    known_models(args, "models")
    return args


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_arguments(argv)
    if args.child:
        print(json.dumps(child(args.models[0], args.batch_size, args.steps, args.child)))
        return
    print(f"device: {device_name(torch.device('cpu'))}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"batch {args.batch_size}, {args.steps} forwards per process, {args.repeats} processes per setting")
    for name in args.models:
        runs: Dict[str, List[Dict[str, float]]] = {"default": [], "resident": []}
        for r in range(args.repeats):
            order = ["default", "resident"] if r % 2 == 0 else ["resident", "default"]
            for mode in order:
                runs[mode].append(measure(name, args.batch_size, args.steps, mode))
        med = {m: statistics.median(x["img_s"] for x in v) for m, v in runs.items()}
        faults = {m: statistics.median(x["faults_per_step"] for x in v) for m, v in runs.items()}
        print(f"{name}: default {med['default']:.2f} img/s ({faults['default']:.0f} faults/step), "
              f"resident {med['resident']:.2f} img/s ({faults['resident']:.0f} faults/step), "
              f"ratio {med['resident'] / med['default']:.3f} (medians)")


if __name__ == "__main__":
    main()
