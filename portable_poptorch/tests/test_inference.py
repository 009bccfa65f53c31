"""portable_poptorch.inferenceModel against PopTorch's documented batch and output semantics."""
import os

import pytest
import torch
from torch import nn

import portable_poptorch as poptorch


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()


def host_batch(n: int) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.slow
@pytest.mark.parametrize("di,replicas,mb", [(1, 1, 2), (3, 1, 2), (2, 2, 3), (4, 3, 1)])
def test_all_mode_equals_forward_on_every_micro_batch(di, replicas, mb):
    model = tiny_model()
    opts = poptorch.Options().deviceIterations(di).replicationFactor(replicas)
    x = host_batch(mb * di * replicas)
    out = poptorch.inferenceModel(model, opts)(x)
    expected = torch.cat([model(chunk) for chunk in x.split(mb)])
    assert out.shape == (mb * di * replicas, 5)
    torch.testing.assert_close(out, expected)


@pytest.mark.slow
def test_output_modes_shapes_and_values():
    model, di, mb = tiny_model(), 4, 2
    x = host_batch(mb * di)
    steps = [model(c) for c in x.split(mb)]

    def run(mode, period=None):
        opts = poptorch.Options().deviceIterations(di).outputMode(mode, period)
        return poptorch.inferenceModel(model, opts)(x)
    torch.testing.assert_close(run(poptorch.OutputMode.Final), steps[-1])
    torch.testing.assert_close(run(poptorch.OutputMode.Sum), sum(steps))
    torch.testing.assert_close(run(poptorch.OutputMode.EveryN, 2), torch.cat([steps[1], steps[3]]))
    torch.testing.assert_close(run(poptorch.OutputMode.All), torch.cat(steps))
    assert run(poptorch.OutputMode.Default).shape == (mb * di, 5)


@pytest.mark.slow
def test_tuple_outputs_follow_output_mode():
    class Two(nn.Module):
        def forward(self, x):
            return x.sum(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3))
    x = host_batch(6)
    a, b = poptorch.inferenceModel(Two(), poptorch.Options().deviceIterations(3))(x)
    torch.testing.assert_close(a, x.sum(dim=(1, 2, 3)))
    torch.testing.assert_close(b, x.mean(dim=(1, 2, 3)))


def test_batch_not_dividing_is_a_clear_error():
    wrapped = poptorch.inferenceModel(tiny_model(), poptorch.Options().deviceIterations(4).replicationFactor(2))
    with pytest.raises(poptorch.BatchSizeError, match="multiple of 8"):
        wrapped(host_batch(12))


def test_pipelined_model_equals_unsplit_and_needs_enough_device_iterations():
    reference = tiny_model()
    split = tiny_model()
    split[0] = poptorch.BeginBlock(split[0], ipu_id=0)
    split[3] = poptorch.BeginBlock(split[3], ipu_id=1)
    split[5] = poptorch.BeginBlock(split[5], ipu_id=2)
    x = host_batch(6)
    out = poptorch.inferenceModel(split, poptorch.Options().deviceIterations(3))(x)
    torch.testing.assert_close(out, reference(x))
    with pytest.raises(poptorch.ConfigError, match="device iterations >= number of stages"):
        poptorch.inferenceModel(split, poptorch.Options().deviceIterations(2))(host_batch(4))


@pytest.mark.slow
def test_block_context_counts_as_stages():
    class WithBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            with poptorch.Block(ipu_id=0):
                x = self.a(x)
            with poptorch.Block(ipu_id=1):
                return self.b(x)
    with pytest.raises(poptorch.ConfigError):
        poptorch.inferenceModel(WithBlocks(), poptorch.Options())(torch.randn(2, 4))
    out = poptorch.inferenceModel(WithBlocks(), poptorch.Options().deviceIterations(2))(torch.randn(4, 4))
    assert out.shape == (4, 2)



def test_synthetic_data_ignores_host_values_and_keeps_shapes():
    model = tiny_model()
    opts = poptorch.Options().deviceIterations(2).enableSyntheticData(True)
    wrapped = poptorch.inferenceModel(model, opts)
    out1 = wrapped(torch.zeros(4, 3, 8, 8))
    out2 = wrapped(torch.ones(4, 3, 8, 8))
    assert out1.shape == (4, 5)
    torch.testing.assert_close(out1, out2)  # same on-device input every call, host values never read


def test_latency_is_per_micro_batch_and_ordered():
    wrapped = poptorch.inferenceModel(tiny_model(), poptorch.Options().deviceIterations(3))
    wrapped(host_batch(6))
    lo, hi, mean = wrapped.getLatency()
    samples = wrapped.latencySamples()
    assert len(samples) == 3 and 0 < lo <= mean <= hi
    assert samples == sorted(samples)  # outputs arrive in micro-batch order


@pytest.mark.slow
def test_weights_copy_and_detach():
    model = tiny_model()
    wrapped = poptorch.inferenceModel(model, poptorch.Options())
    x = host_batch(1)
    before = wrapped(x)
    with torch.no_grad():
        model[5].bias.add_(1.0)
    torch.testing.assert_close(wrapped(x), before)  # device copy unchanged until copied
    wrapped.copyWeightsToDevice()
    torch.testing.assert_close(wrapped(x), before + 1.0)
    wrapped.detachFromDevice()
    assert not wrapped.isAttachedToDevice()
    torch.testing.assert_close(wrapped(x), before + 1.0)
    assert wrapped.isAttachedToDevice()


