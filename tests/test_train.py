"""train/: losses, mixup/cutmix, LR and loss-scaling schedules, options, checkpoints and averaging (fast, in-process)."""
import math
import os

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import portable_poptorch
from cnns.train.arguments import loss_scaling_steps, parse_arguments
from cnns.train.augmentations import CoefficientSampler, cutmix_mask
from cnns.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from cnns.train.losses import TrainingModelWithLoss, one_hot, soft_cross_entropy
from cnns.train.lr_schedule import LearningRateSchedule
from cnns.train.optimizers import get_optimizer
from cnns.train.weight_avg import average_state_dicts
from cnns.utils.errors import UsageError

torch.set_num_threads(1)


def analytic_smoothed_ce(logits, labels, eps):
    """-(1 - eps) log p_y - eps / C sum_c log p_c, written out with logsumexp."""
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    c = logits.shape[1]
    per_sample = -(1 - eps) * log_p[torch.arange(len(labels)), labels] - eps / c * log_p.sum(1)
    return per_sample.mean()


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_loss_is_analytic_label_smoothed_cross_entropy(eps):
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(6, 7, generator=g), torch.randint(0, 7, (6,), generator=g)
    loss = soft_cross_entropy(logits, one_hot(labels, 7), eps)
    assert torch.allclose(loss, analytic_smoothed_ce(logits, labels, eps), atol=1e-6)
    assert torch.allclose(loss, F.cross_entropy(logits, labels, label_smoothing=eps), atol=1e-6)


def test_wrapper_returns_accuracy_and_loss_in_float32():
    model = nn.Linear(4, 3).to(torch.bfloat16)
    wrapper = TrainingModelWithLoss(model, 3, label_smoothing=0.1)
    x, y = torch.randn(5, 4).to(torch.bfloat16), torch.tensor([0, 1, 2, 0, 1])
    acc, loss = wrapper(x, y)
    logits = model(x).float()
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, analytic_smoothed_ce(logits, y, 0.1), atol=1e-5)
    assert acc.item() == pytest.approx((logits.argmax(1) == y).float().mean().item())


class Recorder(nn.Module):
    """Linear classifier that remembers its input, to check what the mixing fed it."""

    def __init__(self, features, classes):
        super().__init__()
        self.fc = nn.Linear(features, classes)

    def forward(self, x):
        self.seen = x
        return self.fc(x.flatten(1))


def test_mixup_loss_equals_formula():
    torch.manual_seed(0)
    x, y = torch.randn(4, 1, 2, 2), torch.tensor([1, 0, 2, 1])
    c = torch.tensor([0.9, 0.3, 0.5, 1.0])
    model = Recorder(4, 3)
    _, loss = TrainingModelWithLoss(model, 3, label_smoothing=0.1, use_mixup=True)(x, y, c)
    prev = [3, 0, 1, 2]
    expected_x = c.view(4, 1, 1, 1) * x + (1 - c.view(4, 1, 1, 1)) * x[prev]
    assert torch.allclose(model.seen, expected_x)
    logits = model.fc(expected_x.flatten(1))
    ce = lambda labels: F.cross_entropy(logits, labels, label_smoothing=0.1, reduction="none")  # noqa: E731
    assert torch.allclose(loss, (c * ce(y) + (1 - c) * ce(y[prev])).mean(), atol=1e-6)


def test_cutmix_mask_area_and_loss_equal_formula():
    params = torch.tensor([[0.75, 0.5, 0.5], [1.0, 0.3, 0.3], [0.0, 0.5, 0.5], [0.75, 0.0, 0.0]])
    mask, kept = cutmix_mask(params, 8, 8)
    assert mask.shape == (4, 1, 8, 8)
    assert kept.tolist() == pytest.approx([1 - 16 / 64, 1.0, 0.0, 1 - 4 / 64])
    assert mask[0, 0, 2:6, 2:6].all() and mask[0].sum() == 16
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    model = Recorder(64, 3)
    _, loss = TrainingModelWithLoss(model, 3, use_cutmix=True)(x, y, params)
    source = [2, 3, 0, 1]
    assert torch.equal(model.seen, torch.where(mask, x[source], x))
    logits = model.fc(model.seen.flatten(1))
    ce = lambda labels: F.cross_entropy(logits, labels, reduction="none")  # noqa: E731
    assert torch.allclose(loss, (kept * ce(y) + (1 - kept) * ce(y[source])).mean(), atol=1e-6)


