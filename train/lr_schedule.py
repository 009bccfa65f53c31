"""Learning-rate schedules as a pure function of training progress, so a restored run recomputes the
exact rate of any step from its epoch alone.

The base schedule is evaluated at progress rounded down to the
scheduler period (``--lr-scheduler-freq`` updates per epoch; 0 means every optimiser step) and is
then scaled by a linear warm-up over ``--warmup-epoch`` epochs. A step's rate is the schedule at
the progress reached when the step ends, so the first step of a warm-up does not use a zero rate.

step multiplies by ``decay`` at each epoch of ``decay_epochs``; cosine anneals to 0 at the last epoch;
exponential multiplies by ``decay`` at every update, as the original's ExponentialLR stepped once per
scheduler period (so ``--lr-scheduler-freq 0.424 --lr-decay 0.97`` is 0.97 every 2.36 epochs).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Sequence


class LearningRateSchedule:
    """``lr_at(progress)``: learning rate when ``progress`` epochs (a float) have been trained."""

    def __init__(self, base_lr: float, schedule: str, epochs: int, steps_per_epoch: int,
                 warmup_epochs: float = 0.0, decay: float = 1.0, decay_epochs: Sequence[float] = (),
                 updates_per_epoch: float = 0.0) -> None:
        if schedule not in ("step", "cosine", "exponential"):
            raise ValueError(f"Unknown learning-rate schedule {schedule!r}; use step, cosine or exponential.")
        self.base_lr, self.schedule, self.epochs = float(base_lr), schedule, int(epochs)
        self.warmup_epochs, self.decay = float(warmup_epochs), float(decay)
        self.decay_epochs = sorted(float(e) for e in decay_epochs)
        self.updates_per_epoch = float(updates_per_epoch) if updates_per_epoch > 0 else float(max(1, steps_per_epoch))

    def _quantised(self, progress: float) -> float:
        return math.floor(progress * self.updates_per_epoch + 1e-9) / self.updates_per_epoch

    def _base(self, progress: float) -> float:
        p = self._quantised(progress)
        if self.schedule == "step":
            return self.base_lr * self.decay ** sum(1 for e in self.decay_epochs if p >= e)
        if self.schedule == "cosine":
            return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * min(p, self.epochs) / self.epochs))
        return self.base_lr * self.decay ** round(p * self.updates_per_epoch)

    def lr_at(self, progress: float) -> float:
        lr = self._base(progress)
        if self.warmup_epochs > 0 and progress < self.warmup_epochs:
            lr *= progress / self.warmup_epochs
        return lr

    def state_dict(self) -> Dict[str, Any]:
        """Everything the schedule depends on (it keeps no running state)."""
        return dict(vars(self))

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)


def schedule_from_args(args: Any, steps_per_epoch: int) -> LearningRateSchedule:
    return LearningRateSchedule(args.lr, args.lr_schedule, args.epoch, steps_per_epoch, args.warmup_epoch,
                                args.lr_decay, args.lr_epoch_decay, args.lr_scheduler_freq)
