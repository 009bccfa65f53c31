"""Validating several checkpoints: auto's choice remembered in the process against timed afresh for each.

validate.py (and train.py's validation after every epoch) builds one ``inferenceModel`` per checkpoint;
the model's structure and input shapes stay, only the weights change. This script builds the harness's
``inferenceModel`` (``--executor auto``, no cache folder) for ``--checkpoints`` weight sets in a row and
times each build with its first call, the whole sequence once as the harness does it (the choice of the
first build remembered) and once with the remembered choice dropped before every build (as before it was
remembered). After one unmeasured build (imports, the process's first compiles), the two sequences
alternate over ``--rounds`` in this one process; medians are reported.

    python3 benchmarks/auto_choice_reuse.py --model resnet18 --input-size 32 --batch-size 8 --checkpoints 3 --rounds 2
"""

import argparse
import os
import statistics
import time
from typing import Dict, List, Optional, Sequence

from cnns.utils.argparser import add_debug_option, new_parser
from cnns.utils.errors import exit_on_usage_error
from cnns.utils.validation import at_least, known_models

MODES = ("remembered", "timed afresh")


def sequence(mode: str, model_name: str, size: int, batch: int, checkpoints: int) -> float:
    """Seconds to build and first-call one inferenceModel per weight set, in ``mode``."""
    import torch
    import portable_poptorch as poptorch
    from cnns import models
    from portable_poptorch.compilers import forget_choices
    x = torch.randn(batch, 3, size, size)
    forget_choices()
    total = 0.0
    for seed in range(checkpoints):
        if mode == "timed afresh":
            forget_choices()
        torch.manual_seed(seed)
        model = models.get_model(model_name, pretrained=False, log=lambda _: None).eval()
        start = time.perf_counter()
        wrapped = poptorch.inferenceModel(model, poptorch.Options())
        wrapped(x)
        total += time.perf_counter() - start
        wrapped.detachFromDevice()
    return total


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = new_parser(__doc__, raw_description=True)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--checkpoints", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    add_debug_option(p)
    args = p.parse_args(argv)
    at_least(args, 1, ("batch_size", "checkpoints", "rounds"))
    at_least(args, 8, ("input_size",))
    known_models(args, "model")
    return args


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_arguments(argv)
    os.environ.pop("POPTORCH_CACHE_DIR", None)   # no cache folder: the process's memory is what is measured
    import torch
    from portable_poptorch.device import device_name
    print(f"CPU: {device_name(torch.device('cpu'))}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    figures: Dict[str, List[float]] = {mode: [] for mode in MODES}
    sequence("timed afresh", args.model, args.input_size, args.batch_size, 1)   # warm-up: imports, first compiles
    for r in range(args.rounds):
        for mode in (MODES if r % 2 == 0 else tuple(reversed(MODES))):
            seconds = sequence(mode, args.model, args.input_size, args.batch_size, args.checkpoints)
            figures[mode].append(seconds)
            print(f"round {r + 1}: {mode} {seconds:.1f} s for {args.checkpoints} checkpoints", flush=True)
    med = {mode: statistics.median(v) for mode, v in figures.items()}
    print(f"\n| {args.model} {args.input_size}px bs{args.batch_size}, {args.checkpoints} checkpoints | "
          f"remembered {med['remembered']:.1f} s | timed afresh {med['timed afresh']:.1f} s | "
          f"afresh / remembered {med['timed afresh'] / med['remembered']:.2f} |")


if __name__ == "__main__":
    main()
