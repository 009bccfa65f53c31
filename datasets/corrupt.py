"""What happens when an image cannot be decoded (``--corrupt-images skip|stop``).

``stop`` raises one sentence naming the file. ``skip`` warns once per file, counts it in a counter
shared with the loader's worker processes, and serves a neighbouring good sample in its place so every
host batch stays full (PopTorch batches have a fixed size and instances must run equal step counts).
"""
from __future__ import annotations

import multiprocessing
import sys
from typing import Any

from cnns.utils.errors import UsageError

CORRUPT_IMAGE_POLICIES = ("skip", "stop")
DECODE_ERRORS = (OSError, SyntaxError, ValueError)  # PIL raises these for bad or truncated files


class CorruptImageError(UsageError):
    """An image that cannot be decoded, with ``--corrupt-images stop``."""

    def __init__(self, message: str) -> None:
        super().__init__(_own_sentence(message))


def _own_sentence(message: str) -> str:
    """A loader worker re-raises this error with its whole traceback as the message; keep our sentence."""
    if "Traceback" not in message:
        return message
    last = [line for line in message.strip().splitlines() if line.strip()][-1]
    return last.split(f"{CorruptImageError.__name__}: ", 1)[-1]


def corrupt_message(source: str, exc: BaseException) -> str:
    return (f"Image {source} cannot be decoded ({exc}); remove or replace it, or pass --corrupt-images skip "
            f"to train without it.")


class CorruptImagePolicy:
    """The chosen policy plus a process-shared count of skipped images."""

    def __init__(self, policy: str = "stop") -> None:
        if policy not in CORRUPT_IMAGE_POLICIES:
            raise UsageError(f"--corrupt-images {policy!r} is not one of {', '.join(CORRUPT_IMAGE_POLICIES)}.")
        self.policy = policy
        self._count: Any = multiprocessing.Value("q", 0)

    @property
    def skipped(self) -> int:
        return int(self._count.value)

    def handle(self, source: str, exc: BaseException) -> None:
        """Raise (stop) or count and warn (skip); the caller then moves on to another sample."""
        if self.policy == "stop":
            raise CorruptImageError(corrupt_message(source, exc)) from None
        with self._count.get_lock():
            self._count.value += 1
            count = self._count.value
        print(f"warning: skipped corrupt image {source} ({exc}); {count} skipped so far.", file=sys.stderr, flush=True)


def skipped_images(loader: Any) -> int:
    """Corrupt images skipped so far by a loader from ``get_data`` (0 for sources without files)."""
    dataset = getattr(loader, "dataset", loader)
    policy = getattr(dataset, "corrupt_policy", None)
    return policy.skipped if policy is not None else 0
