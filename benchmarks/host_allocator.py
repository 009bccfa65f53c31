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
import subprocess
import sys
import time
from typing import Dict, List

import torch

from portable_poptorch.device import device_name
from cnns import models
from cnns.utils.host_memory import configure_host_allocator


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
    out = subprocess.run([sys.executable, __file__, "--child", model_name, mode, "--batch-size", str(batch),
                          "--steps", str(steps)], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=12, help="Timed forwards per child process")
    p.add_argument("--repeats", type=int, default=4, help="Child processes per setting (order alternates)")
    p.add_argument("--child", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.batch_size, args.steps, args.child[1])))
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
