"""Moving a micro-step between torch tensors and the arrays an exported-graph runtime takes."""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .. import tree as pytree


def sample_outputs(model: nn.Module, example: Tuple[Any, ...]) -> Tuple[List[Any], Any]:
    """The model's flat outputs for ``example`` and their nesting (to give runtime outputs back in its shape)."""
    with torch.inference_mode():
        out = model(*example)
    return pytree.tree_flatten(out)


def input_arrays(args: Sequence[Any]) -> List[np.ndarray]:
    """Contiguous host arrays sharing memory with the (CPU) tensors where the layout allows."""
    return [t.detach().contiguous().numpy() for t in args if isinstance(t, torch.Tensor)]


def outputs_from_arrays(arrays: Sequence[np.ndarray], spec: Any) -> Any:
    return pytree.tree_unflatten([torch.from_numpy(np.asarray(a)) for a in arrays], spec)


def tensor_inputs(example: Tuple[Any, ...]) -> Tuple[torch.Tensor, ...]:
    """Runtimes of exported graphs take tensors only; other arguments are baked in at export."""
    return tuple(t for t in example if isinstance(t, torch.Tensor))
