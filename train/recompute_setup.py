"""Where recomputation checkpoints go: module outputs chosen by regex (manual) or every block (auto).

A checkpoint is ``poptorch.recomputationCheckpoint`` applied to a module's output through a forward
hook; PopTorch keeps those tensors and recomputes the rest in backward (portable_poptorch recomputes
each marked module's inside, see portable_poptorch/src/portable_poptorch/recompute.py).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional

from torch import nn

from cnns.models import NormalizeInputModel
from cnns.models.original_names import MAPPING_HELP, fx_node_modules, translate_module_path
from cnns.utils.errors import UsageError

SEPARATOR = "/"


def module_paths(model: nn.Module) -> Dict[str, nn.Module]:
    """Modules by path relative to the classifier, written with '/' as pipeline splits are."""
    root = model.model if isinstance(model, NormalizeInputModel) else model
    return {name.replace(".", SEPARATOR): mod for name, mod in root.named_modules() if name}


def auto_checkpoints(paths: Dict[str, nn.Module]) -> List[str]:
    """Every block: non-leaf modules two levels down (e.g. layer2/1, _blocks/4), else the top-level ones."""
    blocks = [p for p, m in paths.items() if p.count(SEPARATOR) == 1 and next(m.children(), None) is not None]
    return blocks or [p for p in paths if SEPARATOR not in p]


def matching_checkpoints(paths: Dict[str, nn.Module], patterns: List[str], root: Optional[nn.Module] = None,
                         model_name: str = "") -> List[str]:
    """Module paths matched by the patterns; a pattern matching no module path is tried on the original
    application's names: its block names, then torch.fx node names (``add/1``), each mapped to the
    module that computes it (see models/original_names.py)."""
    chosen: List[str] = []
    fx_nodes: Optional[Dict[str, str]] = None
    for pattern in patterns:
        try:
            rule = re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"--recompute-checkpoints {pattern!r} is not a valid regular expression ({exc}).") from None
        hits = [p for p in paths if rule.fullmatch(p)]
        translated = translate_module_path(model_name, pattern)
        if not hits and translated in paths:
            hits = [translated]
        if not hits and root is not None:
            fx_nodes = fx_node_modules(root) if fx_nodes is None else fx_nodes
            hits = [fx_nodes[n] for n in fx_nodes if rule.fullmatch(n) and fx_nodes[n] in paths]
        if not hits:
            examples = ", ".join(list(paths)[:8])
            raise UsageError(f"--recompute-checkpoints {pattern!r} matches no module; module paths look like {examples}. "
                             f"{MAPPING_HELP}")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def check_recompute_checkpoints(args: Any) -> None:
    """The patterns match modules of the model, checked on a meta-device copy when the options are
    parsed, so a typo is refused before a model is built or a log folder made."""
    if args.recompute_mode == "none" or not args.recompute_checkpoints:
        return
    from cnns.utils.memory_need import meta_zoo_model
    model = meta_zoo_model(args.model, args.efficientnet_expand_ratio, args.efficientnet_group_dim)
    matching_checkpoints(module_paths(model), args.recompute_checkpoints, model, args.model)


def apply_recomputation(model: nn.Module, args: Any, checkpoint_fn: Callable[[Any], Any]) -> List[str]:
    """Mark the chosen modules' outputs with ``checkpoint_fn``; returns their paths."""
    if args.recompute_mode == "none":
        return []
    paths = module_paths(model)
    root = model.model if isinstance(model, NormalizeInputModel) else model
    chosen = matching_checkpoints(paths, args.recompute_checkpoints, root, args.model)
    if args.recompute_mode == "auto":
        chosen += [p for p in auto_checkpoints(paths) if p not in chosen]

    def mark(module: nn.Module, inputs: Any, output: Any) -> Any:
        return checkpoint_fn(output) if hasattr(output, "shape") else output
    for path in chosen:
        paths[path].register_forward_hook(mark)
    return chosen
