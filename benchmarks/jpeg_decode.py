"""JPEG decode + resize throughput, one CPU core: Pillow vs Pillow-SIMD vs torchvision's decoder
(``torchvision.io.decode_jpeg``), and torchvision's GPU decoder when CUDA is present. Each decoder turns
the same in-memory JPEG files into uint8 arrays whose shorter side is ``--size`` (what the loader does
before cropping); the figure is images / wall time over at least ``--seconds``, after one untimed pass.

Pillow and Pillow-SIMD cannot be imported side by side, so the other one runs in a subprocess from a
``pip install --target`` folder: give it with ``--other-pil DIR`` or let ``--install-other-pil`` build
it into a temporary folder (the project's venv is never touched). Ratios are against plain Pillow.
"""

import argparse
import glob
import io
import json
import math
import os
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from portable_poptorch.device import device_name
from cnns.utils.argparser import add_debug_option, new_parser
from cnns.utils.atomic import write_json
from cnns.utils.errors import UsageError, exit_on_usage_error, run_child
from cnns.utils.validation import MAX_IMAGE_SIDE, check_finite, existing_folder, in_range, writable_file

DEFAULT_IMAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "images")
Result = Dict[str, object]


def cpu_model() -> str:
    return device_name(torch.device("cpu"))


def jpeg_files(folder: str) -> List[str]:
    """The folder's JPEG files, under the extensions cameras and ImageNet use."""
    return sorted(glob.glob(os.path.join(folder, "*.jp*g")) + glob.glob(os.path.join(folder, "*.JPEG")))


def load_images(folder: Optional[str]) -> List[bytes]:
    """The JPEG files of ``folder`` (default data/images), else (only when the default folder has none)
    scikit-image's photographs as JPEGs."""
    files = jpeg_files(folder or DEFAULT_IMAGES)
    if not files:
        from cnns.datasets.make_sample_images import write_samples
        with tempfile.TemporaryDirectory(prefix="jpeg_decode_") as folder:
            return [open(f, "rb").read() for f in write_samples(folder)]
    return [open(f, "rb").read() for f in files]