def test_mixup_then_cutmix_mix_targets_linearly():
    x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 3])
    c = torch.full((4,), 0.5)
    params = torch.tensor([[0.75, 0.5, 0.5]] * 4)
    model = Recorder(16, 4)
    _, loss = TrainingModelWithLoss(model, 4, use_mixup=True, use_cutmix=True)(x, y, c, params)
    logits = model.fc(model.seen.flatten(1))
    mixed = one_hot(y, 4) * 0.5 + one_hot(y.roll(1), 4) * 0.5
    _, kept = cutmix_mask(params, 4, 4)
    targets = mixed * kept[:, None] + mixed.roll(2, 0) * (1 - kept[:, None])
    assert torch.allclose(loss, -(targets * F.log_softmax(logits, 1)).sum(1).mean(), atol=1e-6)


def test_coefficient_sampler_is_seeded_and_restorable(tmp_path):
    args = parse_arguments(["--data", "generated", "--batch-size", "4", "--mixup-alpha", "0.2",
                            "--cutmix-lambda-low", "0.5", "--cutmix-lambda-high", "0.9",
                            "--cutmix-disable-prob", "0.5"])
    a = CoefficientSampler(args, seed=3)
    state = a.state_dict()
    first = a.sample(64)
    b = CoefficientSampler(args, seed=99)
    b.load_state_dict(state)
    second = b.sample(64)
    assert all(torch.equal(p, q) for p, q in zip(first, second))
    mix, cut = first
    assert mix.shape == (64,) and ((mix >= 0) & (mix <= 1)).all()
    lam = cut[:, 0]
    assert ((lam == 1.0) | ((lam >= 0.5) & (lam < 0.9))).all() and (lam == 1.0).any()


def test_lr_schedules():
    cos = LearningRateSchedule(1.0, "cosine", epochs=4, steps_per_epoch=10)
    assert cos.lr_at(0.0) == pytest.approx(1.0)
    assert cos.lr_at(2.0) == pytest.approx(0.5)
    assert cos.lr_at(4.0) == pytest.approx(0.0, abs=1e-12)
    assert cos.lr_at(1.05) == pytest.approx(0.5 * (1 + math.cos(math.pi * 1.0 / 4)))
    step = LearningRateSchedule(0.8, "step", epochs=10, steps_per_epoch=5, decay=0.5, decay_epochs=[2, 5])
    assert [step.lr_at(e) for e in (1.9, 2.0, 4.9, 5.0)] == pytest.approx([0.8, 0.4, 0.4, 0.2])
    exp = LearningRateSchedule(1.0, "exponential", epochs=10, steps_per_epoch=8, decay=0.9, updates_per_epoch=0.5)
    assert [exp.lr_at(e) for e in (1.9, 2.0, 3.9, 4.0)] == pytest.approx([1.0, 0.9, 0.9, 0.81])
    warm = LearningRateSchedule(1.0, "cosine", epochs=10, steps_per_epoch=4, warmup_epochs=2)
    assert warm.lr_at(0.25) == pytest.approx(0.125 * 0.5 * (1 + math.cos(math.pi * 0.25 / 10)))
    assert warm.lr_at(1.0) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi / 10)))
    with pytest.raises(ValueError, match="Unknown learning-rate schedule"):
        LearningRateSchedule(1.0, "linear", 1, 1)


def test_loss_scaling_doubles_at_equal_epoch_intervals():
    args = parse_arguments(["--data", "generated", "--epoch", "100", "--initial-loss-scaling", "16",
                            "--loss-scaling", "128"])
    steps = loss_scaling_steps(args)
    assert steps[0] == 16 and steps[24] == 16 and steps[25] == 32 and steps[50] == 64 and steps[99] == 128
    constant = parse_arguments(["--data", "generated", "--epoch", "3", "--loss-scaling", "64"])
    assert loss_scaling_steps(constant) == [64, 64, 64]


