"""Resume training from a checkpoint: ``restore.py --checkpoint-path FILE``.

The model, optimiser state, learning-rate and loss-scaling schedules, augmentation and global RNG
states come from the checkpoint, so the following epochs match an uninterrupted run with the same
seed (exactly so with --dataloader-worker 0; worker processes keep RNG state a checkpoint cannot
hold). Options typed on the command line override the recorded ones, e.g. --epoch to train longer.
New checkpoints go to the folder of the restored one.
"""

import os
import sys
from typing import Any, Dict, Optional, Sequence

from cnns.train.arguments import FROM_THE_CHECKPOINT, check_training_args, explicit_options, refuse_unread, training_parser
from cnns.train.checkpoint import load_checkpoint
from cnns.train.train import run_training
from cnns.train.validate import args_from_checkpoint
from cnns.train.value_checks import check_training_data, check_training_fits
from cnns.utils.argparser import normalise_args
from cnns.utils.errors import UsageError, exit_on_usage_error


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = training_parser("Resume training from a checkpoint written by train.py")
    argv = list(sys.argv[1:] if argv is None else argv)
    cli = parser.parse_args(argv)
    explicit = explicit_options(parser, argv)
    refuse_unread(parser, explicit, set(FROM_THE_CHECKPOINT), "restore.py",
                  "it resumes from the checkpoint's weights and the options it recorded")
    if not cli.checkpoint_path or os.path.isdir(cli.checkpoint_path):
        raise UsageError("restore.py needs --checkpoint-path naming one checkpoint file (<model>_<data>_<epoch>.pt).")
    ckpt = load_checkpoint(cli.checkpoint_path)
    args = args_from_checkpoint(ckpt, cli, explicit)
    args.resumed_from = cli.checkpoint_path
    args.checkpoint_path = os.path.dirname(os.path.abspath(cli.checkpoint_path))
    args.notes = []
    args = check_training_args(normalise_args(args))
    check_training_fits(args)
    check_training_data(args)
    if int(ckpt["epoch"]) >= args.epoch:
        raise UsageError(f"Checkpoint {cli.checkpoint_path!r} is from epoch {ckpt['epoch']} of a {args.epoch}-epoch run; "
                         f"pass --epoch with a larger total to train further.")
    return run_training(args, resume=ckpt)


def cli() -> None:
    """The ``cnns-restore`` command: main's return value is for callers, not the exit status."""
    main()


if __name__ == "__main__":
    cli()
