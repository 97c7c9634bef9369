"""Learning-rate rules whose whole state is plain data (saved in the checkpoint).

``MultiStepRule`` (the regressor), ``PlateauRule`` (the paper) and ``CodeRule`` (the authors' public code)
for the segmenter; ``set_lr`` applies a rule's value to an optimiser.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class LrRule:
    """A learning-rate rule whose whole state is plain data (saved in the checkpoint)."""

    def __init__(self, base_lr: float) -> None:
        self.lr = float(base_lr)

    def after_epoch(
        self, epoch: int, improved: bool, best_epoch: int
    ) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for k, v in d.items():
            setattr(self, k, v)


class MultiStepRule(LrRule):
    """lr = base · factor^(number of milestones ≤ next epoch) (``torch.optim.lr_scheduler.MultiStepLR``)."""

    def __init__(self, base_lr: float, milestones: Sequence[int], factor: float) -> None:
        super().__init__(base_lr)
        self.base_lr = float(base_lr)
        self.milestones = [int(m) for m in milestones]
        self.factor = float(factor)

    def after_epoch(self, epoch: int, improved: bool, best_epoch: int) -> float:
        nxt = epoch + 1
        self.lr = self.base_lr * self.factor ** sum(1 for m in self.milestones if m <= nxt)
        return self.lr


class PlateauRule(LrRule):
    """The paper: halve after ``patience`` epochs in a row without improvement of the validation metric."""

    def __init__(self, base_lr: float, patience: int, factor: float) -> None:
        super().__init__(base_lr)
        self.patience = int(patience)
        self.factor = float(factor)
        self.bad_epochs = 0

    def after_epoch(self, epoch: int, improved: bool, best_epoch: int) -> float:
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        if self.bad_epochs >= self.patience:
            self.lr *= self.factor
            self.bad_epochs = 0
        return self.lr


class CodeRule(LrRule):
    """The authors' public code: after epoch e, halve when ``e % (best_epoch + patience) == 0``.

    Evaluated after the best epoch has been updated with epoch e, so it halves after epoch 0
    (0 % anything == 0) and then at the multiples of ``best_epoch + patience`` (patience 20 by default).
    """

    def __init__(self, base_lr: float, patience: int, factor: float) -> None:
        super().__init__(base_lr)
        self.patience = int(patience)
        self.factor = float(factor)

    def after_epoch(self, epoch: int, improved: bool, best_epoch: int) -> float:
        if epoch % (best_epoch + self.patience) == 0:
            self.lr *= self.factor
        return self.lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr
