"""Every reader of torch.save files (checkpoints, --weights, cached pretrained weights) refuses a foreign
or damaged file with its usage error naming the file, whatever the weights-only unpickler hits in it."""
import hashlib
import io
import os

import pytest
import torch
from torch import nn

from cnns.models.pretrained import PretrainedWeightsError, load_pretrained_state_dict
from cnns.models.tensor_file import UnreadableTensorFile, load_tensor_file
from cnns.models.weights import ModelConfigError, load_weights_file
from cnns.train.checkpoint import load_checkpoint
from cnns.utils.errors import UsageError


def _truncated_checkpoint() -> bytes:
    buffer = io.BytesIO()
    torch.save({"model_state_dict": {"w": torch.ones(64)}}, buffer)
    data = buffer.getvalue()
    return data[: len(data) // 2]


FOREIGN = {
    "text": b"root:x:0:0:root:/root:/bin/bash\n",        # 'r' is a memo opcode on an empty stack: IndexError
    "random": bytes(range(256)) * 4,
    "truncated": _truncated_checkpoint(),
    "empty": b"",
}


@pytest.fixture(params=sorted(FOREIGN))
def foreign(request, tmp_path):
    path = tmp_path / f"{request.param}.pt"
    path.write_bytes(FOREIGN[request.param])
    return str(path)


def test_the_reader_gives_a_one_line_reason(foreign):
    with pytest.raises(UnreadableTensorFile) as caught:
        load_tensor_file(foreign)
    assert str(caught.value) and "\n" not in str(caught.value)


def test_a_checkpoint_reader_refuses_it_naming_the_file(foreign):
    with pytest.raises(UsageError, match="could not be read as a PyTorch file") as caught:
        load_checkpoint(foreign)
    assert foreign in str(caught.value)


def test_weights_reader_refuses_it_naming_the_file(foreign):
    with pytest.raises(ModelConfigError, match="could not be read as a PyTorch state_dict") as caught:
        load_weights_file(nn.Linear(2, 2), foreign, "linear")
    assert foreign in str(caught.value)


def test_cached_pretrained_weights_are_refused_naming_the_file(foreign, tmp_path, monkeypatch):
    data = open(foreign, "rb").read()
    digest = hashlib.sha256(data).hexdigest()[:8]
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / f"weights-{digest}.pth").write_bytes(data)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsError, match="is not a plain tensor file"):
        load_pretrained_state_dict(f"https://example.invalid/weights-{digest}.pth")


def test_a_real_file_still_loads(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.arange(3.0)}, path)
    assert torch.equal(load_tensor_file(str(path))["w"], torch.arange(3.0))
    assert os.path.getsize(path) > 0
