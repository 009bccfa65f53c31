"""Validate one checkpoint or every checkpoint of a folder: ``validate.py --checkpoint-path FILE|DIR``.

Every validation sample counts once: the last partial host batch is padded to full size and the
padding is left out of the accuracy, which is correct predictions / samples over the whole set.
Options given on the command line override those the checkpoint recorded (e.g. --batch-size,
--device, --imagenet-data-path).
"""

import argparse
import os
import sys
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch

from cnns import datasets
from cnns.train.arguments import (FROM_THE_CHECKPOINT, check_training_args, explicit_options, refuse_unread,
                                  training_only_options, training_parser)
from cnns.train.checkpoint import list_checkpoints, load_checkpoint
from cnns.train.train_options import validation_args, validation_options
from cnns.utils import distributed
from cnns.utils.backend import Backend, select_backend
from cnns.utils.errors import UsageError, exit_on_usage_error
from cnns.utils.argparser import normalise_args
from cnns.utils.option_values import checked_mapping
from cnns.utils.host_memory import configure_host_allocator
from cnns.utils.logger import RunLogger
from cnns.utils.model_setup import for_executor, input_preprocessing, prepare_model

# Half-resolution training sizes of the original (from https://arxiv.org/abs/2106.03640); other sizes x 5/7.
HALF_RESOLUTION = {224: 160, 380: 252}


def train_input_size(args: Any, train: bool = True) -> int:
    """Image side: --input-size, else the model's own size (CIFAR-10 is upscaled to it, as the original
    trains it); --half-res-training makes the training images smaller, never the validation ones."""
    if getattr(args, "input_size", None):
        size = args.input_size
    else:
        from cnns.utils.model_setup import input_size
        size = input_size(args)
    if train and getattr(args, "half_res_training", False):
        return HALF_RESOLUTION.get(size, max(8, round(size * 5 / 7)))
    return size


def padded_batches(loader: Iterable, combined: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor, int]]:
    """(images, labels, valid count) host batches, the last one padded with copies of its first sample."""
    for images, labels in loader:
        n = labels.shape[0]
        if n < combined:
            pad = combined - n
            images = torch.cat([images, images[:1].expand(pad, *images.shape[1:])])
            labels = torch.cat([labels, labels.new_full((pad,), -1)])
        yield images, labels, n


def validation_loader(args: Any, opts: Any, backend: Backend) -> Iterable:
    """Validation data as full host batches plus a padded last one (all samples, no shuffling)."""
    return datasets.get_data(args, opts, backend.poptorch, train=False, input_size=train_input_size(args, train=False),
                             half_dtype=backend.half_dtype, batches=args.iterations, drop_last=False,
                             preprocessing=input_preprocessing(args))


def accuracy(inference_model: Any, batches: Iterable[Tuple[torch.Tensor, torch.Tensor, int]],
             steps: Optional[List[int]] = None) -> float:
    """Top-1 accuracy in percent over the valid samples of ``batches``; ``steps`` gets the host calls made."""
    correct, total = 0, 0
    for images, labels, n in batches:
        if steps is not None:
            steps.append(1)
        logits = inference_model(images)
        predictions = logits.reshape(labels.shape[0], -1).argmax(-1)
        correct += int((predictions[:n] == labels[:n]).sum())
        total += n
    if total == 0:
        raise UsageError("The validation set holds no sample; check --imagenet-data-path or the data mode.")
    return 100.0 * correct / total


def run_validation(model: torch.nn.Module, args: Any, backend: Backend, log: Callable[[str], None],
                   trained_on: Optional[Tuple[int, str]] = None) -> float:
    """Validate ``model`` (the classifier, not the loss wrapper) and log PopTorch-style accuracy;
    ``trained_on`` = (classes, checkpoint file) is checked against the validation data's classes."""
    return run_validation_steps(model, args, backend, log, trained_on)[0]


def run_validation_steps(model: torch.nn.Module, args: Any, backend: Backend, log: Callable[[str], None],
                         trained_on: Optional[Tuple[int, str]] = None) -> Tuple[float, int]:
    """(accuracy, validation host calls): the calls make validation.csv's iteration column."""
    steps: List[int] = []
    opts = validation_options(args, backend)
    val_args = validation_args(args)
    loader = validation_loader(val_args, opts, backend)
    if trained_on is not None:
        check_classes(loader, *trained_on)
    combined = val_args.batch_size * val_args.device_iterations * val_args.replicas
    was_training = model.training
    model.eval()
    inference_model = backend.poptorch.inferenceModel(for_executor(model, args, backend), opts)
    try:
        acc = accuracy(inference_model, padded_batches(loader, combined), steps)
    finally:
        inference_model.detachFromDevice()
        model.train(was_training)
    log(f"Accuracy on test set: {acc:0.2f}%")
    return acc, len(steps)


