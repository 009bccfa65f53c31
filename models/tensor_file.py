"""Reading a file that torch.save wrote, with ``weights_only``: any other file gives a reason, not a crash.

The weights-only unpickler meets arbitrary bytes in a foreign or damaged file and then fails with
whatever its parser hit (IndexError, KeyError, UnicodeDecodeError...), not only UnpicklingError; the
caller turns the reason into its one-sentence usage error naming the file.
"""
from __future__ import annotations

import pickle
from typing import Any

import torch

EXPECTED_FAILURES = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError)


class UnreadableTensorFile(Exception):
    """torch.load could not read the file; the message is the reason, one line."""


def load_tensor_file(path: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, or UnreadableTensorFile."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if not isinstance(exc, EXPECTED_FAILURES):
            first = f"the unpickler failed on its contents: {type(exc).__name__}: {first}"
        raise UnreadableTensorFile(first[:200]) from None
