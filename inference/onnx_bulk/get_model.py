"""Build Cadene's ResNeXt-101, export it to ONNX with a fixed batch size, check it.

ONNX Runtime, like PopART, runs fastest on static shapes, so each batch size
gets its own file (``models/<name>/<name>_bs<B>.onnx``) and several coexist.
Weights come from the pretrainedmodels download when it can be reached, from
``--weights`` when given, and are otherwise random, which is said plainly.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from resnext101 import MODEL_NAMES, model_file  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


class WeightsError(Exception):
    """A --weights file that is not a matching state_dict."""


def build_model(name: str, weights: Path | None, random_weights: bool):
    """Return (model in eval mode, a phrase saying where its weights came from)."""
    import pretrainedmodels
    import torch

    factory = getattr(pretrainedmodels, name)
    if weights is not None:
        model = factory(num_classes=1000, pretrained=None)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            model.load_state_dict(state)
        except Exception as error:
            detail = " ".join(str(error).split())[:200]
            raise WeightsError(
                f"Could not load {name} weights from {weights} ({type(error).__name__}: {detail})."
            ) from None
        return model.eval(), f"local:{weights}"
    if random_weights:
        return factory(num_classes=1000, pretrained=None).eval(), "random"
    url = pretrainedmodels.pretrained_settings[name]["imagenet"]["url"]
    try:
        return factory(num_classes=1000, pretrained="imagenet").eval(), f"imagenet:{url}"
    except (OSError, RuntimeError, ValueError) as error:
        print(f"Could not load pretrained ImageNet weights from {url} ({error}).")
        print("Exporting with RANDOM weights: throughput is meaningful, predictions are not.")
        return factory(num_classes=1000, pretrained=None).eval(), "random"


def export(model, batch_size: int, path: Path, exporter: str, opset: int | None) -> str:
    """Export with a fixed batch; returns the exporter actually used."""
    import torch

    if exporter == "auto":
        exporter = "dynamo" if importlib.util.find_spec("onnxscript") else "legacy"
    if exporter == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        raise SystemExit(
            "The dynamo exporter needs onnxscript: pip install onnxscript, or pass --exporter legacy."
        )
    example = torch.randn(batch_size, 3, 224, 224)
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


def verify(model, path: Path, batch_size: int) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime logits on a random batch."""
    import numpy as np
    import onnxruntime as ort
    import torch

    batch = torch.randn(batch_size, 3, 224, 224)
    with torch.no_grad():
        expected = model(batch).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]
    return float(np.abs(expected - actual).max())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.weights is not None and not args.weights.is_file():
        print(f"Weights file {args.weights} does not exist.", file=sys.stderr)
        return 2
    path = model_file(args.output_dir, args.model_name, args.batch_size)
    try:
        model, source = build_model(args.model_name, args.weights, args.random_weights)
    except WeightsError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"Weights: {source}")
    print(f"Converting model to batch size {args.batch_size} and saving to {path}", flush=True)
    start = time.perf_counter()
    used = export(model, args.batch_size, path, args.exporter, args.opset)
    stamp_and_check(
        path, {"weights": source, "batch_size": str(args.batch_size), "model_name": args.model_name}
    )
    seconds = time.perf_counter() - start
    print(
        f"Exported {args.model_name} (batch {args.batch_size}, {used} exporter) in {seconds:.1f} s; "
        "onnx.checker passed."
    )
    if args.verify:
        print(f"Max |PyTorch - ONNX Runtime| on a random batch: {verify(model, path, args.batch_size):.3e}")
    print(f"Model written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
