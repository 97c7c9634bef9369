"""The semi-supervised terms' mathematics (torch only): the teacher's exponential moving average, the Mean
Teacher consistency, the entropy and the cross pseudo supervision losses, the teacher's input noise (the
consistency ramp-up is ``suite.ramps.sigmoid_rampup``, shared with λ's ramp).

What each term is, where its defaults come from and how the suite departs from the SSL4MIS collection (the
usual harness of these baselines on ACDC): ``docs/ssl.md``. The stage side (the teacher, the second network,
their optimiser and checkpoint state, which images each term sees in which step) is
:mod:`suite.stages.ssl_terms`.

Every loss is a mean (over pixels, or over elements), so under DDP, where each rank holds an equal share of
the global batch and gradients are averaged, it is the global batch's mean without any scaling.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from suite.losses import partial_ce

# the guard inside the entropy's log, as SSL4MIS has it (docs/ssl.md)
ENTROPY_EPS = 1e-6
# the teacher's input noise is clamped at this many standard deviations (SSL4MIS: 0.1, clamped at ±0.2)
NOISE_CLAMP_SD = 2.0


def ema_decay_at(decay: float, step: int) -> float:
    """The averaging weight of the teacher's update after student step ``step`` (0-based): the true average
    of the students so far until the exponential average weighs more, min(1 − 1/(step + 1), decay). At step
    0 it is 0: the teacher becomes the student, whatever it held."""
    return min(1.0 - 1.0 / (step + 1), decay)


@torch.no_grad()
def ema_update(teacher: Iterable[Tensor], student: Iterable[Tensor], decay: float, step: int) -> None:
    """teacher ← a·teacher + (1 − a)·student for each parameter pair, a = :func:`ema_decay_at` (one fused
    lerp over every parameter: the update follows every optimiser step)."""
    t, s = list(teacher), [p.detach() for p in student]
    if len(t) != len(s):
        raise ValueError(f"ema_update: {len(t)} teacher parameters, {len(s)} student parameters")
    torch._foreach_lerp_(t, s, 1.0 - ema_decay_at(decay, step))


def consistency_mse(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Mean squared difference between the student's and the teacher's softmax over every element (B, C, H,
    W); no gradient reaches the teacher."""
    p = torch.softmax(student_logits.float(), dim=1)
    q = torch.softmax(teacher_logits.detach().float(), dim=1)
    return ((p - q) ** 2).mean()


def entropy(logits: Tensor) -> Tensor:
    """Mean over pixels of the softmax's entropy divided by log C (so 1 for a uniform prediction, 0 for a
    certain one), C the number of channels; SSL4MIS's form, with its 1e-6 inside the log."""
    p = torch.softmax(logits.float(), dim=1)
    per_pixel = -(p * torch.log(p + ENTROPY_EPS)).sum(dim=1)
    return per_pixel.mean() / math.log(logits.shape[1])


def cross_pseudo_supervision(logits: Tensor, other_logits: Tensor) -> Tensor:
    """Cross-entropy of ``logits`` against the other network's hard pseudo-labels (its arg-max), averaged over
    every pixel; no gradient reaches the other network."""
    return partial_ce(logits, other_logits.detach().argmax(dim=1))


def input_noise(
    shape: tuple[int, ...], std: float, generator: torch.Generator, device: torch.device
) -> Tensor:
    """Gaussian noise N(0, std²) clamped at ±:data:`NOISE_CLAMP_SD`·std, drawn from ``generator``."""
    z = torch.randn(shape, generator=generator, device=device) * std
    return z.clamp_(-NOISE_CLAMP_SD * std, NOISE_CLAMP_SD * std)
