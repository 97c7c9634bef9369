"""The constraint family: which classes and attributes bound the segmenter on the unlabeled images, against
which targets, and how (the quadratic penalty of the paper or the log-barrier extension).

**Targets.** One row per slice, columns ``[size_1 … size_K, cy_1, cx_1 … cy_K, cx_K]`` for the K constrained
classes (``suite.models.constrained_labels``: the LV, or RV, myocardium, LV); the centroid columns only with
``constraint=size+centroid``. All in pixels at ``cfg.image_size``: a centroid coordinate is its [0, 1] image
coordinate (``suite.losses.soft_centroid``) times the side. The regressor predicts these columns (Proposed);
:func:`label_targets` computes them from label maps (the Oracle, and the regressor's training targets).

**Loss of a batch** (:func:`unlabeled_loss`): Σ over slices, classes and attributes of ψ(lower − value) +
ψ(value − upper), divided by H·W (the authors' normalisation; with ``size_units=fraction`` the size in
256×256-reference pixels and the centroid in reference pixels, divided by 256², so λ and t mean the same at
any resolution and equal the pixel version at 256×256):

- size: the soft size s_k = Σ_p p_k against ((1−γ)R_k, (1+γ)R_k) clamped at 0; an absent class (R_k = 0,
  or a regressed R_k ≤ 0) gets the bounds [0, 0], as the authors' bounds do (PreciseBounds clamps at 0,
  HKervadec/shape_descriptors bounds.py);
- centroid: the soft centroid c_k against ĉ_k ± ``centroid_tol`` (lower clamped at 0), both coordinates, only
  where the class is *present*: present ⇔ the upper size bound (1+γ)R_k ≥ 1 pixel at the training
  resolution (:func:`centroid_present`). For the Oracle (R = the true size, an integer) that is exactly
  "the class is in the slice"; for Proposed it is "the regressor predicts at least 1/(1+γ) pixel of it":
  below that the size bounds forbid even one pixel of the class, and the centroid of nothing is undefined;
- ψ: ``scheme=penalty`` max(0, z)² (eq. 4), ``logbarrier`` ψ_t with t = ``barrier_t`` ·
  ``barrier_growth``^epoch (:func:`barrier_t`: a function of the epoch, so a resumed run continues the
  schedule exactly).

The paper's setting (LV, size, penalty) goes through ``suite.losses.penalty_from_logits`` as before, so its
numbers do not change. The ``in_bounds`` flag of a slice is True when every active constraint holds.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from suite.data.acdc import LV_LABEL
from suite.losses import (
    REF_PIXELS,
    REF_SIDE,
    bound_terms,
    penalty_from_logits,
    size_bounds,
    size_regression_loss,
    soft_centroid,
)
from suite.metrics import CLASS_LABELS
from suite.models import constrained_channels, constrained_labels, lv_channel
from suite.ramps import sigmoid_rampup

CLASS_NAMES = {label: name for name, label in CLASS_LABELS.items()}  # ACDC label → RV, Myo, LV
CENTROID_MIN_PX = 1.0  # a class is present when its upper size bound allows at least one pixel
LABEL_CHUNK = 256  # slices per chunk when computing targets from label maps (bounded memory at 256×256)


def is_paper_setting(cfg: Any) -> bool:
    """LV size with the quadratic penalty: the paper (eqs. 4–5)."""
    return (cfg.constrained, cfg.constraint, cfg.scheme) == ("lv", "size", "penalty")


def has_centroid(cfg: Any) -> bool:
    return bool(cfg.constraint == "size+centroid")


def barrier_t(cfg: Any, epoch: int) -> float:
    """The log-barrier's t at ``epoch`` (0-based): ``barrier_t · barrier_growth**epoch``."""
    return float(cfg.barrier_t) * float(cfg.barrier_growth) ** int(epoch)


def lam_at(cfg: Any, epoch: int) -> float:
    """λ at ``epoch`` (0-based): ``cfg.lam``, ramped up over the first ``cfg.lam_rampup`` epochs
    (``suite.ramps.sigmoid_rampup``; no ramp at 0, the paper)."""
    return float(cfg.lam) * sigmoid_rampup(epoch, getattr(cfg, "lam_rampup", 0))


