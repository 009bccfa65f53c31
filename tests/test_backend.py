"""Backend choice: the SDK's poptorch when it imports, portable_poptorch otherwise."""
import sys
import types

import pytest
import torch

from cnns.utils import backend as backend_module
from cnns.utils.backend import select_backend
from cnns.utils.errors import UsageError


@pytest.mark.parametrize("error", [ImportError, AssertionError, OSError])
def test_broken_poptorch_falls_back_to_portable(monkeypatch, error):
    def broken(name):
        raise error("poptorch needs the Poplar SDK")
    monkeypatch.setattr(backend_module.importlib, "import_module", broken)
    chosen = select_backend("auto")
    assert chosen.is_portable and chosen.poptorch.__name__ == "portable_poptorch"
    with pytest.raises(UsageError, match="--device ipu"):
        select_backend("ipu")


def test_real_poptorch_is_used_when_it_imports(monkeypatch):
    fake = types.ModuleType("poptorch")
    monkeypatch.setitem(sys.modules, "poptorch", fake)
    chosen = select_backend("auto")
    assert chosen.name == "poptorch" and chosen.poptorch is fake and chosen.device == "ipu"
    assert chosen.half_dtype == torch.float16
    assert select_backend("cpu").is_portable  # an explicit device overrides


def test_cpu_half_type_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(backend_module, "cpu_has_fast_bfloat16", lambda: True)
    assert select_backend("cpu").half_dtype == torch.bfloat16
    monkeypatch.setattr(backend_module, "cpu_has_fast_bfloat16", lambda: False)
    slow = select_backend("cpu")
    assert slow.half_dtype == torch.float32 and "float32" in slow.note
    assert select_backend("cpu", "float16").half_dtype == torch.float16


def test_unknown_device_is_a_usage_error():
    with pytest.raises(UsageError, match="tpu"):
        select_backend("tpu")


def test_on_ipu_options_of_the_portable_executors_are_recorded_as_without_effect():
    import argparse
    import types
    from cnns.utils.ipu_settings import no_effect_report
    ipu = types.SimpleNamespace(is_portable=False)
    typed = argparse.Namespace(executor="openvino", executor_streams=2, memory_format="channels_last")
    assert {e["option"]: e["value"] for e in no_effect_report(None, typed, ipu)} == {
        "executor": "openvino", "executor-streams": "2", "memory-format": "channels_last"}
    defaults = argparse.Namespace(executor="auto", executor_streams=None, memory_format="auto")
    assert no_effect_report(None, defaults, ipu) == []
