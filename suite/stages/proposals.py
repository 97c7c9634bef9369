"""Pseudo-labels for the ``proposals`` method, made once from the FS model.

The predictions of the FS(n, split, seed) model's **best-validation** checkpoint on the unlabeled training
slices become pseudo-labels; the ``proposals`` segmenter then supervises only the predicted-LV pixels of each
(the authors' code). They are made once and stored **in the FS run's directory**
(``<fs run>/predictions/pseudo_labels.npz``, ``RunPaths.pseudo_labels``): they are a function of the FS run
alone, so every ``proposals`` run built on that FS run (e.g. with another unlabeled batch size) reuses them.
The file is written atomically under the FS run's lock.

``pseudo_labels.npz``: ``index`` (prepared-slice indices of the unlabeled slices, sorted), ``labels`` (uint8
arg-max class map, (U, S, S)), ``image_size``, ``fs_run_id``, ``fs_best_epoch``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from suite.atomic import atomic_path
from suite.errors import InputError
from suite.inference import network, predict_channels, read_checkpoint
from suite.models import lv_channel
from suite.paths import ExperimentPaths, RunPaths
from suite.run_lock import holding
from suite.stages import process_group as pg
from suite.stages.base import RunContext, resized_arrays

log = logging.getLogger("suite.stages.proposals")


def fs_run(ctx: RunContext) -> RunPaths:
    """The FS run whose best checkpoint makes this run's pseudo-labels."""
    return ExperimentPaths(ctx.experiment_root).run(ctx.cfg.fs_config().run_id)


def make_pseudo_labels(
    cfg: Any, fs_paths: RunPaths, images: np.ndarray, idx: np.ndarray, device: torch.device
) -> tuple[np.ndarray, int]:
    """Arg-max class maps (uint8 (U, S, S)) of the FS best checkpoint on ``images[idx]``; and its epoch."""
    if not fs_paths.checkpoint_best.exists():
        raise InputError(
            f"{fs_paths.checkpoint_best}: the FS model's best checkpoint is missing; rerun the FS "
            f"run (delete {fs_paths.root} to train it again)"
        )
    weights = read_checkpoint(fs_paths, "best", device)
    net = network(cfg.fs_config(), weights, device)
    desc = "proposals: pseudo-labels of the unlabeled slices"
    return predict_channels(net, cfg, images, device, index=idx, desc=desc), weights.epoch


def ensure_pseudo_labels(ctx: RunContext, unl_idx: np.ndarray) -> RunPaths:
    """Make ``pseudo_labels.npz`` in the FS run (rank 0, under the FS run's lock) unless it already
    matches."""
    fs_paths = fs_run(ctx)
    if ctx.is_main:
        with holding(fs_paths):
            if not _matches(fs_paths, ctx.cfg.image_size, unl_idx):
                images, _ = resized_arrays(ctx.data, ctx.cfg.image_size)
                labels, best_epoch = make_pseudo_labels(ctx.cfg, fs_paths, images, unl_idx, ctx.device)
                fs_paths.predictions.mkdir(parents=True, exist_ok=True)
                with atomic_path(fs_paths.pseudo_labels) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez_compressed(
                            f,
                            index=unl_idx.astype(np.int64),
                            labels=labels,
                            image_size=np.int64(ctx.cfg.image_size),
                            fs_run_id=np.str_(fs_paths.run_id),
                            fs_best_epoch=np.int64(best_epoch),
                        )
                log.info(
                    "%s: pseudo-labels of %d unlabeled slices from %s (best epoch %d)",
                    ctx.cfg.run_id,
                    len(unl_idx),
                    fs_paths.run_id,
                    best_epoch,
                )
    pg.barrier()
    return fs_paths


def _matches(fs_paths: RunPaths, size: int, unl_idx: np.ndarray) -> bool:
    if not fs_paths.pseudo_labels.exists():
        return False
    try:
        with np.load(fs_paths.pseudo_labels) as z:
            return int(z["image_size"]) == int(size) and np.array_equal(z["index"], unl_idx)
    except (OSError, KeyError, ValueError):
        return False


def load_pseudo_labels(ctx: RunContext, unl_idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(target (U, S, S) uint8 class map, mask (U, S, S) bool = predicted-LV pixels) for ``unl_idx``."""
    fs_paths = ensure_pseudo_labels(ctx, unl_idx)
    with np.load(fs_paths.pseudo_labels) as z:
        if not np.array_equal(z["index"], unl_idx):
            raise InputError(
                f"{fs_paths.pseudo_labels}: made for other unlabeled slices; delete it to remake it"
            )
        labels = torch.from_numpy(np.asarray(z["labels"]))
    mask = labels == lv_channel(ctx.cfg)
    return labels, mask