def target_columns(cfg: Any) -> list[str]:
    """Names of the target columns, e.g. ``size_LV`` or ``size_RV … cy_LV, cx_LV``."""
    names = [CLASS_NAMES[k] for k in constrained_labels(cfg)]
    cols = [f"size_{n}" for n in names]
    if has_centroid(cfg):
        cols += [f"{axis}_{n}" for n in names for axis in ("cy", "cx")]
    return cols


def reported_labels(cfg: Any) -> tuple[int, ...]:
    """The classes whose validation Dice a segmenter logs: the LV, and RV and myocardium too when the
    network is trained on them (``classes=multi``) or constrained on them (``constrained=all``)."""
    if cfg.classes == "multi" or cfg.constrained == "all":
        return (1, 2, 3)
    return (3,)


def metric_suffix(label: int) -> str:
    """``""`` for the LV (the paper's metric names stay), ``_rv`` / ``_myo`` for the others."""
    return "" if label == 3 else f"_{CLASS_NAMES[label].lower()}"


def label_targets(cfg: Any, labels: Tensor) -> Tensor:
    """The target columns (N, W) float32 of full ACDC label maps (N, H, W) (see the module docstring).

    Sizes are pixel counts; the centroid of an absent class is (0, 0) (never used: see
    :func:`centroid_present`).
    """
    if labels.dim() != 3:
        raise ValueError(f"label_targets: labels must be (N, H, W), got shape {tuple(labels.shape)}")
    ks = torch.as_tensor(constrained_labels(cfg), device=labels.device).view(1, -1, 1, 1)
    side = float(labels.shape[-2])
    out = []
    for start in range(0, len(labels), LABEL_CHUNK):
        masks = (labels[start : start + LABEL_CHUNK].unsqueeze(1) == ks).float()  # (n, K, H, W)
        cols = [masks.sum(dim=(2, 3))]
        if has_centroid(cfg):
            cols.append((soft_centroid(masks) * side).flatten(1))  # (n, K·2): cy_1, cx_1, …
        out.append(torch.cat(cols, dim=1))
    if not out:
        return torch.zeros((0, len(target_columns(cfg))), dtype=torch.float32, device=labels.device)
    return torch.cat(out)


def centroid_present(upper_size: Tensor) -> Tensor:
    """Where a centroid constraint applies: the upper size bound allows at least one pixel."""
    return upper_size >= CENTROID_MIN_PX


def _units(cfg: Any, h: int, w: int) -> tuple[float, float, float]:
    """(size scale, side, area): z = Δsize·size_scale or Δcentroid·side, and Σψ(z) / area."""
    if cfg.size_units == "pixels":
        return 1.0, float(h), float(h * w)
    if cfg.size_units == "fraction":
        return REF_PIXELS / float(h * w), float(REF_SIDE), float(REF_PIXELS)
    raise ValueError(f"size_units={cfg.size_units!r} is not one of pixels, fraction")


def unlabeled_loss(cfg: Any, logits: Tensor, targets: Tensor, epoch: int) -> tuple[Tensor, Tensor]:
    """(loss, inside) of a batch of unlabeled logits (B, C, H, W) against its target rows (B, W): the
    unweighted constraint term (scalar, multiply by λ) and the (B,) bool "every active constraint holds"."""
    targets = torch.as_tensor(targets, dtype=torch.float32, device=logits.device)
    if targets.dim() == 1:
        targets = targets.unsqueeze(1)
    if is_paper_setting(cfg):
        return penalty_from_logits(cfg, logits, targets[:, 0])
    chans = list(constrained_channels(cfg))
    probs = torch.softmax(logits.float(), dim=1)[:, chans]  # (B, K, H, W)
    b, k, h, w = probs.shape
    if tuple(targets.shape) != (b, len(target_columns(cfg))):
        raise ValueError(f"targets {tuple(targets.shape)} do not match columns {target_columns(cfg)}")
    scale, side, area = _units(cfg, h, w)
    t = barrier_t(cfg, epoch)
    sizes = probs.sum(dim=(2, 3))
    lower, upper = size_bounds(targets[:, :k], cfg.gamma)
    terms = bound_terms(sizes * scale, lower * scale, upper * scale, cfg.scheme, t)  # (B, K)
    inside = (sizes.detach() >= lower) & (sizes.detach() <= upper)
    if has_centroid(cfg):
        c = soft_centroid(probs)  # (B, K, 2) in [0, 1]
        c_hat = targets[:, k:].reshape(b, k, 2) / torch.tensor([h, w], dtype=torch.float32, device=c.device)
        c_lo, c_hi = (c_hat - cfg.centroid_tol).clamp_min(0.0), c_hat + cfg.centroid_tol
        present = centroid_present(upper)
        c_terms = bound_terms(c * side, c_lo * side, c_hi * side, cfg.scheme, t).sum(dim=-1)
        terms = terms + torch.where(present, c_terms, torch.zeros_like(c_terms))
        c_ok = ((c.detach() >= c_lo) & (c.detach() <= c_hi)).all(dim=-1)
        inside = inside & (~present | c_ok)
    return terms.sum() / area, inside.all(dim=1)


