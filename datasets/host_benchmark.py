"""Host data-loading throughput: the training (or validation) input pipeline alone, no model, so you can
tell whether the host keeps up with the device. Uses the same get_data and poptorch.DataLoader as
training; every epoch prints ``Throughput of the epoch:X img/sec`` (images / wall time of the epoch)."""

import argparse
import os
import time
from typing import List, Optional, Sequence

from cnns import datasets
from cnns.datasets.pil_info import pil_description
from cnns.utils import distributed
from cnns.utils.argparser import NORMALIZATION_LOCATIONS, PRECISIONS, new_parser
from cnns.utils.backend import select_backend
from cnns.utils.errors import UsageError, exit_on_usage_error
from cnns.utils.memory_need import Need, available_host_bytes, check_needs
from cnns.utils.validation import check_common_values, existing_folder


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    p = parser.add_argument
    p("--batch-size", type=int, default=256, help="Host batch size (the combined batch a device call consumes)")
    p("--data", choices=["imagenet", "real", "cifar10"], default="imagenet",
      help="imagenet: --imagenet-data-path (image or WebDataset folder); real: data/images; cifar10: torchvision's")
    p("--split", choices=["train", "validation"], default="train",
      help="train: random-resized crop + flip; validation: resize + centre crop")
    p("--disable-async-loading", action="store_true", help="Load in the caller instead of on a background thread")
    p("--normalization-location", choices=NORMALIZATION_LOCATIONS, default=None,
      help="host: normalise here; ipu: leave it to the device; none: scale to 0..1 (unset: host, ipu with 8-bit IO)")
    p("--dataloader-worker", type=int, default=min(8, os.cpu_count() or 1), help="Loader worker processes")
    p("--eight-bit-io", action="store_true", help="Send uint8 images (normalised on the device)")
    p("--dataloader-rebatch-size", type=int, default=None,
      help="Worker-side batch size, rebatched into full host batches (async loading only)")
    p("--precision", choices=PRECISIONS, default="16.16", help="16.x: images cast to half on the host")
    p("--input-size", type=int, default=224, help="Image side in pixels")
    p("--epochs", type=int, default=2, help="Epochs to time (the first includes starting the workers)")
    p("--seed", type=int, default=0, help="Seed of the augmentations and shuffling")
    datasets.add_data_options(parser)
    args = parser.parse_args(argv)
    for name in ("batch_size", "input_size", "epochs"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if args.dataloader_worker < 0:
        raise UsageError(f"--dataloader-worker must be 0 or more, got {args.dataloader_worker}.")
    check_common_values(args)
    if args.data == "imagenet" and not args.imagenet_data_path:
        raise UsageError("--data imagenet needs --imagenet-data-path (an image folder or a WebDataset folder).")
    existing_folder(args.imagenet_data_path, "--imagenet-data-path")
    if args.normalization_location is None or (args.eight_bit_io and args.normalization_location == "host"):
        args.normalization_location = "ipu" if args.eight_bit_io else "host"
    check_batch_fits(args)
    return args


def check_batch_fits(args: argparse.Namespace) -> None:
    """The loader holds at least one host batch of decoded images; refuse one that cannot fit."""
    value = 1 if args.eight_bit_io else 2 if args.precision.startswith("16") else 4
    need = Need("host memory", (("images", args.batch_size * 3 * args.input_size ** 2 * value),))
    check_needs([(need, available_host_bytes)],
                f"--batch-size {args.batch_size} ({args.input_size}x{args.input_size} images)",
                "lower --batch-size or --input-size")


def run(args: argparse.Namespace) -> List[float]:
    """Time ``args.epochs`` epochs; returns the throughput of each in images per second."""
    backend = select_backend("auto", "auto")
    info = distributed.instance_info()
    opts = backend.poptorch.Options()
    opts.randomSeed(args.seed)
    if info.size > 1:
        opts.Distributed.configureProcessId(info.rank, info.size)
    loader = datasets.get_data(args, opts, backend.poptorch, train=args.split == "train", input_size=args.input_size,
                               half_dtype=backend.half_dtype, async_dataloader=not args.disable_async_loading)
    if len(loader) == 0:
        raise UsageError(f"The {args.split} data holds fewer images than one batch of {args.batch_size}; "
                         f"lower --batch-size.")
    print(f"{info.prefix} {args.data} {args.split}: {len(loader)} batches of {args.batch_size} per epoch, "
          f"{args.dataloader_worker} workers, {'sync' if args.disable_async_loading else 'async'} loading; "
          f"{pil_description()}".strip())
    rates = []
    for _ in range(args.epochs):
        images = 0
        start = time.perf_counter()
        for batch, _labels in loader:
            images += batch.shape[0]
        rate = images / (time.perf_counter() - start)
        rates.append(rate)
        print(f"{info.prefix} Throughput of the epoch:{rate:.1f} img/sec".strip(), flush=True)
    skipped = datasets.skipped_images(loader)
    if skipped:
        print(f"{info.prefix} Skipped {skipped} corrupt images.".strip())
    return rates


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> List[float]:
    return run(parse_arguments(argv))


if __name__ == "__main__":
    main()
