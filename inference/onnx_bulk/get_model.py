"""Build Cadene's ResNeXt-101, export it to ONNX with a fixed batch size, check it.

ONNX Runtime, like PopART, runs fastest on static shapes, so each batch size
gets its own file (``models/<name>/<name>_bs<B>.onnx``) and several coexist.
Weights come from the pretrainedmodels download when it can be reached, from
``--weights`` when given, and are otherwise random, which is said plainly.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import sys
import time
from pathlib import Path

from cnns.inference.onnx_bulk.resnext101 import MODEL_NAMES, input_preprocessing, model_file
from cnns.utils.atomic import TEMP_SUFFIX, remove_stale_temporaries, temp_prefix_of
from cnns.utils.errors import UsageError, exit_on_usage_error
from cnns.utils.validation import check_free_space, torch_file, writable_folder

HERE = Path(__file__).resolve().parent


class _Parser(argparse.ArgumentParser):
    """Flag errors become one ``error:`` sentence (exit code 2) instead of argparse's usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; run get_model.py -h for the options.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument(
        "--batch-size", "--micro-batch-size", dest="batch_size", type=int, default=6,
        help="fixed (micro) batch size baked into the ONNX graph: the batch of one process (default: 6)"
    )
    parser.add_argument(
        "--model-name",
        choices=MODEL_NAMES,
        default="resnext101_32x4d",
        help="pretrainedmodels architecture (default: resnext101_32x4d)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=HERE / "models",
        help="models folder; the file goes to <output-dir>/<model-name>/ (default: models/ beside this script)",
    )
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--weights", type=Path, help="local state_dict (.pth) to load instead of downloading"
    )
    weights.add_argument(
        "--random-weights", action="store_true", help="skip the download and export random weights"
    )
    parser.add_argument(
        "--exporter",
        choices=("auto", "dynamo", "legacy"),
        default="auto",
        help="torch.onnx exporter: dynamo needs onnxscript; auto uses dynamo when onnxscript is installed, legacy (TorchScript) otherwise",
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's own)")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="after export, run the model in ONNX Runtime and PyTorch on one random batch and print the largest difference",
    )
    parser.add_argument(
        "--half",
        action="store_true",
        help="export weights and input in float16, as the original ran the model on IPUs (--verify then "
        "compares with the float32 PyTorch model)",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    check_opset(parser, args)
    return args


def check_opset(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An opset the exporter cannot target would be ignored or fail deep in the export; refuse it."""
    if args.opset is None:
        return
    import onnx

    newest = onnx.defs.onnx_opset_version()
    dynamo = args.exporter == "dynamo" or (args.exporter == "auto" and importlib.util.find_spec("onnxscript"))
    oldest = DYNAMO_MIN_OPSET if dynamo else LEGACY_MIN_OPSET
    if not oldest <= args.opset <= newest:
        hint = "; pass --exporter legacy for older opsets" if dynamo and args.opset >= LEGACY_MIN_OPSET else ""
        parser.error(f"--opset {args.opset} is outside the {oldest}..{newest} the "
                     f"{'dynamo' if dynamo else 'legacy'} exporter supports{hint}")


LEGACY_MIN_OPSET = 7
DYNAMO_MIN_OPSET = 18


class WeightsError(Exception):
    """A --weights file that is not a matching state_dict."""


def check_export_fits(name: str, batch_size: int, side: int) -> None:
    """Exporting and checking run the model on one batch: refuse a batch whose input, activations and
    weights cannot fit in host memory (an estimate on the meta device, before any download)."""
    import torch

    from cnns.models.cadene import build_cadene_resnext101
    from cnns.utils.memory_need import Need, available_host_bytes, check_needs, footprint

    with torch.device("meta"):
        model = build_cadene_resnext101(name, 1000, pretrained=False)
    size = footprint(model.eval(), side)
    need = Need("host memory", (("inputs", batch_size * 3 * side ** 2 * 4),
                                ("activations", batch_size * size.peak * 4), ("weights", size.parameters * 4)))
    check_needs([(need, available_host_bytes)], f"--batch-size {batch_size} ({name}, {side}x{side} images)",
                "lower --batch-size")


def build_model(name: str, weights: Path | None, random_weights: bool):
    """Return (model in eval mode, a phrase saying where its weights came from); the model is the shared
    builder's (cnns.models.cadene), the one the PyTorch benchmark runs."""
    import torch

    from cnns.models.cadene import build_cadene_resnext101, pretrained_url
    from cnns.models.pretrained import PretrainedWeightsError

    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            model = build_cadene_resnext101(name, 1000, pretrained=False)
            model.load_state_dict(state)
        except Exception as error:
            detail = " ".join(str(error).split())[:200]
            raise WeightsError(
                f"Could not load {name} weights from {weights} ({type(error).__name__}: {detail})."
            ) from None
        return model.eval(), f"local:{weights}"
    if random_weights:
        return build_cadene_resnext101(name, 1000, pretrained=False).eval(), "random"
    url = pretrained_url(name)
    try:
        return build_cadene_resnext101(name, 1000, pretrained=True).eval(), f"imagenet:{url}"
    except PretrainedWeightsError as error:
        raise WeightsError(str(error)) from None
    except (OSError, RuntimeError) as error:
        print(f"Could not load pretrained ImageNet weights from {url} ({error}).")
        print("Exporting with RANDOM weights: throughput is meaningful, predictions are not.")
        return build_cadene_resnext101(name, 1000, pretrained=False).eval(), "random"


def export(model, batch_size: int, side: int, path: Path, exporter: str, opset: int | None,
           half: bool = False) -> str:
    """Export with a fixed batch (weights and input in float16 with ``half``); returns the exporter used."""
    import torch

    if exporter == "auto":
        exporter = "dynamo" if importlib.util.find_spec("onnxscript") else "legacy"
    if exporter == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        raise SystemExit(
            "The dynamo exporter needs onnxscript: pip install onnxscript, or pass --exporter legacy."
        )
    example = torch.randn(batch_size, 3, side, side)
    if half:
        model, example = copy.deepcopy(model).half(), example.half()
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = dict(input_names=["input"], output_names=["logits"], opset_version=opset)
    with torch.no_grad():
        if exporter == "dynamo":
            torch.onnx.export(
                model, (example,), str(path), dynamo=True, external_data=False, verbose=False, **kwargs
            )
        else:
            torch.onnx.export(model, (example,), str(path), dynamo=False, **kwargs)
    return exporter


def stamp_and_check(path: Path, metadata: dict[str, str]) -> None:
    """Record provenance in the model's metadata, then run the ONNX checker on the file."""
    import onnx

    model = onnx.load(str(path))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def verify(model, path: Path, batch_size: int, side: int) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime logits on a random batch."""
    import numpy as np
    import onnxruntime as ort
    import torch

    batch = torch.randn(batch_size, 3, side, side)
    with torch.no_grad():
        expected = model(batch).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    feed = batch.numpy().astype(np.float16 if model_input.type == "tensor(float16)" else np.float32)
    actual = session.run(None, {model_input.name: feed})[0]
    return float(np.abs(expected - actual.astype(np.float32)).max())


@exit_on_usage_error
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.weights is not None:
        torch_file(str(args.weights), "--weights")
    path = model_file(args.output_dir, args.model_name, args.batch_size)
    side = input_preprocessing()[1]
    writable_folder(str(path.parent), "--output-dir")
    check_export_fits(args.model_name, args.batch_size, side)
    try:
        model, source = build_model(args.model_name, args.weights, args.random_weights)
    except WeightsError as error:
        raise UsageError(str(error)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(str(path.parent), only_for=path.name)
    check_free_space(str(path.parent), 2 * sum(p.numel() * p.element_size() for p in model.state_dict().values()),
                     "The ONNX export")
    print(f"Weights: {source}")
    print(f"Converting model to batch size {args.batch_size} and saving to {path}", flush=True)
    start = time.perf_counter()
    partial = path.parent / f"{temp_prefix_of(path.name)}onnx{TEMP_SUFFIX}"
    try:
        used = export(model, args.batch_size, side, partial, args.exporter, args.opset, args.half)
        stamp_and_check(partial, {"weights": source, "batch_size": str(args.batch_size), "model_name": args.model_name,
                                  "precision": "float16" if args.half else "float32"})
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    print(
        f"Exported {args.model_name} (batch {args.batch_size}, {used} exporter) in {seconds:.1f} s; "
        "onnx.checker passed."
    )
    if args.verify:
        print(f"Max |PyTorch - ONNX Runtime| on a random batch: {verify(model, path, args.batch_size, side):.3e}")
    print(f"Model written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
