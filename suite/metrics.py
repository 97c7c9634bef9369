"""Segmentation metrics: Dice (2-D per slice, 3-D per volume) and LV volume in millilitres.

Dice = 2|P∩T| / (|P| + |T|); 1.0 when both masks are empty, 0.0 when exactly one is.
Inputs are masks as torch tensors or NumPy arrays (non-bool values count as foreground where non-zero).
A volume is one patient × one frame (``patient001_ED``); its 3-D Dice pools the voxels of all its slices,
which is what the paper reports; the per-slice 2-D Dice averaged over slices is what the authors' code used
to choose the best epoch.

The segmenter's validation logs exactly these numbers: per volume it reduces its slices to
:func:`volume_stats` (a few sums, so volumes can be spread over ranks and all-reduced), then
:func:`volume_metrics` and :func:`run_metrics` turn the stacked sums into the logged values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

# the EF formula lives in a torch-free module (analysis derives EF errors without loading torch)
from suite.clinical import ejection_fraction as ejection_fraction

# the columns of volume_stats(): sums over the slices of one volume
VOLUME_STATS = ("intersection", "pred_px", "true_px", "dice2d_sum", "slices")


def _as_mask(x: Any) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t if t.dtype == torch.bool else t != 0


def _pair(pred: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = _as_mask(pred), _as_mask(target)
    if p.shape != t.shape:
        raise ValueError(f"dice: pred shape {tuple(p.shape)} and target shape {tuple(t.shape)} differ")
    return p, t.to(p.device)


def dice_from_counts(inter: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """2·inter / total elementwise (float64), 1.0 where total (= |P| + |T|) is 0."""
    inter, total = inter.double(), total.double()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


def dice(pred: Any, target: Any) -> float:
    """Dice of two masks of equal shape (any dimensionality) → float in [0, 1]."""
    p, t = _pair(pred, target)
    inter = torch.count_nonzero(p & t)
    total = torch.count_nonzero(p) + torch.count_nonzero(t)
    return float(dice_from_counts(inter, total))


def overlap_counts(pred: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-slice (|P∩T|, |P|, |T|) of (N, H, W) masks, each (N,) float64 (exact integers)."""
    p, t = _pair(pred, target)
    if p.ndim != 3:
        raise ValueError(f"expected (N, H, W) masks, got shape {tuple(p.shape)}")
    dims = (1, 2)
    return (p & t).sum(dim=dims).double(), p.sum(dim=dims).double(), t.sum(dim=dims).double()


def dice_per_slice(pred: Any, target: Any) -> torch.Tensor:
    """2-D Dice of each slice of (N, H, W) masks → (N,) float64."""
    inter, sp, st = overlap_counts(pred, target)
    return dice_from_counts(inter, sp + st)


def volume_stats(pred: Any, target: Any) -> torch.Tensor:
    """The slices (N, H, W) of one volume reduced to the sums :data:`VOLUME_STATS` → (5,) float64."""
    inter, sp, st = overlap_counts(pred, target)
    d2 = dice_from_counts(inter, sp + st)
    n = torch.tensor(float(len(inter)), dtype=torch.float64, device=inter.device)
    return torch.stack([inter.sum(), sp.sum(), st.sum(), d2.sum(), n])


def volume_metrics(stats: np.ndarray, ml_per_voxel: np.ndarray) -> dict[str, np.ndarray]:
    """Per-volume values from stacked :func:`volume_stats` (V, 5) and each volume's voxel volume in ml (V,).

    ``dice`` (3-D), ``dice2d`` (mean 2-D Dice of the volume's slices), ``lv_volume_pred_ml``,
    ``lv_volume_true_ml``; each (V,) float64.
    """
    a = np.asarray(stats, dtype=np.float64)
    ml = np.asarray(ml_per_voxel, dtype=np.float64)
    return {
        "dice": _dice3d(a),
        "dice2d": a[:, 3] / np.maximum(a[:, 4], 1),
        "lv_volume_pred_ml": a[:, 1] * ml,
        "lv_volume_true_ml": a[:, 2] * ml,
    }


def run_metrics(stats: np.ndarray) -> dict[str, float]:
    """Run-level values from stacked :func:`volume_stats` (V, 5): ``dice2d_slices`` (mean 2-D Dice over all
    slices: the authors' selection metric) and ``dice_mean`` (mean 3-D Dice over volumes)."""
    a = np.asarray(stats, dtype=np.float64)
    return {
        "dice2d_slices": float(a[:, 3].sum() / max(a[:, 4].sum(), 1)),
        "dice_mean": float(_dice3d(a).mean()),
    }


def _dice3d(a: np.ndarray) -> np.ndarray:
    total = a[:, 1] + a[:, 2]
    return np.where(total > 0, 2 * a[:, 0] / np.maximum(total, 1), 1.0)


def group_slices(volume_ids: Sequence[str] | np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``(volume, slice indices)`` for each distinct id of ``volume_ids`` (one per slice), sorted by id."""
    ids = np.asarray(volume_ids)
    if ids.ndim != 1:
        raise ValueError(f"volume_ids must have one entry per slice, got shape {ids.shape}")
    return [(str(name), np.flatnonzero(ids == name)) for name in np.unique(ids)]


def per_volume(
    pred: Any, target: Any, volume_ids: Sequence[str] | np.ndarray, ml_per_voxel: float | np.ndarray = 0.0
) -> dict[str, dict[str, float]]:
    """:func:`volume_metrics` of masks (N, H, W) whose slices belong to ``volume_ids`` (N,) →
    ``{volume: {metric: value}}``. ``ml_per_voxel``: a scalar or one value per volume in sorted id order."""
    p, t = _pair(pred, target)
    if len(volume_ids) != p.shape[0]:
        raise ValueError(f"volume_ids must have one entry per slice ({p.shape[0]}), got {len(volume_ids)}")
    groups = group_slices(volume_ids)
    stats = np.stack(
        [volume_stats(p[torch.as_tensor(i)], t[torch.as_tensor(i)]).cpu().numpy() for _, i in groups]
    )
    ml = np.broadcast_to(np.asarray(ml_per_voxel, dtype=np.float64), (len(groups),))
    values = volume_metrics(stats, ml)
    return {name: {k: float(v[i]) for k, v in values.items()} for i, (name, _) in enumerate(groups)}