# what size_dynamics sums over a batch (the segmenter logs each sum over the epoch's unlabeled slices)
DYNAMICS = ("soft_size", "target_size", "above_bounds", "below_bounds", "empty_slices", "soft_size_empty")


def size_dynamics(cfg: Any, logits: Tensor, targets: Tensor) -> Tensor:
    """How the soft LV size of a batch of unlabeled slices sits against its bounds: the sums named by
    :data:`DYNAMICS` (float64, shape (6,)) -- soft size (pixels), target size R, slices above their upper and
    below their lower bound, slices whose upper bound allows no pixel ("empty": the Oracle's slices without
    an LV) and their soft size. Read off the detached logits: it changes no gradient."""
    with torch.no_grad():
        fg = torch.softmax(logits.detach().float(), dim=1)[:, lv_channel(cfg)]
        s = fg.sum(dim=(1, 2))
        targets = torch.as_tensor(targets, dtype=torch.float32, device=logits.device)
        r = targets.reshape(len(s), -1)[:, constrained_labels(cfg).index(LV_LABEL)]
        lower, upper = size_bounds(r, cfg.gamma)
        empty = upper < CENTROID_MIN_PX
        sums = [s.sum(), r.sum(), (s > upper).sum(), (s < lower).sum(), empty.sum(), s[empty].sum()]
        return torch.stack([x.double() for x in sums])


def dynamics_metrics(sums: list[float], n_slices: float) -> dict[str, float]:
    """The epoch's :func:`size_dynamics` sums over ``n_slices`` unlabeled slices as train metrics: the mean
    soft LV size and target size (pixels), the fractions of slices above / below their bounds and of empty
    slices, and the mean soft size of the empty slices (absent when there were none)."""
    d = dict(zip(DYNAMICS, sums, strict=True))
    n = max(n_slices, 1.0)
    out = {
        "soft_size": d["soft_size"] / n,
        "target_size": d["target_size"] / n,
        "above_bounds": d["above_bounds"] / n,
        "below_bounds": d["below_bounds"] / n,
        "empty_slices": d["empty_slices"] / n,
    }
    if d["empty_slices"] > 0:
        out["soft_size_empty"] = d["soft_size_empty"] / d["empty_slices"]
    return out


def regression_loss(cfg: Any, pred: Tensor, target: Tensor, world: int = 1) -> Tensor:
    """The regressor's loss on the target columns: ``size_regression_loss`` on the sizes (the paper's, on
    (B,) with one column) plus, with centroids, the same squared error on the centroid coordinates of the
    present classes only (pixels at ``image_size``; ``reg_loss_reduction`` mean: over the present
    coordinates)."""
    reduction = cfg.reg_loss_reduction
    if pred.dim() == 1:
        return size_regression_loss(pred, target.reshape(-1), reduction, world)
    k = len(constrained_labels(cfg))
    loss = size_regression_loss(pred[:, :k].reshape(-1), target[:, :k].reshape(-1), reduction, world)
    if has_centroid(cfg):
        present = (target[:, :k] > 0).repeat_interleave(2, dim=1)
        sq = (pred[:, k:].float() - target[:, k:].float()).square()
        sq = torch.where(present, sq, torch.zeros_like(sq))
        if reduction == "mean":
            loss = loss + sq.sum() / present.sum().clamp_min(1)
        else:
            loss = loss + sq.sum() * world
    return loss
