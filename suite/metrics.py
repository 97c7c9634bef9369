"""Segmentation metrics: Dice (2-D per slice, 3-D per volume), LV volume in millilitres, and the held-out
evaluation's per-class 3-D metrics in the original geometry (Dice, HD95 and ASSD in mm, volumes, ejection
fraction).

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

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that use it: `suite report` (analysis) imports
# ejection_fraction from here and must load no torch (tests/test_import_boundaries.py)

# the columns of volume_stats(): sums over the slices of one volume
VOLUME_STATS = ("intersection", "pred_px", "true_px", "dice2d_sum", "slices")


def _as_mask(x: Any) -> torch.Tensor:
    import torch

    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t if t.dtype == torch.bool else t != 0


def _pair(pred: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = _as_mask(pred), _as_mask(target)
    if p.shape != t.shape:
        raise ValueError(f"dice: pred shape {tuple(p.shape)} and target shape {tuple(t.shape)} differ")
    return p, t.to(p.device)


def dice_from_counts(inter: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """2·inter / total elementwise (float64), 1.0 where total (= |P| + |T|) is 0."""
    import torch

    inter, total = inter.double(), total.double()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


def dice(pred: Any, target: Any) -> float:
    """Dice of two masks of equal shape (any dimensionality) → float in [0, 1]."""
    import torch

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
    import torch

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
    import torch

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


# ---------------------------------------------------------------------------------------------- 3-D, in mm
# The held-out evaluation's metrics, per volume and class, in the original geometry against the original
# labels, with the volume's own voxel spacing (through-plane included).
#
# Surface distances: the surface of a mask is its voxels with a 6-neighbour outside it (mask XOR its binary
# erosion, the array border counting as outside); the distance from each surface voxel of one mask to the
# nearest surface voxel of the other is read from scipy's exact Euclidean distance transform with
# ``sampling=spacing``. HD95 is the larger of the two directed 95th percentiles (linear interpolation), ASSD
# the mean over both directions' distances pooled. These are MONAI's definitions
# (``compute_hausdorff_distance(percentile=95)``, ``compute_average_surface_distance(symmetric=True)``
# of monai 1.6.1, pinned as a dev dependency), and tests/test_metrics.py checks that the two agree on random
# shapes with anisotropic spacing. MONAI itself is not imported here: ``import monai.metrics`` loads 4,100
# modules (its network zoo, torchvision's models) and took 4.8 s over torch's 2.3 s on this 2-core machine,
# more than a whole smoke run's evaluation.
#
# Empty masks (Metrics Reloaded's recommendation): both empty -> Dice 1, HD95 = ASSD = 0; exactly one empty ->
# Dice 0, HD95 = ASSD = NaN, reported as undefined and counted (never averaged as 0 or as a maximum).

# ACDC label of each evaluated class
CLASS_LABELS = {"LV": 3, "Myo": 2, "RV": 1}


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask, border_value=0)


def _box(*masks: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of the union of ``masks`` grown by one voxel (clipped to the array): the surfaces and
    every distance between them lie inside it."""
    union = np.logical_or.reduce(masks)
    box = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        hit = np.flatnonzero(union.any(axis=other))
        box.append(slice(max(int(hit[0]) - 1, 0), min(int(hit[-1]) + 2, union.shape[axis])))
    return tuple(box)


def surface_distances(
    pred: np.ndarray, true: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm of two non-empty 3-D masks: (pred surface -> true surface, true ->
    pred), each one value per surface voxel."""
    from scipy.ndimage import distance_transform_edt

    p, t = np.asarray(pred, dtype=bool), np.asarray(true, dtype=bool)
    if p.shape != t.shape or p.ndim != len(spacing):
        raise ValueError(f"masks {p.shape} and {t.shape} with spacing {tuple(spacing)} do not match")
    box = _box(p, t)
    sp, st = _surface(p[box]), _surface(t[box])
    sampling = [float(s) for s in spacing]
    to_true = distance_transform_edt(~st, sampling=sampling)
    to_pred = distance_transform_edt(~sp, sampling=sampling)
    return np.asarray(to_true[sp], dtype=np.float64), np.asarray(to_pred[st], dtype=np.float64)


def class_metrics(pred: np.ndarray, true: np.ndarray, spacing: Sequence[float]) -> dict[str, float | bool]:
    """One class of one volume: ``dice`` (3-D), ``hd95_mm``, ``assd_mm`` (NaN when exactly one mask is
    empty), ``volume_true_ml``, ``volume_pred_ml``, ``empty_true``, ``empty_pred``."""
    p, t = np.asarray(pred, dtype=bool), np.asarray(true, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"pred shape {p.shape} and true shape {t.shape} differ")
    ml = float(np.prod([float(s) for s in spacing])) / 1000.0
    n_p, n_t = int(p.sum()), int(t.sum())
    out: dict[str, float | bool] = {
        "dice": 1.0 if n_p + n_t == 0 else 2.0 * int((p & t).sum()) / (n_p + n_t),
        "hd95_mm": math.nan,
        "assd_mm": math.nan,
        "volume_true_ml": n_t * ml,
        "volume_pred_ml": n_p * ml,
        "empty_true": n_t == 0,
        "empty_pred": n_p == 0,
    }
    if n_p == 0 and n_t == 0:
        out["hd95_mm"] = out["assd_mm"] = 0.0
    elif n_p and n_t:
        d_pt, d_tp = surface_distances(p, t, spacing)
        out["hd95_mm"] = float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))
        out["assd_mm"] = float(np.concatenate([d_pt, d_tp]).mean())
    return out


def ejection_fraction(edv_ml: Any, esv_ml: Any) -> Any:
    """Ejection fraction in percent, ``100 (EDV - ESV) / EDV`` (scalars or arrays); NaN where EDV is 0."""
    edv = np.asarray(edv_ml, dtype=np.float64)
    esv = np.asarray(esv_ml, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ef = np.where(edv > 0, 100.0 * (edv - esv) / np.where(edv > 0, edv, 1.0), np.nan)
    return float(ef) if ef.ndim == 0 else ef
