"""Losses of the paper (eq. 1, 3–5): partial cross-entropy and the size-inequality penalty.

- :func:`partial_ce`: cross-entropy averaged over the *supervised* pixels (the authors' normalisation,
  which λ = 1e-2 assumes; eq. 1 writes a sum). ``mask`` selects the supervised pixels: all pixels of a
  labeled image, only the predicted-LV pixels of a pseudo-label (``proposals``).
- :func:`size_bounds`: ((1 − γ)R, (1 + γ)R), clamped at 0 (a regressed size R may be ≤ 0).
- :func:`size_penalty`: s = Σ_p softmax_LV; C(s) = (s − lower)² below, (s − upper)² above, 0 inside;
  divided by H·W and summed over the batch (the authors' normalisation), vectorised over the batch.
  Gradient: dC/ds = 2(s − bound)/(H·W) outside the bounds, 0 inside.
- :func:`size_regression_loss`: the regressor's squared L2 on the LV size, the batch's mean (the suite) or
  sum (the authors' ``MSELoss(reduction="sum")``; the sum over the global batch under DDP).
- ``size_units="fraction"`` (:func:`size_penalty_fraction`, :func:`penalty_for_config`): sizes as fractions
  of H·W and the penalty multiplied by the 256×256 reference pixel count, REF_PIXELS. At H·W = REF_PIXELS it
  equals the pixel penalty exactly; at any other resolution it is the penalty the same area fractions
  would give at 256×256, so λ keeps the paper's meaning at any resolution.

The constraint family (``suite.constraints`` assembles them per config):

- :func:`soft_centroid`: Σ_p p·(y, x) / Σ_p p in [0, 1] image coordinates (pixel i at (i + ½)/side).
- :func:`log_barrier`: the log-barrier extension ψ_t(z) = −log(−z)/t for z ≤ −1/t², else
  t·z − log(1/t²)/t + 1/t (Kervadec et al., "Constrained deep networks: Lagrangian optimization via
  log-barrier extensions"; LIVIAETS/extended_logbarrier losses.py, LogBarrierLoss): continuous and with a
  continuous derivative (−1/(t·z), = t at the switch point), defined for every z.
- :func:`bound_terms`: ψ(lower − value) + ψ(value − upper), ψ the quadratic penalty max(0, z)² (eq. 4)
  or ψ_t.

The caller applies λ (``loss = ce + cfg.lam * penalty``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from suite.models import lv_channel

REF_SIDE = 256
REF_PIXELS = REF_SIDE * REF_SIDE  # the paper's 256×256 resolution


def partial_ce(logits: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Cross-entropy averaged over the supervised pixels.

    logits (B, C, H, W); target (B, H, W) integer class indices; mask (B, H, W) bool (True = supervised)
    or None (every pixel). With no supervised pixel the loss is 0 (still attached to the graph).
    Computed in float32 whatever the logits' dtype (bf16 autocast).
    """
    if logits.dim() != 4:
        raise ValueError(f"partial_ce: logits must be (B, C, H, W), got shape {tuple(logits.shape)}")
    b, _, h, w = logits.shape
    if tuple(target.shape) != (b, h, w):
        raise ValueError(f"partial_ce: target shape {tuple(target.shape)} does not match logits {(b, h, w)}")
    per_pixel = F.cross_entropy(logits.float(), target.long(), reduction="none")
    if mask is None:
        return per_pixel.mean()
    if tuple(mask.shape) != (b, h, w):
        raise ValueError(f"partial_ce: mask shape {tuple(mask.shape)} does not match logits {(b, h, w)}")
    mask = mask.bool()
    count = mask.sum()
    # sum / max(count, 1): 0 with the graph kept when nothing is supervised, no host sync
    return torch.where(mask, per_pixel, torch.zeros_like(per_pixel)).sum() / count.clamp_min(1)


