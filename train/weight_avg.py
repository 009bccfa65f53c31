"""Average the weights of a run's last checkpoints: ``weight_avg.py --checkpoint-path DIR``.

mean: arithmetic mean of the last N checkpoints. exponential: starting from the oldest of them,
``avg = decay * avg + (1 - decay) * next``. Integer buffers (batch-norm step counters) come from the
newest checkpoint. The result is written next to the inputs as
``<model>_<data>_<epoch>_<strategy>_avg.pt``, a checkpoint validate.py and --weights accept.
"""

import argparse
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from cnns.train.arguments import add_weight_avg_options
from cnns.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from cnns.utils.argparser import new_parser
from cnns.utils.errors import UsageError, exit_on_usage_error
from cnns.utils.validation import check_free_space, existing_folder, writable_folder

StateDict = Dict[str, torch.Tensor]


def average_state_dicts(states: List[StateDict], strategy: str, decay: float = 0.99) -> StateDict:
    """Average floating-point entries (in float64, cast back); other entries come from the last state."""
    if strategy not in ("mean", "exponential"):
        raise UsageError(f"--weight-avg-strategy {strategy!r} does not average; use mean or exponential.")
    out: StateDict = {}
    for key, last in states[-1].items():
        if not last.is_floating_point():
            out[key] = last.clone()
            continue
        values = [s[key].double() for s in states]
        if strategy == "mean":
            avg = torch.stack(values).mean(0)
        else:
            avg = values[0]
            for value in values[1:]:
                avg = decay * avg + (1.0 - decay) * value
        out[key] = avg.to(last.dtype)
    return out


def _check_same_model(checkpoints: List[Dict[str, Any]], files: List[str]) -> None:
    first, first_file = checkpoints[0], files[0]
    for ckpt, file in zip(checkpoints[1:], files[1:]):
        same_keys = set(ckpt["model_state_dict"]) == set(first["model_state_dict"])
        same_shapes = same_keys and all(ckpt["model_state_dict"][k].shape == v.shape
                                        for k, v in first["model_state_dict"].items())
        if ckpt["args"].get("model") != first["args"].get("model") or not same_shapes:
            raise UsageError(
                f"Checkpoints {os.path.basename(first_file)} ({first['args'].get('model')}) and "
                f"{os.path.basename(file)} ({ckpt['args'].get('model')}) hold different models; "
                f"weight averaging needs checkpoints of one run.")


def average_checkpoints(folder: str, strategy: str, decay: float, last_n: int,
                        log: Callable[[str], None] = print) -> str:
    """Average the last ``last_n`` (-1: all) checkpoints of ``folder``; returns the averaged file."""
    files = list_checkpoints(folder)
    if last_n > 0:
        files = files[-last_n:]
    check_free_space(folder, os.path.getsize(files[-1]), "The averaged checkpoint")
    checkpoints = [load_checkpoint(f) for f in files]
    _check_same_model(checkpoints, files)
    averaged = dict(checkpoints[-1])
    averaged["model_state_dict"] = average_state_dicts([c["model_state_dict"] for c in checkpoints], strategy, decay)
    averaged["weight_avg"] = {"strategy": strategy, "decay": decay, "checkpoints": [os.path.basename(f) for f in files]}
    averaged.pop("optimizer_state_dict", None)
    name = os.path.basename(files[-1])[:-len(".pt")] + f"_{strategy}_avg.pt"
    path = save_checkpoint(folder, name, averaged)
    log(f"Averaged {len(files)} checkpoints ({strategy}) into {path}.")
    return path


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = new_parser("Average the weights of the last checkpoints of a training run")
    parser.add_argument("--checkpoint-path", type=str, required=True, help="Folder holding the run's checkpoints")
    add_weight_avg_options(parser)
    parser.set_defaults(weight_avg_strategy="mean")
    args = parser.parse_args(argv)
    if not 0.0 <= args.weight_avg_exp_decay <= 1.0:
        raise UsageError(f"--weight-avg-exp-decay must be in [0, 1], got {args.weight_avg_exp_decay}.")
    if args.weight_avg_N == 0 or args.weight_avg_N < -1:
        raise UsageError(f"--weight-avg-N must be a positive count or -1 (all checkpoints), got {args.weight_avg_N}.")
    existing_folder(args.checkpoint_path, "--checkpoint-path")
    writable_folder(args.checkpoint_path, "--checkpoint-path")
    return args


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> str:
    args = parse_arguments(argv)
    return average_checkpoints(args.checkpoint_path, args.weight_avg_strategy, args.weight_avg_exp_decay,
                               args.weight_avg_N)


def cli() -> None:
    """The ``cnns-weight-avg`` command: main's return value is for callers, not the exit status."""
    main()


if __name__ == "__main__":
    cli()
