"""Mixup and cutmix: coefficients sampled on the host (seeded, saved in checkpoints), mixing done on
the device inside each micro-batch.

- mixup: ``x = c x + (1 - c) roll(x, 1)``, targets mixed with the same per-sample ``c ~ Beta(a, a)``.
- cutmix: a box covering ``1 - lambda`` of the image (centre uniform, clipped at the borders) is
  pasted from ``roll(x, 2)``; targets are mixed with the area actually kept. ``lambda`` is uniform
  in ``[low, high)`` and set to 1 (no cut) with probability ``--cutmix-disable-prob``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
import torch

MIXUP_SHIFT = 1
CUTMIX_SHIFT = 2


def mixup(images: torch.Tensor, targets: torch.Tensor, coeffs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    if not images.is_floating_point():
        images = images.float()
    c = coeffs.to(targets.dtype).view(-1)
    c_img = c.to(images.dtype).view(-1, *([1] * (images.dim() - 1)))
    mixed = images * c_img + images.roll(MIXUP_SHIFT, 0) * (1 - c_img)
    return mixed, targets * c[:, None] + targets.roll(MIXUP_SHIFT, 0) * (1 - c[:, None])


def cutmix_mask(params: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample boolean mask [N, 1, H, W] of pasted pixels, and the kept-area fraction [N].

    ``params`` rows are (lambda, centre_y, centre_x) with centres in [0, 1).
    """
    lam, cy, cx = params[:, 0].float(), params[:, 1].float(), params[:, 2].float()
    ratio = torch.sqrt(1.0 - lam)
    half_h, half_w = torch.round(ratio * height / 2), torch.round(ratio * width / 2)
    cy, cx = torch.floor(cy * height), torch.floor(cx * width)
    y0, y1 = (cy - half_h).clamp(0, height), (cy + half_h).clamp(0, height)
    x0, x1 = (cx - half_w).clamp(0, width), (cx + half_w).clamp(0, width)
    ys = torch.arange(height, device=params.device, dtype=torch.float32)
    xs = torch.arange(width, device=params.device, dtype=torch.float32)
    in_y = (ys[None, :] >= y0[:, None]) & (ys[None, :] < y1[:, None])
    in_x = (xs[None, :] >= x0[:, None]) & (xs[None, :] < x1[:, None])
    mask = in_y[:, :, None] & in_x[:, None, :]
    kept = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
    return mask[:, None], kept


def cutmix(images: torch.Tensor, targets: torch.Tensor, params: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    mask, kept = cutmix_mask(params, images.shape[-2], images.shape[-1])
    mixed = torch.where(mask, images.roll(CUTMIX_SHIFT, 0), images)
    kept = kept.to(targets.dtype)[:, None]
    return mixed, targets * kept + targets.roll(CUTMIX_SHIFT, 0) * (1 - kept)


class CoefficientSampler:
    """Host-side sampling of the per-sample mixup/cutmix coefficients for one host batch."""

    def __init__(self, args: Any, seed: int) -> None:
        self.mixup_alpha = args.mixup_alpha if args.mixup_enabled else 0.0
        self.cutmix = (args.cutmix_lambda_low, args.cutmix_lambda_high) if args.cutmix_enabled else None
        self.disable_prob = args.cutmix_disable_prob
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int) -> List[torch.Tensor]:
        out = []
        if self.mixup_alpha > 0:
            out.append(torch.from_numpy(self.rng.beta(self.mixup_alpha, self.mixup_alpha, n).astype(np.float32)))
        if self.cutmix is not None:
            low, high = self.cutmix
            lam = low if low == high else self.rng.uniform(low, high, n)
            lam = np.where(self.rng.uniform(size=n) < self.disable_prob, 1.0, lam)
            centres = self.rng.uniform(size=(n, 2))
            out.append(torch.from_numpy(np.column_stack([lam, centres]).astype(np.float32)))
        return out

    def state_dict(self) -> Dict[str, Any]:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["bit_generator"]
