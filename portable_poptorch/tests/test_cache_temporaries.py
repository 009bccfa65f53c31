"""The executable cache: temporaries of a killed artefact write are removed at the next start."""
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

import portable_poptorch as poptorch
from portable_poptorch.compilers.base import (DEAD_WRITER_GRACE_SECONDS, STALE_AFTER_SECONDS, remove_stale_temporaries,
                                              write_atomically)

KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from portable_poptorch.compilers.base import write_atomically

    def write(tmp):
        with open(tmp, "w") as f:
            f.write("half an artefact")
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    write_atomically(sys.argv[1], write)
""")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _touch(path, age: float = 0.0) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("partial")
    when = time.time() - age
    os.utime(path, (when, when))
    return str(path)


def test_only_stale_temporaries_are_removed(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    old = DEAD_WRITER_GRACE_SECONDS + 60
    removed = {
        _touch(tmp_path / f"choices.json.tmp{dead}", old),
        _touch(tmp_path / "onnxruntime" / f"k.optimised.onnx.tmp{dead}", old),
        _touch(tmp_path / "openvino" / f"k.tmp{dead}.xml", old),
        _touch(tmp_path / "openvino" / f"k.tmp{dead}.bin", old),
        _touch(tmp_path / "openvino" / f"k.xml.tmp{live}", STALE_AFTER_SECONDS + 60),
    }
    kept = {
        _touch(tmp_path / "onnxruntime" / f"fresh.optimised.onnx.tmp{dead}"),  # maybe another host's writer
        _touch(tmp_path / "onnxruntime" / f"busy.optimised.onnx.tmp{live}", old),  # a writer still running
        _touch(tmp_path / "onnxruntime" / "k.optimised.onnx", old),
        _touch(tmp_path / "choices.json", old),
        _touch(tmp_path / "inductor" / f"theirs.tmp{dead}", old),  # Inductor's own folder is its business
    }
    assert set(remove_stale_temporaries(str(tmp_path))) == removed
    assert not any(os.path.exists(p) for p in removed)
    assert all(os.path.exists(p) for p in kept)


def test_killed_write_is_cleaned_at_the_next_start(tmp_path):
    cache = tmp_path / "cache"
    final = cache / "onnxruntime" / "key.optimised.onnx"
    final.parent.mkdir(parents=True)
    run = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(final)], capture_output=True, text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL
    left = os.listdir(final.parent)
    assert len(left) == 1 and left[0].startswith("key.optimised.onnx.tmp") and not final.exists()
    stale = time.time() - DEAD_WRITER_GRACE_SECONDS - 60
    os.utime(final.parent / left[0], (stale, stale))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2)).eval()
    opts = poptorch.Options().enableExecutableCaching(str(cache))
    opts.Portable.executor("eager")
    wrapped = poptorch.inferenceModel(model, opts)
    wrapped(torch.randn(1, 3, 2, 2))
    assert os.listdir(final.parent) == []
    notes = [m for m in wrapped.portableMessages() if "killed writes" in m]
    assert notes == [f"Removed 1 temporary file(s) left by killed writes in the executable cache {cache}."]


def test_a_full_disk_names_the_artefact_and_leaves_no_temporary(tmp_path):
    final = tmp_path / "choices.json"

    def full(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("{")
        raise OSError(errno.ENOSPC, "No space left on device", tmp)
    with pytest.raises(OSError) as raised:
        write_atomically(str(final), full)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(final)
    assert os.listdir(tmp_path) == []


class _FakeOpenVino:
    """``save_model`` writes the IR pair as OpenVINO does, then fails when asked to (a full disk)."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def save_model(self, model: object, xml: str, compress_to_fp16: bool) -> None:
        with open(xml, "w") as f:
            f.write("<net/>")
        with open(xml[:-4] + ".bin", "wb") as f:
            f.write(b"\0")
        if self.fail:
            raise OSError(errno.ENOSPC, "No space left on device", xml)


@pytest.mark.parametrize("fail", [False, True])
def test_openvino_ir_is_saved_whole_or_not_at_all(tmp_path, fail):
    from portable_poptorch.compilers.openvino_runtime import _save_ir
    xml = str(tmp_path / "key.xml")
    if fail:
        with pytest.raises(OSError):
            _save_ir(_FakeOpenVino(fail), object(), xml)
        assert os.listdir(tmp_path) == []
    else:
        _save_ir(_FakeOpenVino(fail), object(), xml)
        assert sorted(os.listdir(tmp_path)) == ["key.bin", "key.xml"]
