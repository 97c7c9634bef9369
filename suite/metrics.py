"""Segmentation metrics: Dice (2-D per slice, 3-D per volume) and LV volume in millilitres.

Dice = 2|P∩T| / (|P| + |T|); 1.0 when both masks are empty, 0.0 when exactly one is.
Inputs are boolean masks as NumPy arrays or torch tensors (non-bool values count as foreground where
non-zero). A volume is one patient × one frame (``patient001_ED``); its 3-D Dice pools the voxels of all its
slices, which is what the paper reports; the per-slice 2-D Dice is what the authors' code used to choose the
best epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["dice", "dice_per_slice", "dice_per_volume", "volume_ml", "overlap_counts"]


def _as_bool(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    return arr if arr.dtype == np.bool_ else arr != 0


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = _as_bool(pred, "pred"), _as_bool(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"dice: pred shape {p.shape} and target shape {t.shape} differ")
    return p, t


def _dice_from_counts(inter: np.ndarray, total: np.ndarray) -> np.ndarray:
    inter = np.asarray(inter, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    out = np.ones_like(total)
    nz = total > 0
    out[nz] = 2.0 * inter[nz] / total[nz]
    return out


def dice(pred: Any, target: Any) -> float:
    """Dice of two masks of equal shape (any dimensionality) → float in [0, 1]."""
    p, t = _pair(pred, target)
    inter = np.count_nonzero(p & t)
    total = np.count_nonzero(p) + np.count_nonzero(t)
    return 1.0 if total == 0 else float(2.0 * inter / total)


def overlap_counts(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-slice (|P∩T|, |P|, |T|) of (N, H, W) masks, each (N,) int64."""
    p, t = _pair(pred, target)
    if p.ndim != 3:
        raise ValueError(f"expected (N, H, W) masks, got shape {p.shape}")
    n = p.shape[0]
    p2, t2 = p.reshape(n, -1), t.reshape(n, -1)
    return ((p2 & t2).sum(1, dtype=np.int64), p2.sum(1, dtype=np.int64), t2.sum(1, dtype=np.int64))


def dice_per_slice(pred: Any, target: Any) -> np.ndarray:
    """2-D Dice of each slice of (N, H, W) masks → (N,) float64."""
    inter, sp, st = overlap_counts(pred, target)
    return _dice_from_counts(inter, sp + st)


def _group(volume_ids: Sequence[str] | np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(volume_ids)
    if ids.shape != (n,):
        raise ValueError(f"volume_ids must have one entry per slice ({n}), got shape {ids.shape}")
    return np.unique(ids, return_inverse=True)


def dice_per_volume(pred: Any, target: Any, volume_ids: Sequence[str] | np.ndarray) -> dict[str, float]:
    """3-D Dice of each volume: slices (N, H, W) grouped by ``volume_ids`` (N,) → {volume: Dice}."""
    inter, sp, st = overlap_counts(pred, target)
    names, inv = _group(volume_ids, len(inter))
    k = len(names)
    vi = np.bincount(inv, weights=inter, minlength=k)
    vt = np.bincount(inv, weights=sp + st, minlength=k)
    return {str(name): float(d) for name, d in zip(names, _dice_from_counts(vi, vt), strict=True)}


def volume_ml(
    mask: Any, volume_ids: Sequence[str] | np.ndarray, voxel_mm3: float | np.ndarray
) -> dict[str, float]:
    """Foreground volume in ml of each volume: Σ_slices (pixel count × voxel volume) / 1000.

    ``voxel_mm3`` is the volume of one voxel *at the resolution of the mask* (spacing_x · spacing_y ·
    spacing_z in mm after any resize): a scalar or one value per slice (N,).
    """
    m = _as_bool(mask, "mask")
    if m.ndim != 3:
        raise ValueError(f"volume_ml: expected (N, H, W) mask, got shape {m.shape}")
    n = m.shape[0]
    counts = m.reshape(n, -1).sum(1, dtype=np.int64).astype(np.float64)
    vox = np.broadcast_to(np.asarray(voxel_mm3, dtype=np.float64), (n,))
    names, inv = _group(volume_ids, n)
    ml = np.bincount(inv, weights=counts * vox, minlength=len(names)) / 1000.0
    return {str(name): float(v) for name, v in zip(names, ml, strict=True)}
