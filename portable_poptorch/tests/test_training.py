"""portable_poptorch.trainingModel and optim: PopTorch's training semantics checked against plain PyTorch."""
import copy
import math
import os

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import portable_poptorch as poptorch
from portable_poptorch import optim

torch.set_num_threads(1)


class MLP(nn.Module):
    """Tiny classifier without batch norm; forward returns (output, loss) as PopTorch models do."""

    def __init__(self, bn: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.norm = nn.BatchNorm1d(16) if bn else nn.Identity()
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x, y):
        out = self.fc2(torch.relu(self.norm(self.fc1(x))))
        return out, F.cross_entropy(out, y)


def make(bn=False, seed=0):
    torch.manual_seed(seed)
    return MLP(bn)


def data(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 5, (n,), generator=g)


def opts(di=1, ga=1, r=1, mode=None, period=None):
    o = poptorch.Options()
    o.deviceIterations(di).replicationFactor(r)
    o.Training.gradientAccumulation(ga)
    if mode is not None:
        o.outputMode(mode, period)
    return o


def reference_step(model, x, y, lr=0.1, momentum=0.9, steps=1):
    """Plain PyTorch: full-batch mean loss, one SGD step per batch."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    for _ in range(steps):
        opt.zero_grad()
        model(x, y)[1].backward()
        opt.step()
    return model


def assert_same_weights(a, b, atol=1e-6):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=atol), name


def train(model, o, x, y, calls=1, **sgd):
    sgd = {"lr": 0.1, "momentum": 0.9, **sgd}
    tm = poptorch.trainingModel(model, o, optim.SGD(model.parameters(), **sgd))
    for _ in range(calls):
        out = tm(x, y)
    return tm, out


@pytest.mark.slow
def test_replicas_equal_accumulation_equal_reference():
    x, y = data(8)
    ref = reference_step(make(), x, y, steps=2)
    replicated = make()
    train(replicated, opts(r=2), x, y, calls=2)
    accumulated = make()
    train(accumulated, opts(ga=2), x, y, calls=2)
    assert_same_weights(replicated, ref)
    assert_same_weights(accumulated, ref)
    assert not torch.allclose(make().fc1.weight, ref.fc1.weight)


@pytest.mark.slow
def test_device_iterations_are_successive_optimizer_steps():
    x, y = data(8)
    model = make()
    train(model, opts(di=2), x, y)
    ref = make()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for half in (slice(0, 4), slice(4, 8)):
        opt.zero_grad()
        ref(x[half], y[half])[1].backward()
        opt.step()
    assert_same_weights(model, ref)


@pytest.mark.slow
def test_replicas_keep_their_own_batchnorm_statistics():
    x, y = data(8)
    model = make(bn=True)
    train(model, opts(r=2), x, y, momentum=0.0)
    ref = make(bn=True)
    stats0 = copy.deepcopy(ref)
    grads = [torch.autograd.grad(ref(x[h], y[h])[1], list(ref.parameters()))
             for h in (slice(0, 4), slice(4, 8))]
    with torch.no_grad():
        for p, g0, g1 in zip(ref.parameters(), *grads):
            p -= 0.1 * (g0 + g1) / 2
    assert_same_weights(model, ref)
    whole_batch = make(bn=True)
    reference_step(whole_batch, x, y, momentum=0.0)
    assert not torch.allclose(whole_batch.fc1.weight, model.fc1.weight, atol=1e-6)
    stats0(x[:4], y[:4])
    assert torch.allclose(model.norm.running_mean, stats0.norm.running_mean)
    assert torch.allclose(model.norm.running_var, stats0.norm.running_var)


@pytest.mark.slow
def test_sum_reduction_adds_gradients():
    x, y = data(8)
    mean_model, sum_model = make(), make()
    train(mean_model, opts(ga=2, r=2), x, y, momentum=0.0, lr=0.4)
    o = opts(ga=2, r=2)
    o.Training.accumulationAndReplicationReductionType(poptorch.ReductionType.Sum)
    train(sum_model, o, x, y, momentum=0.0, lr=0.1)
    assert_same_weights(sum_model, mean_model)


class Staged(nn.Module):
    def __init__(self, stages=2):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(6, 6) for _ in range(3)])
        self.head = nn.Linear(6, 5)
        for k in range(1, stages):
            poptorch.BeginBlock(self.layers[k], ipu_id=k)

    def forward(self, x, y):
        out = self.head(torch.tanh(self.layers(x)))
        return out, F.cross_entropy(out, y)


@pytest.mark.slow
def test_pipelined_step_equals_unsplit_step():
    x, y = data(12)
    torch.manual_seed(3)
    piped = Staged(stages=2)
    flat = copy.deepcopy(piped)
    for m in flat.modules():
        m.__dict__.pop("_portable_block", None)
    ref = reference_step(copy.deepcopy(flat), x, y)
    train(piped, opts(ga=3), x, y)
    train(flat, opts(ga=3), x, y)
    assert_same_weights(piped, flat, atol=0)
    assert_same_weights(piped, ref)


@pytest.mark.slow
def test_pipeline_needs_enough_gradient_accumulation():
    x, y = data(6)
    with pytest.raises(poptorch.ConfigError, match=r"3 pipeline stages.*gradient accumulation is 3.*>= 2 x stages - 1 \(5\)"):
        train(Staged(stages=3), opts(ga=3), x, y)
    train(Staged(stages=3), opts(ga=5), *data(10))


def test_runtime_blocks_count_as_stages():
    class WithBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 5)

        def forward(self, x, y):
            with poptorch.Block(ipu_id=0):
                h = self.a(x)
            with poptorch.Block(ipu_id=1):
                out = self.b(h)
            return out, F.cross_entropy(out, y)
    with pytest.raises(poptorch.ConfigError, match="2 pipeline stages"):
        train(WithBlocks(), opts(ga=2), *data(4))


@pytest.mark.slow
def test_autocast_half_compute_stays_close_to_fp32():
    x, y = data(16)
    fp32, mixed = make(), make()
    train(fp32, opts(), x, y, calls=3)
    o = opts()
    o.Portable.autocast(torch.bfloat16)
    _, (out, loss) = train(mixed, o, x, y, calls=3)
    assert out.dtype == torch.bfloat16
    for p, q in zip(mixed.parameters(), fp32.parameters()):
        assert p.dtype == torch.float32
        assert torch.allclose(p, q, atol=2e-2)
    assert not torch.equal(mixed.fc1.weight, fp32.fc1.weight)


def test_static_loss_scaling_leaves_update_unchanged():
    x, y = data(8)
    plain, scaled = make(), make()
    _, (_, loss_plain) = train(plain, opts(ga=2), x, y, calls=2)
    _, (_, loss_scaled) = train(scaled, opts(ga=2), x, y, calls=2, loss_scaling=1024.0)
    assert_same_weights(scaled, plain, atol=1e-6)
    assert torch.allclose(loss_scaled, loss_plain)


@pytest.mark.parametrize("executor", ["eager", "inductor"])
def test_set_optimizer_changes_lr_on_next_call(executor):
    """Both training executors (auto picks by timing, so the test names each)."""
    x, y = data(4)
    model = make()
    o = opts()
    o.Portable.executor(executor)
    tm, _ = train(model, o, x, y, momentum=0.0)
    assert tm.executorReport()["executor"] == executor
    before = copy.deepcopy(model.state_dict())
    tm.setOptimizer(optim.SGD(model.parameters(), lr=0.0))
    tm(x, y)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    new = optim.SGD(model.parameters(), lr=0.5, loss_scaling=64.0)
    tm.setOptimizer(new)
    assert tm.optimizer.param_groups[0]["lr"] == 0.5 and tm.optimizer.loss_scaling == 64.0
    expected = copy.deepcopy(model)
    reference_step(expected, x, y, lr=0.5, momentum=0.0)
    tm(x, y)
    assert_same_weights(model, expected)


def test_constant_attribute_cannot_change():
    x, y = data(4)
    model = make()
    opt = optim.SGD(model.parameters(), lr=0.1)
    opt.variable_attrs.markAsConstant("lr")
    tm = poptorch.trainingModel(model, opts(), opt)
    tm(x, y)
    with pytest.raises(poptorch.ConfigError, match="'lr' is marked constant"):
        tm.setOptimizer(optim.SGD(model.parameters(), lr=0.2))
    with pytest.raises(ValueError, match="Unknown optimizer attribute"):
        opt.variable_attrs.markAsConstant("nonsense")


@pytest.mark.parametrize("mode,period,out_rows,loss_shape", [
    (None, None, 2 * 3, (2,)),
    (poptorch.OutputMode.Final, None, 2 * 3, (2,)),
    (poptorch.OutputMode.All, None, 4 * 2 * 2 * 3, (4 * 2 * 2,)),
    (poptorch.OutputMode.EveryN, 2, 2 * 2 * 2 * 3, (2 * 2 * 2,)),
    (poptorch.OutputMode.Sum, None, 2 * 3, (2,)),
])
@pytest.mark.slow
def test_output_modes_give_poptorch_shapes(mode, period, out_rows, loss_shape):
    x, y = data(4 * 2 * 2 * 3)
    _, (out, loss) = train(make(), opts(di=4, ga=2, r=2, mode=mode, period=period), x, y)
    assert out.shape == (out_rows, 5)
    assert loss.shape == loss_shape


def test_output_modes_values():
    x, y = data(4 * 2 * 3)
    _, (out_all, loss_all) = train(make(), opts(di=2, ga=2, mode=poptorch.OutputMode.All), x, y, lr=0.0)
    _, (out_sum, loss_sum) = train(make(), opts(di=2, ga=2, mode=poptorch.OutputMode.Sum), x, y, lr=0.0)
    _, (out_fin, loss_fin) = train(make(), opts(di=2, ga=2), x, y, lr=0.0)
    assert loss_fin.shape == () and out_fin.shape == (6, 5)
    assert torch.allclose(out_fin, out_all[-6:]) and torch.allclose(loss_fin, loss_all[-1])
    assert torch.allclose(loss_sum, loss_all.sum(), atol=1e-5)
    assert torch.allclose(out_sum, out_all.view(4, 6, 5).sum(0), atol=1e-5)
    model = make()
    assert torch.allclose(out_all, model(x, y)[0], atol=1e-6)


def test_host_model_reflects_training_and_detach_attach():
    x, y = data(4)
    model = make()
    initial = model.fc1.weight.detach().clone()
    tm, _ = train(model, opts(), x, y)
    assert not torch.equal(model.state_dict()["fc1.weight"], initial)
    tm.detachFromDevice()
    assert not tm.isAttachedToDevice()
    tm.attachToDevice()
    tm(x, y)
    assert tm.isAttachedToDevice() and tm.isCompiled()
    lo, hi, mean = tm.getLatency()
    assert 0 < lo <= mean <= hi


def test_rmsprop_tf_variant_matches_hand_computation():
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = optim.RMSprop([p], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.5, use_tf_variant=True)
    ms, mom, w = torch.ones(2), torch.zeros(2), torch.tensor([1.0, -2.0])
    for g in (torch.tensor([0.5, 1.5]), torch.tensor([-1.0, 0.25])):
        p.grad = g.clone()
        opt.step()
        ms = 0.9 * ms + 0.1 * g * g
        mom = 0.5 * mom + 0.1 * g / torch.sqrt(ms + 1e-3)
        w = w - mom
    assert torch.allclose(p.detach(), w, atol=1e-7)
    torch_variant = nn.Parameter(torch.tensor([1.0, -2.0]))
    other = optim.RMSprop([torch_variant], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.5)
    torch_variant.grad = torch.tensor([0.5, 1.5])
    other.step()
    first_tf = 1.0 - 0.1 * 0.5 / math.sqrt(0.9 + 0.1 * 0.25 + 1e-3)
    assert abs(torch_variant[0].item() - first_tf) > 1e-2


def test_rmsprop_tf_centered_matches_hand_computation():
    p = nn.Parameter(torch.tensor([0.3]))
    opt = optim.RMSprop([p], lr=0.05, alpha=0.8, eps=1e-2, centered=True, use_tf_variant=True)
    g = torch.tensor([2.0])
    p.grad = g
    opt.step()
    ms, mg = 0.8 + 0.2 * 4.0, 0.2 * 2.0
    assert p.item() == pytest.approx(0.3 - 0.05 * 2.0 / math.sqrt(ms - mg * mg + 1e-2), abs=1e-6)


@pytest.mark.slow
def test_half_model_keeps_fp32_master_weights():
    x, y = data(4)
    model = make().to(torch.bfloat16)
    opt = optim.SGD(model.parameters(), lr=1e-4, accum_type=torch.float32)
    tm = poptorch.trainingModel(model, opts(), opt)
    for _ in range(3):
        tm(x.to(torch.bfloat16), y)
    assert model.fc1.weight.dtype == torch.bfloat16
    masters = dict((id(p), m) for p, m in opt._masters)
    master = masters[id(model.fc1.weight)]
    assert master.dtype == torch.float32
    assert torch.equal(master.to(torch.bfloat16), model.fc1.weight.detach())
    state = opt.state_dict()
    fresh_model = copy.deepcopy(model)
    fresh = optim.SGD(fresh_model.parameters(), lr=1e-4, accum_type=torch.float32)
    fresh.load_state_dict(state)
    restored = dict((id(p), m) for p, m in fresh._masters)[id(fresh_model.fc1.weight)]
    assert torch.equal(restored, master)


@pytest.mark.slow
def test_recomputation_marks_recompute_region_with_same_gradients():
    calls = {"n": 0}

    class Counted(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 16)
            self.bn = nn.BatchNorm1d(16)

        def forward(self, x):
            calls["n"] += 1
            return torch.relu(self.bn(self.fc(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Counted()
            self.head = nn.Linear(16, 5)

        def forward(self, x, y):
            out = self.head(self.block(x))
            return out, F.cross_entropy(out, y)

    x, y = data(8)
    torch.manual_seed(0)
    marked = Net()
    plain = copy.deepcopy(marked)
    marked.block.register_forward_hook(lambda m, i, o: poptorch.recomputationCheckpoint(o))
    train(plain, opts(ga=2), x, y)
    calls["n"] = 0
    tm, _ = train(marked, opts(ga=2), x, y)
    assert calls["n"] == 1 + 2 * 2
    assert_same_weights(marked, plain)
    assert torch.allclose(marked.block.bn.running_mean, plain.block.bn.running_mean)
    assert torch.equal(marked.block.bn.num_batches_tracked, plain.block.bn.num_batches_tracked)


def test_auto_recomputation_without_marks_recomputes_whole_model():
    x, y = data(4)
    plain, recomputed = make(), make()
    o = opts()
    o._Popart.set("autoRecomputation", 3)
    train(plain, opts(), x, y)
    tm, _ = train(recomputed, o, x, y)
    assert_same_weights(recomputed, plain)
    assert tm._regions == [recomputed]
    assert "_Popart.autoRecomputation" not in {e["option"] for e in o.no_effect()}


def test_automatic_loss_scaling_skips_overflow_and_halves_scale():
    x, y = data(4)
    model = make()
    o = opts()
    o.Training.setAutomaticLossScaling(True)
    opt = optim.SGD(model.parameters(), lr=0.1, loss_scaling=2.0 ** 200)
    before = copy.deepcopy(model.state_dict())
    tm = poptorch.trainingModel(model, o, opt)
    tm(x * 1e30, y)
    assert opt.loss_scaling == 2.0 ** 199
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_max_grad_norm_clips_update():
    x, y = data(4)
    clipped, ref = make(), make()
    train(clipped, opts(), x, y, momentum=0.0, lr=1.0, max_grad_norm=1e-3)
    delta = torch.cat([(p - q).flatten() for p, q in zip(clipped.parameters(), ref.parameters())])
    assert delta.norm().item() == pytest.approx(1e-3, rel=1e-3)


def test_loss_must_be_a_scalar():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 5)

        def forward(self, x, y):
            out = self.fc(x)
            return out, F.cross_entropy(out, y, reduction="none")
    with pytest.raises(poptorch.ConfigError, match="loss must be a scalar"):
        train(Bad(), opts(), *data(4))


def test_batch_must_split_into_micro_batches():
    with pytest.raises(poptorch.BatchSizeError, match="gradient accumulation"):
        train(make(), opts(ga=3), *data(4))


def test_synthetic_data_trains_without_reading_inputs():
    o = opts()
    o.enableSyntheticData(True)
    model = make()
    x, y = data(4)
    tm, _ = train(model, o, x, y)
    out, loss = tm(torch.full_like(x, float("nan")), y)
    assert torch.isfinite(out).all() and torch.isfinite(loss)


def test_default_optimizer_is_poptorch_sgd():
    model = make()
    tm = poptorch.trainingModel(model, opts())
    assert isinstance(tm.optimizer, optim.SGD) and tm.optimizer.param_groups[0]["lr"] == 0.01


def _instance(rank, world, port, out_dir):
    """One of two instances: its own half of the batch, one replica, weights broadcast from instance 0."""
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        x, y = data(8)
        model = make(seed=rank)
        o = opts()
        o.Distributed.configureProcessId(rank, world)
        train(model, o, x[rank * 4:(rank + 1) * 4], y[rank * 4:(rank + 1) * 4], calls=2)
        torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # as utils.distributed.shutdown: no instance tears down mid-collective
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_instances_synchronise_like_replicas(tmp_path):
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_instance, args=(2, port, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    x, y = data(8)
    replicated = make()
    train(replicated, opts(r=2), x, y, calls=2)
    for rank in range(2):
        state = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, value in replicated.state_dict().items():
            if name.endswith("weight") or name.endswith("bias"):
                assert torch.allclose(state[name], value, atol=1e-6), (rank, name)


def test_compiling_in_place_and_undoing_it_restores_the_eager_forward():
    from portable_poptorch.compilers.training import compile_in_place, uncompile

    class Doubler(nn.Module):
        def forward(self, x):
            return 2 * x

    model = Doubler()
    compile_in_place(model)
    assert "forward" in vars(model) and vars(model)["forward"] is not None
    uncompile(model)
    assert "forward" not in vars(model) and model(torch.ones(2)).tolist() == [2.0, 2.0]

    def triple(x):
        return 3 * x

    model.forward = triple
    compile_in_place(model)
    assert vars(model)["forward"] is not triple
    uncompile(model)
    assert model.forward is triple and model(torch.ones(1)).tolist() == [3.0]
    uncompile(model)
    assert model.forward is triple


def test_a_deep_copy_of_a_model_compiled_in_place_runs_its_own_weights_and_mode():
    """inferenceModel deep-copies the user's model; a copy of a model compiled for training must not
    run the original's forward (its weights, its train mode)."""
    from portable_poptorch.compilers.training import compile_in_place
    model = make(bn=True)
    compile_in_place(model)
    x, y = data(4)
    copied = copy.deepcopy(model).eval()
    with torch.no_grad():
        copied.fc2.weight.mul_(-1.0)
        out_copy = copied(x, y)[0]
        out_original = model(x, y)[0]
    eager = copy.deepcopy(copied)
    del eager.forward, eager._portable_eager_forward   # the class's eager forward, same weights and mode
    with torch.no_grad():
        reference = eager(x, y)[0]
    assert not torch.allclose(out_copy, out_original, atol=1e-3)
    assert torch.allclose(out_copy, reference, atol=1e-5)
    assert model.training and not copied.training
