"""Pretrained weights from a published URL, loaded without running code from the file.

``torch.hub.load_state_dict_from_url`` unpickles cache hits with ``weights_only=False`` and checks the
hash only on download, so a file planted in ``$TORCH_HOME/hub/checkpoints`` would run its code. Here
every file, downloaded or cached, is read with ``weights_only=True``, and where the source publishes a
hash the file is checked against it: torchvision's files (download.pytorch.org) carry the SHA256 prefix in
their names (``name-<sha256 prefix>.pth``) and torchvision itself verifies it. efficientnet_pytorch's and
Cadene's names carry 8 hex digits too, but those sources never say they are a SHA256 prefix (torchvision's
own EfficientNet files with such names failed the check until re-published), so there the digits are not
treated as a hash and the log says the file was read as tensors only. A file that fails is named and refused.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Dict, Optional
from urllib.parse import urlparse

import torch

from .errors import ModelConfigError
from .tensor_file import UnreadableTensorFile, load_tensor_file

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")
SHA256_IN_NAME_HOSTS = frozenset({"download.pytorch.org"})


class PretrainedWeightsError(ModelConfigError):
    """A pretrained weights file that fails its published hash or is not plain tensors."""


def published_hash_prefix(url: str) -> Optional[str]:
    """The SHA256 prefix in the file name of ``url``, for sources known to publish one; else None."""
    if urlparse(url).hostname not in SHA256_IN_NAME_HOSTS:
        return None
    match = _HASH_IN_NAME.search(os.path.basename(urlparse(url).path))
    return match.group(1) if match else None


def cache_path(url: str) -> str:
    """Where torch.hub keeps the file of ``url`` ($TORCH_HOME/hub/checkpoints/<name>)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _refuse(path: str, why: str) -> PretrainedWeightsError:
    return PretrainedWeightsError(
        f"Pretrained weights file {path!r} {why}; it was not loaded. Delete it to download it again, "
        f"or run with --random-weights.")


def load_pretrained_state_dict(url: str) -> Dict[str, torch.Tensor]:
    """Downloads ``url`` into the hub cache unless present, checks its hash, loads it as tensors only.

    Network failures raise OSError (callers fall back to random weights and say so); a file that
    fails its hash or holds anything but tensors raises PretrainedWeightsError.
    """
    path = cache_path(url)
    expected = published_hash_prefix(url)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, path, expected, progress=False)
        except RuntimeError as error:
            if "hash" in str(error):
                raise _refuse(url, f"does not match its published SHA256 prefix {expected}") from None
            raise
    if expected is not None and not sha256_of(path).startswith(expected):
        raise _refuse(path, f"does not match its published SHA256 prefix {expected}")
    try:
        state = load_tensor_file(path)
    except UnreadableTensorFile as error:
        raise _refuse(path, f"is not a plain tensor file ({error})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise _refuse(path, "does not hold a state_dict of tensors")
    return state