def shorter_side_to(width: int, height: int, size: int) -> tuple:
    scale = size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def pillow_decoder(size: int, draft: bool) -> Callable[[bytes], np.ndarray]:
    from PIL import Image

    def decode(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as img:
            if draft:  # let libjpeg scale by 1/2, 1/4 or 1/8 while decoding, never below the target
                img.draft("RGB", shorter_side_to(img.width, img.height, size))
            rgb = img.convert("RGB")
        return np.asarray(rgb.resize(shorter_side_to(rgb.width, rgb.height, size), Image.BILINEAR))
    return decode


def torchvision_decoder(size: int) -> Callable[[bytes], object]:
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms import functional as F

    def decode(data: bytes) -> object:
        image = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        return F.resize(image, [size], antialias=True)
    return decode


def timed(decode: Callable[[bytes], object], images: List[bytes], seconds: float) -> float:
    """Images per second over whole passes lasting at least ``seconds`` (one untimed pass first)."""
    for data in images:
        decode(data)
    count, start = 0, time.perf_counter()
    while True:
        for data in images:
            decode(data)
        count += len(images)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def cuda_rate(images: List[bytes], size: int, seconds: float, batch: int = 64) -> Optional[float]:
    """Batched GPU decode + resize (torchvision.io.decode_jpeg(device='cuda')), or None without CUDA."""
    import torch
    if not torch.cuda.is_available():
        return None
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms import functional as F
    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in images]
    tensors = (tensors * (batch // len(tensors) + 1))[:batch]

    def run() -> None:
        decoded = decode_jpeg(tensors, device="cuda", mode=ImageReadMode.RGB)
        for image in decoded:
            F.resize(image, [size], antialias=True)
        torch.cuda.synchronize()
    run()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        count += len(tensors)
    return count / (time.perf_counter() - start)


def measure(images: List[bytes], size: int, seconds: float, only_pil: bool) -> List[Result]:
    from cnns.datasets.pil_info import pil_info
    pil = pil_info()
    name = "pillow-simd" if pil["simd"] else "pillow"
    label = f"{pil['distribution']} {pil['version']}"
    results: List[Result] = [
        {"decoder": name, "library": label, "img_per_sec": timed(pillow_decoder(size, False), images, seconds)},
        {"decoder": f"{name} + draft", "library": label,
         "img_per_sec": timed(pillow_decoder(size, True), images, seconds)},
    ]
    if only_pil:
        return results
    import torch
    import torchvision
    torch.set_num_threads(1)
    results.append({"decoder": "torchvision.io.decode_jpeg (CPU)", "library": f"torchvision {torchvision.__version__}",
                    "img_per_sec": timed(torchvision_decoder(size), images, seconds)})
    gpu = cuda_rate(images, size, seconds)
    if gpu is None:
        print("GPU decoding (torchvision.io.decode_jpeg(device='cuda')) skipped: no CUDA device here.")
    else:
        results.append({"decoder": f"torchvision.io.decode_jpeg (CUDA, {torch.cuda.get_device_name()})",
                        "library": f"torchvision {torchvision.__version__}", "img_per_sec": gpu})
    return results


def other_pil(target: str, args: argparse.Namespace) -> List[Result]:
    """Run the Pillow measurements in a subprocess that imports PIL from ``target`` first."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([target, env_path()]).rstrip(os.pathsep))
    command = [sys.executable, os.path.abspath(__file__), "--only-pil", "--size", str(args.size),
               "--seconds", str(args.seconds), "--json", "-"] + (["--images", args.images] if args.images else [])
    out = run_child(command, f"The measurement with the PIL of {target}", env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["results"]


def env_path() -> str:
    return os.environ.get("PYTHONPATH", "")


def install_other_pil(current_is_simd: bool) -> str:
    """pip-install the other PIL flavour into a temporary folder (Pillow-SIMD is built from source)."""
    target = tempfile.mkdtemp(prefix="other_pil_")
    package = "pillow" if current_is_simd else "pillow-simd"
    env = dict(os.environ, CC=os.environ.get("CC", "cc -mavx2"))
    print(f"Installing {package} into {target} (pip install --target; may take minutes to build) ...")
    run_child([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-cache-dir", "--target", target, package],
              f"pip install of {package}", env=env)
    return target


def report(results: List[Result], images: List[bytes], args: argparse.Namespace) -> None:
    base = next((r["img_per_sec"] for r in results if r["decoder"] == "pillow"), None)
    print(f"CPU: {cpu_model()}; {len(images)} JPEGs, mean {np.mean([len(d) for d in images]) / 1024:.0f} KiB; "
          f"decode + resize shorter side to {args.size}; one thread")
    print(f"{'decoder':48s} {'library':28s} {'img/s':>9s} {'vs pillow':>9s}")
    for r in results:
        ratio = f"{r['img_per_sec'] / base:.2f}x" if base else "n/a"
        print(f"{r['decoder']:48s} {r['library']:28s} {r['img_per_sec']:9.1f} {ratio:>9s}")


def parse_arguments(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The options, every value and path checked before the first image is decoded."""
    parser = new_parser(__doc__, raw_description=True)
    parser.add_argument("--images", default=None, help="Folder of JPEGs (default data/images, else scikit-image's)")
    parser.add_argument("--size", type=int, default=256, help="Shorter side after the resize")
    parser.add_argument("--seconds", type=float, default=3.0, help="Minimum timed seconds per decoder")
    parser.add_argument("--other-pil", default=None, help="pip --target folder holding the other PIL flavour")
    parser.add_argument("--install-other-pil", action="store_true",
                        help="pip-install the other flavour (pillow-simd or pillow) into a temporary folder first")
    parser.add_argument("--only-pil", action="store_true", help="Only the PIL measurements (used for the subprocess)")
    parser.add_argument("--json", default=None, help="Also write the results as JSON to this file ('-': stdout)")
    add_debug_option(parser)
    args = parser.parse_args(argv)
    check_finite(args)
    in_range(args, "size", 1, MAX_IMAGE_SIDE)
    in_range(args, "seconds", 0.0, math.inf, low_open=True, high_open=True)
    if args.images is not None and not jpeg_files(existing_folder(args.images, "--images")):
        raise UsageError(f"--images {args.images} holds no JPEG files (*.jpg, *.jpeg, *.JPEG); give a folder of JPEGs.")
    existing_folder(args.other_pil, "--other-pil")
    if args.json != "-":
        writable_file(args.json, "--json")
    return args


@exit_on_usage_error
def main(argv: Optional[Sequence[str]] = None) -> List[Result]:
    args = parse_arguments(argv)
    images = load_images(args.images)
    results = measure(images, args.size, args.seconds, args.only_pil)
    if not args.only_pil:
        from cnns.datasets.pil_info import pil_info
        target = args.other_pil or (install_other_pil(bool(pil_info()["simd"])) if args.install_other_pil else None)
        if target:
            results[2:2] = other_pil(target, args)
        else:
            print("Other PIL flavour not measured; pass --other-pil DIR or --install-other-pil to compare.")
    if args.json == "-":
        print(json.dumps({"results": results}))
    else:
        report(results, images, args)
        if args.json:
            write_json(args.json, {"cpu": cpu_model(), "size": args.size, "results": results})
    return results


if __name__ == "__main__":
    main()
