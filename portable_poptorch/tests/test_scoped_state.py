"""portable_poptorch leaves process-wide state as it found it: seeds and backend flags are scoped to
the model that asked for them, as PopTorch scopes them to its device."""
import os

import pytest
import torch
from torch import nn

import portable_poptorch as poptorch


class _Noisy(nn.Module):
    def forward(self, x):
        return nn.functional.dropout(x, p=0.5, training=True)


def _opts(seed):
    opts = poptorch.Options().randomSeed(seed)
    opts.Portable.device("cpu")
    opts.Portable.executor("eager")
    return opts


def test_random_seed_gives_the_model_its_own_stream_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = poptorch.inferenceModel(_Noisy(), _opts(7))
    b = poptorch.inferenceModel(_Noisy(), _opts(7))
    x = torch.ones(4, 64)
    first_a, first_b = a(x), b(x)
    assert torch.equal(torch.get_rng_state(), before), "the global RNG must not move"
    torch.testing.assert_close(first_a, first_b)  # same seed, same stream
    assert not torch.equal(a(x), first_a)  # the stream advances between calls
    other = poptorch.inferenceModel(_Noisy(), _opts(8))(x)
    assert not torch.equal(other, first_a)


@pytest.mark.slow
def test_compiling_leaves_environment_and_backend_flags_unchanged(tmp_path):
    env_before = dict(os.environ)
    cudnn_before = torch.backends.cudnn.benchmark
    opts = _opts(0).enableExecutableCaching(str(tmp_path / "cache"))
    opts.Precision.setPartialsType(torch.half)
    opts.Portable.executor("inductor")
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU()).eval()
    out = poptorch.inferenceModel(model, opts)(torch.randn(2, 8))
    assert out.shape == (2, 4)
    changed = {k: v for k, v in os.environ.items() if env_before.get(k) != v}
    # Inductor records its own defaults in the environment as it runs; our cache folder must not stay there
    assert all(k.lstrip("_").startswith("TORCHINDUCTOR") for k in changed), changed
    assert str(tmp_path) not in os.environ.get("TORCHINDUCTOR_CACHE_DIR", "")
    assert torch.backends.cudnn.benchmark == cudnn_before
    assert os.listdir(tmp_path / "cache" / "inductor"), "Inductor's cache went to the cache folder"
