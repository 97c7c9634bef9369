"""What a segmenter run reads: the slices of its split at the training resolution, in memory, and the
targets of its method (the constraint targets of Proposed / Oracle, the pseudo-labels of Proposals).

:class:`SegData` holds them (uint8 on the device, converted per batch by :func:`batch_images`);
:func:`load_seg_data` builds it once per run. The training loop is ``suite.stages.segmenter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from suite.constraints import label_targets, target_columns
from suite.errors import InputError
from suite.models import unit_slices
from suite.paths import ExperimentPaths
from suite.stages.base import RunContext, resized_arrays
from suite.stages.proposals import load_pseudo_labels


@dataclass
class SegData:
    """Everything a segmenter run reads, in memory (uint8 on the device; converted per batch).

    ``images``/``labels`` are full (N, S, S) arrays at ``cfg.image_size`` indexed by prepared-slice index.
    ``unl_targets`` (proposed/oracle) are the constraint targets (N_unl, W) of the unlabeled slices
    (``suite.constraints``: the sizes R in pixels, then the centroids);
    ``pseudo_target``/``pseudo_mask`` (proposals) the pseudo-labels of the unlabeled slices.
    """

    images: torch.Tensor
    labels: torch.Tensor
    lab_idx: np.ndarray
    unl_idx: np.ndarray
    val_idx: np.ndarray
    volumes: list[tuple[str, np.ndarray]]  # (volume name, prepared-slice indices in slice order)
    voxel_ml: np.ndarray  # (n_volumes,) millilitres per voxel at the training resolution
    unl_targets: torch.Tensor | None = None
    pseudo_target: torch.Tensor | None = None
    pseudo_mask: torch.Tensor | None = None


def batch_images(images: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    """(B, 1, S, S) float32 in [0, 1] from the uint8 slice store."""
    sel = torch.as_tensor(idx, dtype=torch.long, device=images.device)
    return unit_slices(images.index_select(0, sel))


def voxel_ml_per_volume(data: Any, volumes: list[tuple[str, np.ndarray]], size: int) -> np.ndarray:
    """Millilitres per voxel at the training resolution, per volume.

    The in-plane pixel area at the prepared size is ``lv_area_mm2 / lv_area_px`` (the prepared arrays carry
    both); it scales by ``(prepared size / size)²`` at another resolution; the slice thickness is the third
    spacing component.
    """
    spacing = np.asarray(data.spacing, dtype=np.float64)
    area_mm2 = np.asarray(data.lv_area_mm2, dtype=np.float64)
    area_px = np.asarray(data.lv_area_px, dtype=np.float64)
    scale = (float(data.size) / float(size)) ** 2
    out = np.zeros(len(volumes))
    for i, (_name, idx) in enumerate(volumes):
        ok = area_px[idx] > 0
        if ok.any():
            px_mm2 = area_mm2[idx][ok].sum() / area_px[idx][ok].sum()
        else:  # no LV in the whole volume: fall back to the spacing scaled to the prepared size
            px_mm2 = float(spacing[idx[0], 0] * spacing[idx[0], 1])
        out[i] = px_mm2 * scale * float(spacing[idx[0], 2]) / 1000.0
    return out


def split_slices(cfg: Any, data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labeled, unlabeled, validation) prepared-slice indices of the run's split, each ascending: the item
    lists the data orders (``suite.stages.segmenter.labeled_batches``, ``unlabeled_batches``) index into."""
    split = data.split(cfg.n_labeled, cfg.split_mode, cfg.split_seed)
    lab_idx = np.sort(np.asarray(data.indices(split.labeled), dtype=np.int64))
    unl_idx = np.sort(np.asarray(data.indices(split.unlabeled), dtype=np.int64))
    val_idx = np.sort(np.asarray(data.indices(sorted(split.val_seg)), dtype=np.int64))
    if len(lab_idx) == 0:
        raise InputError(
            f"{cfg.data}: split n_labeled={cfg.n_labeled} has no labeled slices; check splits.json"
        )
    if len(val_idx) == 0:
        raise InputError(f"{cfg.data}: the split has no segmenter-validation slices; check splits.json")
    return lab_idx, unl_idx, val_idx


def load_seg_data(ctx: RunContext) -> SegData:
    """Slices of (n, split) at the training resolution, as device tensors; targets for the method."""
    cfg, data = ctx.cfg, ctx.data
    lab_idx, unl_idx, val_idx = split_slices(cfg, data)
    images, labels = resized_arrays(data, cfg.image_size)
    volume_names = np.asarray(data.volume)
    slice_index = np.asarray(data.slice_index)
    volumes: list[tuple[str, np.ndarray]] = []
    for name in sorted(set(volume_names[val_idx].tolist())):
        idx = val_idx[volume_names[val_idx] == name]
        volumes.append((str(name), idx[np.argsort(slice_index[idx], kind="stable")]))
    dev = ctx.device
    sd = SegData(
        images=torch.from_numpy(np.ascontiguousarray(images)).to(dev),
        labels=torch.from_numpy(np.ascontiguousarray(labels)).to(dev),
        lab_idx=lab_idx,
        unl_idx=unl_idx,
        val_idx=val_idx,
        volumes=volumes,
        voxel_ml=voxel_ml_per_volume(data, volumes, cfg.image_size),
    )
    if cfg.method == "oracle":
        sd.unl_targets = label_targets(cfg, sd.labels.index_select(0, torch.as_tensor(unl_idx, device=dev)))
    elif cfg.method == "proposed":
        sd.unl_targets = regressor_targets(ctx, unl_idx).to(dev)
    elif cfg.method == "proposals":
        target, mask = load_pseudo_labels(ctx, unl_idx)
        sd.pseudo_target, sd.pseudo_mask = target.to(dev), mask.to(dev)
    return sd


def regressor_targets(ctx: RunContext, idx: np.ndarray) -> torch.Tensor:
    """The prerequisite regressor's cached predictions (len(idx), W) for slices ``idx``: the target columns of
    ``suite.constraints`` (the LV size R in pixels at ``cfg.image_size`` in the paper's setting)."""
    reg_paths = ExperimentPaths(ctx.experiment_root).run(ctx.cfg.regressor_config().run_id)
    if not reg_paths.sizes.exists():
        raise InputError(
            f"{reg_paths.sizes}: the regressor's size predictions are missing; rerun its stage "
            f"(delete {reg_paths.summary} to make it run again)"
        )
    with np.load(reg_paths.sizes) as z:
        sizes, size = (z["targets"] if "targets" in z.files else z["sizes"]), int(z["image_size"])
    sizes = sizes.reshape(len(sizes), -1)
    if sizes.shape[1] != len(target_columns(ctx.cfg)):
        raise InputError(
            f"{reg_paths.sizes}: {sizes.shape[1]} predicted columns, the config constrains "
            f"{', '.join(target_columns(ctx.cfg))}; delete {reg_paths.summary} to rerun the regressor"
        )
    if size != ctx.cfg.image_size or len(sizes) != len(ctx.data.volume):
        raise InputError(
            f"{reg_paths.sizes}: predictions for {len(sizes)} slices at {size}px do not match "
            f"the prepared data ({len(ctx.data.volume)} slices at image_size={ctx.cfg.image_size})"
        )
    return torch.from_numpy(np.asarray(sizes, dtype=np.float32)[idx])
