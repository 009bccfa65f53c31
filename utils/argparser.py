"""Options shared by inference and training, YAML presets, and normalisation of old spellings.

Both scripts build their parser with ``new_parser()`` and ``add_common_options()`` so an option means
the same thing everywhere; presets (``--config NAME``) set defaults that any command-line flag overrides.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from portable_poptorch.compilers import EXECUTORS

from . import distributed
from .distributed import DEFAULT_COLLECTIVE_TIMEOUT_S
from .errors import UsageError
from .option_values import checked_mapping, load_yaml_mapping
from .validation import check_common

PRECISION_ALIASES = {"full": "32.32", "half": "16.16"}
PRECISIONS = ("16.16", "16.32", "32.32")
NORM_TYPES = ("batch", "group", "none")
NORMALIZATION_LOCATIONS = ("host", "ipu", "none")

BATCHNORM_MOMENTUM = 0.1   # torch.nn.BatchNorm's own default


def executor_streams(text: str) -> Optional[int]:
    """``--executor-streams``: auto (None) or a whole number of streams >= 1."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be auto or a whole number >= 1, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage, so errors are one sentence."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message[0].upper() + message[1:] + (". " if not message.endswith(".") else " ")
                         + f"Run {self.prog} -h for the options.")


class _RawDescriptionDefaults(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults and keeps the description's line breaks (a benchmark's docstring holds commands)."""


def new_parser(description: str, show_defaults: bool = True, raw_description: bool = False) -> argparse.ArgumentParser:
    """A parser whose errors are one UsageError sentence; ``show_defaults`` False where the help strings
    already state them; ``raw_description`` keeps the description as written (defaults shown)."""
    if raw_description:
        formatter = _RawDescriptionDefaults
    else:
        formatter = argparse.ArgumentDefaultsHelpFormatter if show_defaults else argparse.HelpFormatter
    return _Parser(description=description, formatter_class=formatter, allow_abbrev=False)


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    """``--debug``, which exit_on_usage_error reads to show the traceback instead of one error line."""
    parser.add_argument("--debug", action="store_true", help="Show the Python traceback of a failure instead of "
                                                             "one error line (also HARNESS_DEBUG=1)")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options of the original common parser plus the backend choice."""
    from cnns.models import available_models
    from cnns.models.original_names import MAPPING_HELP
    p = parser.add_argument
    p("--config", type=str, default=None, help="Preset name from the script's configs.yml; command-line flags override it")
    p("--model", type=str, default="resnet18",
      help=f"Model name: {', '.join(available_models())} (also efficientnetb0 style aliases)")
    p("--batch-size", type=int, default=1, help="Micro-batch size per replica")
    p("--replicas", type=int, default=1, help="Number of data-parallel replicas in this instance")
    p("--device-iterations", "--device-iteration", dest="device_iterations", type=int, default=1,
      help="Steps run on the device per host call (one host->device transfer per call)")
    p("--precision", type=str, default="16.16",
      help="Weights/activations and master precision: 16.16, 16.32, 32.32 (or full=32.32, half=16.16)")
    p("--half-partial", action="store_true", help="Accumulate matmul/conv partials in half precision")
    p("--norm-type", "--normlayer", dest="norm_type", default="batch", help=f"Norm layer: {', '.join(NORM_TYPES)}")
    p("--norm-num-groups", "--groupnorm-group-num", dest="norm_num_groups", type=int, default=32,
      help="Number of groups for group norm")
    p("--norm-eps", type=float, default=1e-5, help="Epsilon of the norm layers")
    p("--batchnorm-momentum", type=float, default=BATCHNORM_MOMENTUM, help="Batch-norm running statistics momentum")
    p("--full-precision-norm", action="store_true", help="Compute norm layers in float32 when the model is half")
    p("--enable-fast-groupnorm", action="store_true", help="IPU strided-channel group norm (no effect off IPU)")
    p("--pipeline-splits", type=str, nargs="+", default=[],
      help="Module paths starting each pipeline stage, e.g. layer2 layer3/1 _blocks/4. " + MAPPING_HELP)
    p("--available-memory-proportion", type=float, nargs="+", default=None,
      help="Proportion of IPU memory for convolutions/matmuls, one value or one per stage (no effect off IPU)")
    p("--exchange-memory-target", choices=["cycles", "balanced", "memory"], default=None,
      help="IPU exchange optimisation target (no effect off IPU)")
    p("--num-io-tiles", type=int, default=0,
      help="IPU tiles for overlapped IO; on CUDA, >0 overlaps the next micro-batch copy with compute")
    p("--eight-bit-io", action="store_true", help="Send uint8 images to the device and normalise there")
    p("--normalization-location", choices=NORMALIZATION_LOCATIONS, default=None,
      help="Where inputs are normalised: host, ipu (on the device) or none; unset = host, or ipu with --eight-bit-io")
    p("--dataloader-worker", type=int, default=None, help="Data-loader worker processes; unset = min(32, CPUs) as the original")
    p("--dataloader-rebatch-size", type=int, default=None,
      help="Worker-side batch size; workers' batches are rebatched into full host batches")
    p("--input-image-padding", action="store_true",
      help="Pad input images to 4 channels (a zero 4th channel; the first convolution takes 4 channels)")
    p("--efficientnet-expand-ratio", type=int, default=6, help="Expand ratio of EfficientNet MBConv blocks")
    p("--efficientnet-group-dim", type=int, default=1, help="Channels per group of EfficientNet depthwise convs")
    p("--profile", action="store_true", help="Write a profile (torch.profiler trace off IPU) to the run's log folder")
    p("--model-cache-path", type=str, default=None,
      help="Executable cache (PopTorch's enableExecutableCaching; POPTORCH_CACHE_DIR when unset): off IPU the "
           "compiled artefacts (Inductor cache, ONNX Runtime model, OpenVINO IR) and auto's executor choice")
    p("--executor", choices=EXECUTORS, default="auto",
      help="Off IPU, what compiles the model before the first call: auto (times every available executor on "
           "the first micro-batch and keeps the fastest), eager, inductor (torch.compile), onnxruntime, "
           "openvino (the last two on the CPU only). On IPU PopTorch compiles; the option is recorded")
    p("--weights", type=str, default=None, help="Load model weights from this file (state_dict or checkpoint)")
    p("--seed", type=int, default=0, help="Random seed (generated data and --random-weights draw from it)")
    p("--device", choices=["auto", "ipu", "cuda", "cpu"], default="auto",
      help="Where to run: auto picks IPU when poptorch imports, else CUDA when present, else CPU")
    p("--half-dtype", choices=["auto", "float16", "bfloat16"], default="auto",
      help="Type used for 'half' off IPU: auto = float16 on CUDA, bfloat16 on CPUs with native bfloat16 "
           "(AVX512-BF16/AMX), float32 on other CPUs (said in the log and results.json)")
    p("--memory-format", choices=["auto", "contiguous", "channels_last"], default="auto",
      help="Activation layout off IPU: auto = channels_last on CUDA, contiguous on CPU")
    p("--host-allocator", choices=["resident", "default"], default="resident",
      help="CPU runs: resident = glibc keeps freed buffers up to 32 MiB for reuse, so activations are not "
           "page-faulted in again every step (and, for run_benchmark.py on Linux with THP at madvise, a restart "
           "with glibc.malloc.hugetlb=1 for 2 MiB pages); default = glibc's own settings")
    p("--log-path", type=str, default="logs", help="Parent folder of the run's log folder")
    add_debug_option(parser)
    p("--collective-timeout", type=float, default=DEFAULT_COLLECTIVE_TIMEOUT_S,
      help="Multi-instance runs: seconds any collective between instances (metric sums, gradient all-reduce, "
           "barriers) may wait before failing the run instead of hanging; raise it when instance 0's validation "
           "or one instance's compilation takes longer")