def test_weight_decay_skips_one_dimensional_parameters():
    args = parse_arguments(["--data", "generated", "--weight-decay", "0.1", "--optimizer", "sgd_combined",
                            "--loss-scaling", "8"])
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    opt = get_optimizer(args, model, portable_poptorch.optim)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() > 1 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.dim() == 1 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
    assert opt.loss_scaling == 8 and decayed["velocity_scaling"] == 8


@pytest.mark.parametrize("argv,match", [
    (["--optimizer", "lamb"], "invalid choice: 'lamb'"),
    (["--pipeline-splits", "layer2", "layer3", "--gradient-accumulation", "4"], "at least 2 x stages - 1 = 5"),
    (["--data", "imagenet"], "needs --imagenet-data-path"),
    (["--mixup-alpha", "0.2", "--batch-size", "1"], "too small for mixup"),
    (["--cutmix-lambda-low", "0.9", "--cutmix-lambda-high", "0.5", "--batch-size", "4"], "Cutmix bounds"),
    (["--label-smoothing", "1.0"], "--label-smoothing must be in"),
    (["--initial-loss-scaling", "256", "--loss-scaling", "128"], "at most --loss-scaling"),
    (["--weight-avg-strategy", "mean"], "needs --checkpoint-path"),
    (["--config", "no-such-preset"], "not a preset"),
    (["--epoch", "0"], "--epoch must be at least 1"),
    (["--train-crop-scale", "0", "1"], "--train-crop-scale"),
])
def test_bad_options_are_usage_errors(argv, match):
    with pytest.raises(UsageError, match=match):
        parse_arguments(["--data", "generated"] + argv if "--data" not in argv else argv)


def test_presets_parse_and_command_line_wins():
    args = parse_arguments(["--config", "resnet50-pipelined", "--data", "generated", "--batch-size", "2"])
    assert args.pipeline_splits == ["layer1/2", "layer2/3", "layer3/3"] and args.batch_size == 2
    assert args.gradient_accumulation >= 7 and args.recompute_mode == "auto"
    b4 = parse_arguments(["--config", "tf-efficientnet-b4-m2000", "--data", "generated"])
    assert (b4.optimizer, b4.cutmix_lambda_low, b4.mixup_alpha, b4.weight_avg_exp_decay) == ("rmsprop_tf", 0.85, 0.2, 0.97)


def test_checkpoint_write_is_atomic_and_listing_sorts_by_epoch(tmp_path, monkeypatch):
    payload = {"epoch": 1, "args": {"model": "m"}, "model_state_dict": {"w": torch.ones(2)}, "num_classes": 10}
    for epoch in (10, 2):
        save_checkpoint(str(tmp_path), f"m_generated_{epoch}.pt", dict(payload, epoch=epoch))
    save_checkpoint(str(tmp_path), "m_generated_10_mean_avg.pt", payload)
    assert [os.path.basename(f) for f in list_checkpoints(str(tmp_path))] == ["m_generated_2.pt", "m_generated_10.pt"]

    def crash(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(str(tmp_path), "m_generated_3.pt", payload)
    assert sorted(os.listdir(tmp_path)) == ["m_generated_10.pt", "m_generated_10_mean_avg.pt", "m_generated_2.pt"]
    assert load_checkpoint(str(tmp_path / "m_generated_2.pt"))["epoch"] == 2
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="could not be read"):
        load_checkpoint(str(tmp_path / "junk.pt"))


def test_weight_average_strategies():
    states = [{"w": torch.tensor([float(i), 2.0 * i]), "n": torch.tensor(i)} for i in range(1, 4)]
    mean = average_state_dicts(states, "mean")
    assert torch.allclose(mean["w"], torch.tensor([2.0, 4.0])) and mean["n"].item() == 3
    exp = average_state_dicts(states, "exponential", decay=0.5)
    assert torch.allclose(exp["w"], torch.tensor([2.25, 4.5]))
    with pytest.raises(UsageError, match="does not average"):
        average_state_dicts(states, "none")
