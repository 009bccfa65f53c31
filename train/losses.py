"""Training losses: label-smoothed cross entropy on (possibly mixed) soft targets, and the wrapper
that makes a classifier return ``(accuracy, loss)`` as PopTorch's trainingModel expects."""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .augmentations import cutmix, mixup


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(labels.long(), num_classes).float()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean over samples of -sum_c t_c log softmax(logits)_c, with t = (1 - s) * targets + s / C.

    Computed in float32 whatever the logits' type. With one-hot targets this is
    ``F.cross_entropy(logits, labels, label_smoothing=s)``; being linear in the targets, it equals the
    coefficient-weighted sum of the per-label losses for mixup/cutmix targets.
    """
    log_p = F.log_softmax(logits.float(), dim=-1)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / logits.shape[-1]
    return -(targets * log_p).sum(-1).mean()


class TrainingModelWithLoss(nn.Module):
    """Classifier + loss for ``trainingModel``: forward(images, labels[, mixup_coeffs][, cutmix_params]).

    Mixup and cutmix mix each sample with its neighbours inside the micro-batch the device sees (mixup
    with the previous sample, cutmix with the one two places back), using coefficients sampled on the
    host. Accuracy is top-1 against each sample's own label. ``identity_loss`` is the backend's
    ``poptorch.identity_loss``, which marks a hand-written loss as the one to minimise on IPUs.
    """

    def __init__(self, model: nn.Module, num_classes: int, label_smoothing: float = 0.0,
                 use_mixup: bool = False, use_cutmix: bool = False,
                 identity_loss: Optional[Callable[..., torch.Tensor]] = None, sublosses: bool = False) -> None:
        super().__init__()
        self.sublosses = sublosses
        self.identity_loss = identity_loss
        self.model = model
        self.num_classes = num_classes
        self.label_smoothing = float(label_smoothing)
        self.use_mixup, self.use_cutmix = use_mixup, use_cutmix

    def forward(self, images: torch.Tensor, labels: torch.Tensor, *coefficients: torch.Tensor):
        targets = one_hot(labels, self.num_classes)
        coeffs = list(coefficients)
        mixup_coeffs: Optional[torch.Tensor] = coeffs.pop(0) if self.use_mixup else None
        cutmix_params: Optional[torch.Tensor] = coeffs.pop(0) if self.use_cutmix else None
        if mixup_coeffs is not None:
            images, targets = mixup(images, targets, mixup_coeffs)
        if cutmix_params is not None:
            images, targets = cutmix(images, targets, cutmix_params)
        logits = self.model(images)
        loss = soft_cross_entropy(logits, targets, self.label_smoothing)
        if self.identity_loss is not None:
            loss = self.identity_loss(loss, reduction="none")
        accuracy = (logits.argmax(-1) == labels).float().mean()
        if not self.sublosses:
            return accuracy, loss
        return (accuracy, *self._sublosses(logits, targets), loss)

    def _sublosses(self, logits: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(classification, smoothing) parts of the loss, as the original logs them: (1 - s) x cross entropy
        with the targets, and s x the mean negative log-probability over classes; they sum to the loss."""
        with torch.no_grad():
            log_p = F.log_softmax(logits.float(), dim=-1)
            classification = -(targets * log_p).sum(-1).mean() * (1.0 - self.label_smoothing)
            smoothing = -log_p.mean() * self.label_smoothing
        return classification, smoothing
