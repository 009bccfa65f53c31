"""Object bounding boxes for ``--use-bbox-info``: random crops must keep part of the object.

The CSV is the ImageNet 2012 bounding-box file as written by the usual conversion scripts: one box per
row, ``file name, xmin, ymin, xmax, ymax`` with coordinates relative to the image size (0..1), several
rows for images with several objects. Images absent from the file are cropped without constraint.
"""
from __future__ import annotations

import csv
import os
from typing import Dict, List, Optional, Sequence, Tuple

from cnns.utils.errors import UsageError

BBOX_FILE = "imagenet_2012_bounding_boxes.csv"
MIN_OBJECT_COVERAGE = 0.1

Box = Tuple[float, float, float, float]


def bbox_file(root: str) -> str:
    return os.path.join(root, BBOX_FILE)


def load_boxes(path: str) -> Dict[str, List[Box]]:
    """Boxes by image file name (no folder); a malformed row is a usage error naming file and line."""
    if not os.path.isfile(path):
        raise UsageError(f"--use-bbox-info needs the bounding-box file {path}, which does not exist; "
                         f"put {BBOX_FILE} (name,xmin,ymin,xmax,ymax per row) beside train/ or drop the option.")
    boxes: Dict[str, List[Box]] = {}
    with open(path, newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or (line_no == 1 and not _is_number(row[1] if len(row) > 1 else "")):
                continue
            boxes.setdefault(os.path.basename(row[0].strip()), []).append(_parse_box(row, path, line_no))
    return boxes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_box(row: Sequence[str], path: str, line_no: int) -> Box:
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in row[1:5])
        if len(row) != 5:
            raise ValueError
    except ValueError:
        raise UsageError(f"Line {line_no} of {path} is {','.join(row)!r}; each row must be "
                         f"'file,xmin,ymin,xmax,ymax' with coordinates between 0 and 1.") from None
    if not (0.0 <= xmin < xmax <= 1.0 and 0.0 <= ymin < ymax <= 1.0):
        raise UsageError(f"Line {line_no} of {path} has box {xmin},{ymin},{xmax},{ymax}; coordinates must "
                         f"satisfy 0 <= min < max <= 1.")
    return xmin, ymin, xmax, ymax


def coverage(crop: Tuple[int, int, int, int], box: Box, height: int, width: int) -> float:
    """Fraction of the box's area inside the crop ``(top, left, h, w)`` of a ``height x width`` image."""
    top, left, h, w = crop
    x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    inter_w = max(0.0, min(x1, left + w) - max(x0, left))
    inter_h = max(0.0, min(y1, top + h) - max(y0, top))
    area = (x1 - x0) * (y1 - y0)
    return inter_w * inter_h / area if area > 0 else 0.0


def keeps_object(crop: Tuple[int, int, int, int], boxes: Optional[Sequence[Box]], height: int, width: int,
                 minimum: float = MIN_OBJECT_COVERAGE) -> bool:
    """True without boxes, else when at least ``minimum`` of some box lies inside the crop."""
    if not boxes:
        return True
    return any(coverage(crop, box, height, width) >= minimum for box in boxes)


def crop_boxes(boxes: Optional[Sequence[Box]], crop: Tuple[int, int, int, int], height: int,
               width: int) -> Optional[List[Box]]:
    """Boxes in the coordinates of a fixed crop (for pre-cropped WebDataset shards); boxes outside are dropped."""
    if boxes is None:
        return None
    top, left, h, w = crop
    out = []
    for x0, y0, x1, y1 in boxes:
        nx0 = (max(x0 * width, left) - left) / w
        ny0 = (max(y0 * height, top) - top) / h
        nx1 = (min(x1 * width, left + w) - left) / w
        ny1 = (min(y1 * height, top + h) - top) / h
        if nx1 > nx0 and ny1 > ny0:
            out.append((nx0, ny0, nx1, ny1))
    return out