@pytest.mark.slow
def test_autocast_compute_dtype_is_close_to_fp32():
    model = tiny_model()
    x = host_batch(4)
    opts = poptorch.Options().deviceIterations(2)
    opts.Portable.autocast(torch.bfloat16)
    out = poptorch.inferenceModel(model, opts)(x)
    torch.testing.assert_close(out.float(), model(x), rtol=0.05, atol=0.05)


def test_no_effect_options_are_recorded():
    opts = poptorch.Options()
    opts.setAvailableMemoryProportion({"IPU0": 0.3})
    opts._Popart.set("groupNormStridedChannelGrouping", True)
    names = {e["option"] for e in opts.no_effect()}
    assert {"setAvailableMemoryProportion", "_Popart.groupNormStridedChannelGrouping"} <= names


def test_every_setter_without_an_effect_is_recorded():
    """Each setter that changes nothing here leaves an entry; PopTorch's defaults (off) leave none."""
    opts = poptorch.Options()
    opts.Precision.runningStatisticsAlwaysFloat(False)
    opts.autoRoundNumIPUs(False)
    assert opts.no_effect() == []
    opts.Precision.runningStatisticsAlwaysFloat(True)
    opts.Training.setMeanAccumulationAndReplicationReductionStrategy("Running")
    opts.Jit.traceModel(False)
    opts.setExecutionStrategy(poptorch.ShardedExecution())
    opts.autoRoundNumIPUs(True)
    opts.connectionType("OnDemand")
    recorded = {e["option"]: e["value"] for e in opts.no_effect()}
    assert recorded == {"Precision.runningStatisticsAlwaysFloat": "True",
                        "Training.setMeanAccumulationAndReplicationReductionStrategy": "'Running'",
                        "Jit.traceModel": "False", "setExecutionStrategy": "'ShardedExecution'",
                        "autoRoundNumIPUs": "True", "connectionType": "'OnDemand'"}


def test_floating_point_exceptions_as_poptorch_precision():
    """PopTorch's Precision has enableFloatingPointExceptions(bool) and no other floating-point setter."""
    opts = poptorch.Options()
    with pytest.raises(AssertionError, match="needs to be set to a bool"):
        opts.Precision.enableFloatingPointExceptions(1)
    with pytest.raises(ValueError, match="runningStatisticsAlwaysFloat needs to be set to a bool"):
        opts.Precision.runningStatisticsAlwaysFloat(1)
    assert not hasattr(opts.Precision, "setFloatingPointBehaviour")
    assert opts.Precision.enableFloatingPointExceptions(False) is opts.Precision and opts.no_effect() == []
    opts.Precision.enableFloatingPointExceptions(True)
    assert [(e["option"], e["value"]) for e in opts.no_effect()] == [("Precision.enableFloatingPointExceptions", "True")]


def test_automatic_loss_scaling_is_a_declared_setting():
    opts = poptorch.Options()
    assert opts.Training.automatic_loss_scaling is False
    assert opts.Training.setAutomaticLossScaling(True).automatic_loss_scaling is True
    assert opts.no_effect() == []


def test_dataloader_combined_batch_and_process_shares():
    dataset = torch.utils.data.TensorDataset(torch.arange(48).float().view(48, 1), torch.arange(48))
    opts = poptorch.Options().deviceIterations(3).replicationFactor(2)
    loader = poptorch.DataLoader(opts, dataset, batch_size=2)
    batches = list(loader)
    assert len(loader) == len(batches) == 4 and all(b[0].shape[0] == 12 for b in batches)
    seen = []
    for pid in range(2):
        o = poptorch.Options().deviceIterations(2)
        o.Distributed.configureProcessId(pid, 2)
        seen += [int(v) for _, labels in poptorch.DataLoader(o, dataset, batch_size=3, shuffle=True) for v in labels]
    assert sorted(seen) == list(range(48))


def test_async_rebatched_loader_gives_full_batches():
    dataset = torch.utils.data.TensorDataset(torch.arange(40).float().view(40, 1), torch.arange(40))
    opts = poptorch.Options().deviceIterations(2)
    loader = poptorch.DataLoader(opts, dataset, batch_size=5, mode=poptorch.DataLoaderMode.AsyncRebatched,
                                 rebatched_worker_size=3)
    labels = [b[1] for b in loader]
    assert len(labels) == len(loader) == 4 and all(len(l) == 10 for l in labels)
    assert torch.cat(labels).tolist() == list(range(40))




def test_layers_before_the_first_block_are_stage_zero():
    model = tiny_model()
    model[3] = poptorch.BeginBlock(model[3], ipu_id=1)  # conv/bn before it form the implicit stage 0
    with pytest.raises(poptorch.ConfigError, match="2 pipeline stages"):
        poptorch.inferenceModel(model, poptorch.Options())(host_batch(1))


def test_slice_step_passes_a_whole_chunk_as_it_is_and_cuts_the_others():
    from portable_poptorch import batching
    x, scalar = torch.arange(8.0).reshape(4, 2), torch.tensor(3.0)
    whole = batching.slice_step((x, scalar), 0, 4)
    assert whole[0] is x and whole[1] is scalar
    second = batching.slice_step((x, scalar), 1, 2)
    assert second[0].tolist() == [[4.0, 5.0], [6.0, 7.0]] and second[1] is scalar
    first = batching.slice_step((x,), 0, 2)
    assert first[0].tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_to_host_keeps_host_tensors_and_other_leaves():
    from portable_poptorch import batching
    x = torch.ones(2)
    out = batching.to_host({"a": x, "b": [x, 7]})
    assert out["a"] is x and out["b"][0] is x and out["b"][1] == 7