def size_bounds(sizes: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """(lower, upper) = ((1 − γ)·R, (1 + γ)·R), both clamped at 0; ``sizes`` (B,) float."""
    if not 0.0 <= float(gamma) < 1.0:
        raise ValueError(f"size_bounds: gamma={gamma} must be in [0, 1)")
    sizes = torch.as_tensor(sizes, dtype=torch.float32)
    return ((1.0 - gamma) * sizes).clamp_min(0.0), ((1.0 + gamma) * sizes).clamp_min(0.0)


def soft_sizes(fg_probs: Tensor) -> Tensor:
    """s = Σ_p p_LV per image: (B, H, W) → (B,), summed in float32."""
    if fg_probs.dim() != 3:
        raise ValueError(f"fg_probs must be (B, H, W), got shape {tuple(fg_probs.shape)}")
    return fg_probs.float().sum(dim=(1, 2))


def _check_bounds(fg_probs: Tensor, lower: Tensor, upper: Tensor, name: str) -> tuple[Tensor, Tensor]:
    b = fg_probs.shape[0]
    lower = torch.as_tensor(lower, dtype=torch.float32, device=fg_probs.device)
    upper = torch.as_tensor(upper, dtype=torch.float32, device=fg_probs.device)
    if tuple(lower.shape) != (b,) or tuple(upper.shape) != (b,):
        raise ValueError(
            f"{name}: lower/upper must have shape ({b},) like the batch of fg_probs, got "
            f"{tuple(lower.shape)} and {tuple(upper.shape)}"
        )
    return lower, upper


def _penalty_terms(s: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    # (s − lower)² when s < lower, (s − upper)² when s > upper, else 0 (per image)
    return F.relu(lower - s).square() + F.relu(s - upper).square()


def size_penalty(fg_probs: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """Σ_i C(s_i) / (H·W) over the batch, sizes in pixels (paper eq. 4, the authors' normalisation).

    fg_probs (B, H, W) softmax probability of the LV; lower, upper (B,) bounds in pixels. Scalar tensor.
    """
    if fg_probs.dim() != 3:
        raise ValueError(f"size_penalty: fg_probs must be (B, H, W), got shape {tuple(fg_probs.shape)}")
    lower, upper = _check_bounds(fg_probs, lower, upper, "size_penalty")
    h, w = fg_probs.shape[1:]
    return _penalty_terms(soft_sizes(fg_probs), lower, upper).sum() / (h * w)


def size_penalty_fraction(
    fg_probs: Tensor, lower_frac: Tensor, upper_frac: Tensor, ref_pixels: int = REF_PIXELS
) -> Tensor:
    """``size_units="fraction"``: ref_pixels · Σ_i C(s_i / (H·W)) with bounds as fractions of H·W.

    Equals :func:`size_penalty` at H·W = ``ref_pixels`` for the same area fractions.
    """
    if fg_probs.dim() != 3:
        raise ValueError(f"size_penalty_fraction: fg_probs must be (B, H, W), got {tuple(fg_probs.shape)}")
    lower_frac, upper_frac = _check_bounds(fg_probs, lower_frac, upper_frac, "size_penalty_fraction")
    h, w = fg_probs.shape[1:]
    s_frac = soft_sizes(fg_probs) / (h * w)
    return _penalty_terms(s_frac, lower_frac, upper_frac).sum() * float(ref_pixels)


def in_bounds(fg_probs: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """(B,) bool: whether each image's soft size lies inside [lower, upper] (same units as the bounds)."""
    lower, upper = _check_bounds(fg_probs, lower, upper, "in_bounds")
    s = soft_sizes(fg_probs.detach())
    return (s >= lower) & (s <= upper)


def fg_probs_from_logits(logits: Tensor, channel: int | None = None) -> Tensor:
    """Softmax probability (float32) of the LV ``channel`` (``suite.models.lv_channel``; default the last)."""
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, C, H, W), got shape {tuple(logits.shape)}")
    c = logits.shape[1] - 1 if channel is None else channel
    return torch.softmax(logits.float(), dim=1)[:, c]


def penalty_for_config(cfg: Any, fg_probs: Tensor, sizes_px: Tensor) -> Tensor:
    """The (unweighted) penalty of eq. 4 for ``cfg``: bounds from ``cfg.gamma`` around ``sizes_px``.

    ``sizes_px`` (B,): target sizes in pixels at the resolution of ``fg_probs`` (regressor predictions or,
    for the Oracle, the true sizes). ``cfg.size_units`` picks :func:`size_penalty` (pixels) or
    :func:`size_penalty_fraction` (fraction).
    """
    lower, upper = size_bounds(
        torch.as_tensor(sizes_px, dtype=torch.float32, device=fg_probs.device), cfg.gamma
    )
    units = getattr(cfg, "size_units", "pixels")
    if units == "pixels":
        return size_penalty(fg_probs, lower, upper)
    if units == "fraction":
        hw = fg_probs.shape[1] * fg_probs.shape[2]
        return size_penalty_fraction(fg_probs, lower / hw, upper / hw)
    raise ValueError(f"size_units={units!r} is not one of pixels, fraction")


def penalty_from_logits(cfg: Any, logits: Tensor, sizes_px: Tensor) -> tuple[Tensor, Tensor]:
    """(penalty, inside) for a batch of unlabeled logits: the unweighted penalty (scalar) and the (B,) bool
    in-bounds flags (for the ``in_bounds`` metric). Multiply the penalty by ``cfg.lam``. The penalty is on the
    LV channel only (``suite.models.lv_channel``: 3 with the authors' 4-channel head)."""
    fg = fg_probs_from_logits(logits, lv_channel(cfg))
    sizes = torch.as_tensor(sizes_px, dtype=torch.float32, device=fg.device)
    lower, upper = size_bounds(sizes, cfg.gamma)
    return penalty_for_config(cfg, fg, sizes), in_bounds(fg, lower, upper)


# added to the mass, as the authors' soft_centroid does (LIVIAETS/extended_logbarrier utils.py)
CENTROID_EPS = 1e-10
SCHEMES = ("penalty", "logbarrier")


def soft_centroid(probs: Tensor) -> Tensor:
    """Soft centroid (y, x) of each map (..., H, W) → (..., 2) in [0, 1] image coordinates, float32.

    Pixel (i, j) sits at ((i + ½)/H, (j + ½)/W): the frame does not depend on the resolution. The mass gets
    :data:`CENTROID_EPS`, so an empty map gives (0, 0) instead of NaN.
    """
    if probs.dim() < 2:
        raise ValueError(f"soft_centroid: probs must be (..., H, W), got shape {tuple(probs.shape)}")
    p = probs.float()
    h, w = p.shape[-2:]
    ys = (torch.arange(h, dtype=torch.float32, device=p.device) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32, device=p.device) + 0.5) / w
    mass = p.sum(dim=(-2, -1)) + CENTROID_EPS
    cy = (p.sum(dim=-1) * ys).sum(dim=-1) / mass
    cx = (p.sum(dim=-2) * xs).sum(dim=-1) / mass
    return torch.stack([cy, cx], dim=-1)


def log_barrier(z: Tensor, t: float) -> Tensor:
    """The log-barrier extension ψ_t(z), elementwise (see the module docstring); t > 0."""
    if not t > 0:
        raise ValueError(f"log_barrier: t={t} must be > 0")
    switch = -1.0 / (t * t)
    strict = z <= switch
    # log of a negative number only where it is used: elsewhere evaluate at the switch point (finite)
    safe = torch.where(strict, z, torch.full_like(z, switch))
    linear = t * z + (-math.log(1.0 / (t * t)) / t + 1.0 / t)
    return torch.where(strict, -torch.log(-safe) / t, linear)


def bound_terms(value: Tensor, lower: Tensor, upper: Tensor, scheme: str, t: float = 1.0) -> Tensor:
    """ψ(lower − value) + ψ(value − upper) elementwise: ``penalty`` (max(0, z)², eq. 4) or ``logbarrier``
    (ψ_t: also pushes a satisfied value away from its bounds, and its value may be negative)."""
    lo, hi = lower - value, value - upper
    if scheme == "penalty":
        return F.relu(lo).square() + F.relu(hi).square()
    if scheme == "logbarrier":
        return log_barrier(lo, t) + log_barrier(hi, t)
    raise ValueError(f"scheme={scheme!r} is not one of {', '.join(SCHEMES)}")


def size_regression_loss(pred: Tensor, target: Tensor, reduction: str = "mean", world: int = 1) -> Tensor:
    """Squared error between predicted and true sizes (B,), float32: ``mean`` or ``sum`` over the batch.

    Under DDP (``world`` > 1 ranks, each with its shard of the global batch; DDP averages gradients) the
    ``sum`` is multiplied by ``world``, so the averaged gradient is that of the sum over the global batch.
    The ``mean`` is the shard's mean (the global mean when the shards are equal).
    """
    if pred.shape != target.shape or pred.dim() != 1:
        raise ValueError(f"size_regression_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)}")
    sq = (pred.float() - target.float()).square()
    if reduction == "mean":
        return sq.mean()
    if reduction == "sum":
        return sq.sum() * world
    raise ValueError(f"reduction={reduction!r} is not one of mean, sum")