WRITTEN_PATHS = ("log_path", "model_cache_path")


def args_from_checkpoint(ckpt: Dict[str, Any], cli: argparse.Namespace, explicit: Iterable[str]) -> argparse.Namespace:
    """The checkpoint's options (type-checked), over the parser defaults, under the options typed on this
    command line; folders written to (log, cache) come from this command line only, never the checkpoint."""
    merged = dict(vars(cli))
    merged.update(checked_mapping(training_parser(), ckpt["args"], "The checkpoint's recorded options",
                                  unknown_allowed=True))
    for name in explicit:
        if name not in ("checkpoint_path", "config"):
            merged[name] = getattr(cli, name)
    for name in WRITTEN_PATHS:
        if name not in explicit:
            merged[name] = getattr(cli, name)
    merged["weights"] = None
    return argparse.Namespace(**merged)


def check_classes(loader: Any, num_classes: int, path: str) -> None:
    """A model trained on N classes scored on a folder of M != N classes would report a meaningless
    accuracy; refuse it."""
    classes = getattr(getattr(loader, "dataset", None), "classes", None)
    if classes and len(classes) != num_classes:
        raise UsageError(f"Checkpoint {path!r} was trained on {num_classes} classes but the validation data has "
                         f"{len(classes)}; give the dataset it was trained on (--imagenet-data-path).")


def model_from_checkpoint(ckpt: Dict[str, Any], args: Any, backend: Backend, path: str,
                          log: Callable[[str], None]) -> torch.nn.Module:
    """The classifier the checkpoint was trained as, with its weights; a mismatch is a usage error."""
    model = prepare_model(args, backend, int(ckpt["num_classes"]), lambda _: None, pretrained=False)
    try:
        model.load_state_dict(ckpt["model_state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise UsageError(f"Checkpoint {path!r} holds a {ckpt['args'].get('model')} model that does not fit "
                         f"{args.model} as configured here ({detail}).") from None
    log(f"Loaded {os.path.basename(path)} (epoch {ckpt['epoch']}, model {args.model}).")
    return model


def parse_arguments(argv: Optional[Sequence[str]] = None) -> Tuple[argparse.Namespace, set]:
    parser = training_parser("Validate checkpoints written by train.py")
    argv = list(sys.argv[1:] if argv is None else argv)
    cli = parser.parse_args(argv)
    if not cli.checkpoint_path:
        raise UsageError("validate.py needs --checkpoint-path naming a checkpoint file or a folder of checkpoints.")
    explicit = explicit_options(parser, argv)
    refuse_unread(parser, explicit, training_only_options() | FROM_THE_CHECKPOINT | {"profile"}, "validate.py",
                  "it scores the weights each checkpoint holds, with the options the checkpoint recorded")
    return cli, explicit


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    cli, explicit = parse_arguments(argv)
    path = cli.checkpoint_path
    files = list_checkpoints(path) if os.path.isdir(path) else [path]
    results: Dict[str, float] = {}
    logger: Optional[RunLogger] = None
    for file in files:
        ckpt = load_checkpoint(file)
        args = check_training_args(normalise_args(args_from_checkpoint(ckpt, cli, explicit)))
        if args.data == "imagenet" and args.imagenet_data_path:
            datasets.check_imagenet_path(args.imagenet_data_path, train=False)
        backend = select_backend(args.device, args.half_dtype)
        if logger is None:
            logger = RunLogger(args, distributed.InstanceInfo(0, 1, 0), folder=None)
            logger.once(configure_host_allocator(getattr(args, "host_allocator", "resident"), backend.device)["note"])
        model = model_from_checkpoint(ckpt, args, backend, file, logger.log)
        results[file] = run_validation(model, args, backend, logger.log, (int(ckpt["num_classes"]), file))
    if logger is not None:
        logger.write_json("validation.json", results)
        logger.close()
    return results


def cli() -> None:
    """The ``cnns-validate`` command: main's return value is for callers, not the exit status."""
    main()


if __name__ == "__main__":
    cli()
