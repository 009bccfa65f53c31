"""Module names of Graphcore's original application, mapped onto this project's models.

The original built EfficientNet with timm (``blocks/<stage>/<block>``) and its own MobileNet v3
(``mb_block/<k>``), and named recomputation checkpoints after torch.fx nodes of the traced model
(``add``, ``add/1``: the residual additions). Here EfficientNet is efficientnet_pytorch (one flat
``_blocks/<n>`` list), MobileNet v3 is torchvision's (``features/<k+1>``; ``features/0`` is the stem)
and checkpoints go on module outputs, so these names are translated before they are used.
"""
from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

from torch import nn

SEPARATOR = "/"
# Stage repeats of EfficientNet-B0; other sizes multiply them by the depth coefficient, rounded up.
EFFICIENTNET_B0_REPEATS = (1, 2, 2, 3, 3, 4, 1)
EFFICIENTNET_DEPTH = {"efficientnet-b0": 1.0, "efficientnet-b1": 1.1, "efficientnet-b2": 1.2,
                      "efficientnet-b3": 1.4, "efficientnet-b4": 1.8, "efficientnet-b5": 2.2,
                      "efficientnet-b6": 2.6, "efficientnet-b7": 3.1}
# Sub-paths naming the first layer of an original block: a split there starts the block itself.
FIRST_LAYER_SUFFIXES = ("", "conv_pw", "conv_dw", "seq/0", "seq")
MAPPING_HELP = ("Module names of the original application are accepted: EfficientNet blocks/<stage>/<block> "
                "(timm) -> _blocks/<n>, MobileNet v3 mb_block/<k> -> features/<k+1>, and for recomputation "
                "checkpoints torch.fx node names such as add, add/1 -> the module computing them.")


def efficientnet_stage_starts(model_name: str) -> List[int]:
    """Flat index of the first block of each stage of efficientnet_pytorch's ``_blocks``."""
    depth = EFFICIENTNET_DEPTH[model_name]
    repeats = [int(math.ceil(depth * r)) for r in EFFICIENTNET_B0_REPEATS]
    return [sum(repeats[:stage]) for stage in range(len(repeats) + 1)]


def _split_original(path: str, prefix: str, indices: int) -> Optional[Tuple[List[int], str]]:
    pattern = rf"{prefix}" + "".join(r"/(\d+)" for _ in range(indices)) + r"(?:/(.*))?"
    match = re.fullmatch(pattern, path)
    if not match:
        return None
    groups = match.groups()
    return [int(g) for g in groups[:indices]], groups[indices] or ""


def translate_module_path(model_name: str, path: str) -> str:
    """This project's module path for an original one; other paths are returned unchanged.

    Only a block, or its first layer, is translated (both start the block); a path deeper inside an
    original block has no counterpart and is returned unchanged, so the caller's error lists the
    valid names.
    """
    if model_name in EFFICIENTNET_DEPTH:
        parts = _split_original(path, "blocks", 2)
        if parts and parts[1] in FIRST_LAYER_SUFFIXES:
            (stage, block), _ = parts
            starts = efficientnet_stage_starts(model_name)
            if stage < len(starts) - 1 and starts[stage] + block < starts[stage + 1]:
                return f"_blocks{SEPARATOR}{starts[stage] + block}"
    if model_name.startswith("mobilenet-v3"):
        parts = _split_original(path, "mb_block", 1)
        if parts and parts[1] in FIRST_LAYER_SUFFIXES:
            return f"features{SEPARATOR}{parts[0][0] + 1}"
    return path


def translate_module_paths(model_name: str, paths: Sequence[str]) -> List[str]:
    return [translate_module_path(model_name, p) for p in paths]


def fx_node_modules(model: nn.Module) -> Dict[str, str]:
    """Original-style torch.fx node names ('_' written as '/') -> path of the module that computes them.

    Nodes outside any sub-module (the classifier's own ops) map to ''. Models that torch.fx cannot
    trace give an empty table.
    """
    import torch.fx
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - untraceable models simply have no node names to offer
        return {}
    table: Dict[str, str] = {}
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        stack = node.meta.get("nn_module_stack") or {}
        owner = list(stack)[-1] if stack else ""
        table[node.name.replace("_", SEPARATOR)] = owner.replace(".", SEPARATOR)
    return table
