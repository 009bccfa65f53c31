"""OpenVINO's bound request: inputs stay set while calls bring the same memory, and every call still
computes on the values in that memory and returns outputs of its own."""
import warnings

import pytest
import torch
from torch import nn

from portable_poptorch import tree as pytree
from tests.test_executors import skip_if_missing


class CountingRequest:
    """A real infer request that counts how often an input tensor is set on it."""

    def __init__(self, request):
        self.request, self.sets = request, 0

    def set_input_tensor(self, index, tensor):
        self.sets += 1
        self.request.set_input_tensor(index, tensor)

    def __getattr__(self, name):
        return getattr(self.request, name)


@pytest.fixture(scope="module")
def compiled_model():
    skip_if_missing("openvino")
    import openvino as ov
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()
    example = torch.randn(2, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = ov.convert_model(model, example_input=example)
    compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return model, compiled


def bound(compiled):
    from portable_poptorch.compilers.openvino_runtime import BoundRequest
    return BoundRequest(CountingRequest(compiled.create_infer_request()), len(compiled.outputs))


def run(request, x):
    request.start([x.numpy()])
    return torch.from_numpy(request.finish()[0])


def test_same_memory_is_set_once_and_new_values_in_it_are_computed_on(compiled_model):
    model, compiled = compiled_model
    request = bound(compiled)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        first = run(request, x)
        torch.testing.assert_close(first, model(x), rtol=1e-4, atol=1e-5)
        kept = first.clone()
        x.copy_(torch.randn(2, 3, 16, 16))   # new values written into the buffer already set
        second = run(request, x)
        torch.testing.assert_close(second, model(x), rtol=1e-4, atol=1e-5)
    assert (second - kept).abs().max() > 1e-3, "outputs must depend on the input for the comparison to mean anything"
    assert torch.equal(first, kept), "an earlier call's outputs must not change under a later call"
    assert request.request.sets == 1


def test_other_memory_is_set_again(compiled_model):
    model, compiled = compiled_model
    request = bound(compiled)
    a, b = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        for x in (a, b, a):
            torch.testing.assert_close(run(request, x), model(x), rtol=1e-4, atol=1e-5)
    assert request.request.sets == 3
    run(request, a)
    assert request.request.sets == 3, "the same array again needs no new input tensor"


def test_requests_step_gives_the_model_outputs_in_its_nesting(compiled_model):
    from portable_poptorch.compilers.openvino_runtime import _requests_step
    model, compiled = compiled_model
    _, spec = pytree.tree_flatten(torch.zeros(1))
    step = _requests_step(compiled, 1, 2, spec)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(step(x), model(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(step(x[:, :, :, :].contiguous() * 2), model(x * 2), rtol=1e-4, atol=1e-5)