def load_presets(config_file: str) -> Dict[str, Dict[str, Any]]:
    return load_yaml_mapping(config_file)


def parse_with_config(parser: argparse.ArgumentParser, config_file: str,
                      argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse ``argv``; a ``--config`` preset becomes the defaults, then flags given on the line win."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.config:
        presets = load_presets(config_file)
        if args.config not in presets:
            names = ", ".join(k for k in presets if not k.startswith("common"))
            raise UsageError(f"--config {args.config!r} is not a preset in {os.path.basename(config_file)}; "
                             f"presets: {names}.")
        parser.set_defaults(**_checked_preset(parser, args.config, presets[args.config]))
        args = parser.parse_args(argv)
    return normalise_args(args)


def _checked_preset(parser: argparse.ArgumentParser, name: str, preset: Dict[str, Any]) -> Dict[str, Any]:
    """Preset keys must be option names; values are converted and checked like command-line values."""
    return checked_mapping(parser, preset, f"Preset {name!r}", unknown_allowed=False)


def normalise_args(args: argparse.Namespace) -> argparse.Namespace:
    """Map old spellings to one form and check values argparse cannot."""
    if hasattr(args, "precision"):
        args.precision = PRECISION_ALIASES.get(str(args.precision), str(args.precision))
        if args.precision not in PRECISIONS:
            raise UsageError(f"--precision {args.precision!r} is not one of {', '.join(PRECISIONS)}, full or half.")
    if hasattr(args, "norm_type") and args.norm_type not in NORM_TYPES:
        raise UsageError(f"--norm-type {args.norm_type!r} is not one of {', '.join(NORM_TYPES)}.")
    _apply_launcher(args)
    for name in ("batch_size", "replicas", "device_iterations"):
        if getattr(args, name, 1) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if getattr(args, "iterations", 1) is not None and getattr(args, "iterations", 1) < 1:
        raise UsageError(f"--iterations must be at least 1, got {args.iterations}.")
    from cnns.models import canonical_model_name
    args.model = canonical_model_name(args.model)
    _translate_original_splits(args)
    if args.normalization_location is None:
        args.normalization_location = "ipu" if args.eight_bit_io else "host"
    elif args.eight_bit_io and args.normalization_location == "host":
        args.normalization_location = "ipu"
        args.notes = getattr(args, "notes", []) + [
            "--eight-bit-io needs device-side normalisation; normalisation moved to the device (ipu)."]
    if args.dataloader_worker is None:
        args.dataloader_worker = min(32, os.cpu_count() or 1)
    check_common(args)
    return args


def _translate_original_splits(args: argparse.Namespace) -> None:
    """Pipeline splits written with the original application's module names name this project's modules."""
    from cnns.models.original_names import translate_module_paths
    splits = list(getattr(args, "pipeline_splits", []) or [])
    translated = translate_module_paths(args.model, splits)
    for old, new in zip(splits, translated):
        if old != new:
            args.notes = getattr(args, "notes", []) + [
                f"Pipeline split {old} (the original application's module name) is {new} in this model."]
    args.pipeline_splits = translated


def _apply_launcher(args: argparse.Namespace) -> None:
    """poprun/popdist settings: this instance's share of --num-replicas, --ipus-per-replica checked against
    the pipeline stages, and --executable-cache-path as the model cache path."""
    replicas = distributed.local_replicas()
    if replicas is not None and hasattr(args, "replicas"):
        args.replicas = replicas
    ipr = distributed.ipus_per_replica()
    splits = getattr(args, "pipeline_splits", None)
    if ipr is not None and splits is not None and ipr != len(splits) + 1:
        raise UsageError(f"poprun --ipus-per-replica {ipr} does not match this program's {len(splits) + 1} pipeline "
                         f"stage(s) (--pipeline-splits {' '.join(splits) or 'none'}); give --ipus-per-replica "
                         f"{len(splits) + 1} or {ipr - 1} pipeline split(s).")
    cache = distributed.executable_cache_path()
    if cache and hasattr(args, "model_cache_path") and not args.model_cache_path:
        args.model_cache_path = cache
    if getattr(args, "collective_timeout", 1) <= 0:
        raise UsageError(f"--collective-timeout must be a positive number of seconds, got {args.collective_timeout}.")


def option_strings(parser: argparse.ArgumentParser) -> List[str]:
    return [s for a in parser._actions for s in a.option_strings]
