"""The regressor stage: ResNeXt predicting the LV area (pixels at ``cfg.image_size``) of a slice.

Paper (section 4.1): squared L2 on the LV area (the batch's mean, or with ``reg_loss_reduction=sum`` the
authors' sum over the global batch: ``suite.losses.size_regression_loss``), SGD (lr ``cfg.reg_lr``, momentum
``cfg.reg_momentum``, weight decay ``cfg.reg_weight_decay``: :func:`regressor_optimizer`), ``cfg.reg_epochs``
epochs, lr × ``cfg.reg_lr_factor`` at each of ``cfg.reg_milestones``, global batch ``cfg.reg_batch``; trained
only on the labeled slices of (n, split), augmented offline to ``cfg.reg_aug_copies`` samples per slice
(``suite.data.augment.AugmentedSet``: copy 0 is the original; a fixed set produced batch by batch; images
resampled as ``cfg.reg_aug_interp``); the target is recomputed on the augmented (and resized) label. The
network's output *is* the size in pixels: no target normalisation, so the ``paper`` preset runs the paper's
lr on raw pixel counts.

Every epoch logs on the 5 regressor-validation patients (split ``regval``): ``size_abs_err`` (mean absolute
error, pixels), ``size_abs_err_pct`` (mean of |error| / true size over slices with an LV, %), ``bounds_ok``
(fraction of slices whose true size lies in [(1−γ)R, (1+γ)R], R the prediction clamped at 0); train
``loss_mse``, ``lr``, ``epoch_time_s``. The best epoch is the one with the lowest ``size_abs_err``.

At the end the best checkpoint predicts the size of **every** prepared slice once, written to
``predictions/sizes.npz`` (``sizes`` float32 (N,), ``true`` float32 (N,) at ``image_size``, ``image_size``,
``best_epoch``, ``run_id``): the segmenter reads these and never runs the regressor.

Other constrained targets (``constrained``, ``constraint``: ``suite.constraints``): the network predicts every
target column (sizes of the constrained classes, then their centroids), trained with
``suite.constraints.regression_loss``; ``sizes.npz`` adds ``targets`` and ``true_targets`` (N, W) and
``columns``; ``sizes``/``true``, the logged errors above and the selection stay the LV size's; the other
constrained classes' size errors are logged with the class as suffix (``size_abs_err_rv``, ``bounds_ok_myo``,
...: :func:`other_class_metrics`), and ``centroid_abs_err`` (pixels, over the present classes) too, with
each class's beside it when there are several (``centroid_abs_err_rv``, ``_myo``, ``_lv``:
:func:`centroid_errors`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.atomic import atomic_path
from suite.constraints import CLASS_NAMES, has_centroid, label_targets, regression_loss, target_columns
from suite.data.acdc import LV_LABEL
from suite.data.augment import AugmentedSet
from suite.errors import InputError
from suite.log import progress
from suite.models import build_regressor, constrained_labels, prepare_model, regressor_outputs, slices_input
from suite.seeding import derive_seed
from suite.stages import process_group as pg
from suite.stages.base import (
    EpochResult,
    OptimisedStage,
    RunContext,
    autocast,
    optimizer_options,
    resized_arrays,
)
from suite.stages.checkpoint import load_checkpoint
from suite.stages.lr_rules import MultiStepRule
from suite.stages.metrics_log import metric_dict

log = logging.getLogger("suite.stages.regressor")

EVAL_CHUNK = 16  # fixed evaluation batches: the numbers do not depend on how chunks are spread over ranks


class RegressorStage(OptimisedStage):
    """One regressor run (driven by :func:`suite.stages.runner.run_epochs`)."""

    higher_is_better = False

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        cfg, data = ctx.cfg, ctx.data
        self.cfg = cfg
        split = data.split(cfg.n_labeled, cfg.split_mode, cfg.split_seed)
        lab_idx = np.sort(np.asarray(data.indices(split.labeled), dtype=np.int64))
        val_idx = np.sort(np.asarray(data.indices(sorted(split.val_reg)), dtype=np.int64))
        if len(lab_idx) == 0 or len(val_idx) == 0:
            raise InputError(
                f"{cfg.data}: split n_labeled={cfg.n_labeled} has {len(lab_idx)} labeled and "
                f"{len(val_idx)} regressor-validation slices; both must be > 0 (check splits.json)"
            )
        check_batch_norm_fits(cfg, len(lab_idx) * cfg.reg_aug_copies)
        images, labels = resized_arrays(data, cfg.image_size)
        self.all_images = images
        self.true_all = (labels == LV_LABEL).sum(axis=(1, 2)).astype(np.float32)
        self.width = regressor_outputs(cfg)
        self.lv_col = len(constrained_labels(cfg)) - 1  # the LV is the last constrained class
        self.true_targets = (
            label_targets(cfg, torch.from_numpy(np.ascontiguousarray(labels))).numpy()
            if self.width > 1
            else self.true_all[:, None]
        )
        dev = ctx.device
        # the fixed offline-augmented set (copy 0 = the original), produced batch by batch on the device
        self.aug = AugmentedSet(
            torch.from_numpy(np.ascontiguousarray(images[lab_idx])).to(dev),
            torch.from_numpy(np.ascontiguousarray(labels[lab_idx])).to(dev),
            cfg.reg_aug_copies,
            derive_seed(cfg.seed, "regressor", "augment"),
            interp=cfg.reg_aug_interp,
        )
        self.val_idx = val_idx
        self.val_x = torch.from_numpy(np.ascontiguousarray(images[val_idx])).to(dev)
        self.val_y = torch.from_numpy(self.true_all[val_idx]).to(dev)
        torch.manual_seed(derive_seed(cfg.seed, "regressor", "init"))
        net = prepare_model(build_regressor(cfg).to(dev), cfg)
        self.net = net
        self.model = pg.wrap_ddp(net, dev, cfg.world_size)
        self.opt = regressor_optimizer(cfg, net)
        self.rule = MultiStepRule(cfg.reg_lr, cfg.reg_milestones, cfg.reg_lr_factor)
        log.info(
            "%s: %d augmented training slices (%d labeled x %d), %d validation slices",
            cfg.run_id,
            len(self.aug),
            len(lab_idx),
            cfg.reg_aug_copies,
            len(val_idx),
        )

    # -------------------------------------------------------------- state
    # -------------------------------------------------------------- epoch
    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg, ctx = self.cfg, self.ctx
        self.model.train()
        acc = torch.zeros((), dtype=torch.float64, device=ctx.device)
        n = 0
        lr = self.rule.lr
        batches = pg.epoch_batches(
            len(self.aug), cfg.reg_batch, cfg.seed, ("regressor", "order", epoch), ctx.rank, cfg.world_size
        )
        label = f"regressor epoch {epoch + 1}/{cfg.epochs} train"
        for _, local in progress(batches, label, enabled=ctx.is_main):
            imgs, labs, area = self.aug.batch(local)
            x = slices_input(imgs, cfg)
            y = area.float() if self.width == 1 else label_targets(cfg, labs)
            with autocast(cfg, ctx.device):
                pred = self.model(x)
            loss = regression_loss(cfg, pred, y, cfg.world_size)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            acc += (pred.detach().float() - y).square().mean().double()  # logged: per-sample mean
            n += 1
        stats = torch.stack([acc.cpu(), torch.tensor(float(n), dtype=torch.float64)])
        pg.all_reduce_sum(stats)
        loss_mse = float(stats[0] / max(float(stats[1]), 1.0))
        if not np.isfinite(loss_mse):
            log.warning(
                "%s epoch %d: non-finite training loss (lr %g too large for raw pixel targets?)",
                cfg.run_id,
                epoch,
                lr,
            )
        return {"loss_mse": loss_mse, "lr": lr}

    @torch.no_grad()
    def predict_store(self, store: torch.Tensor | np.ndarray, label: str = "predict") -> np.ndarray:
        """Predictions (float32, (N,) or (N, W)) of every slice of ``store``, bare network in eval mode.

        Fixed chunks of ``EVAL_CHUNK`` slices, chunk c on rank c % world, summed across ranks.
        """
        net = pg.unwrap(self.net)
        net.eval()
        pg.sync_buffers(net)
        n = len(store)
        out = torch.zeros((n, self.width) if self.width > 1 else (n,), dtype=torch.float64)
        mine = range(self.ctx.rank * EVAL_CHUNK, n, self.ctx.world * EVAL_CHUNK)  # chunk c on rank c % world
        for start in progress(mine, label, enabled=self.ctx.is_main):
            chunk = store[start : start + EVAL_CHUNK]
            if isinstance(chunk, np.ndarray):
                chunk = torch.from_numpy(np.ascontiguousarray(chunk))
            x = slices_input(chunk.to(self.ctx.device), self.cfg)
            with autocast(self.cfg, self.ctx.device):
                out[start : start + len(chunk)] = net(x).float().double().cpu()
        pg.all_reduce_sum(out)
        return out.numpy().astype(np.float32)

    def validate(self, epoch: int) -> tuple[list[tuple[int, str, str, str, float]], dict[str, float]]:
        label = f"regressor epoch {epoch + 1}/{self.cfg.epochs} validation"
        pred = self.predict_store(self.val_x, label).astype(np.float64)
        true = self.val_y.cpu().numpy().astype(np.float64)
        extra: dict[str, float] = {}
        if self.width > 1:
            targets = self.true_targets[self.val_idx].astype(np.float64)
            extra = other_class_metrics(self.cfg, pred, targets)
            if has_centroid(self.cfg):
                extra.update(centroid_errors(self.cfg, pred, targets))
            pred = pred[:, self.lv_col]
        run = {**regression_metrics(pred, true, self.cfg.gamma), **extra}
        return [(epoch, "regval", "", k, v) for k, v in run.items()], run

    def epoch(self, epoch: int) -> EpochResult:
        train = self.train_epoch(epoch)
        rows = [(epoch, "train", "", k, v) for k, v in train.items()]
        vrows, run = self.validate(epoch)
        rows += vrows
        sel = run["size_abs_err"]
        return EpochResult(
            rows=rows, metrics=metric_dict(rows), selection=sel if np.isfinite(sel) else float("nan")
        )

    # -------------------------------------------------------------- end of run
    def finish(self, best_checkpoint: Path, final: dict[str, float]) -> None:
        """Predict every prepared slice once with the best checkpoint → ``predictions/sizes.npz``."""
        ctx = self.ctx
        best_epoch = -1
        if best_checkpoint.exists():
            ck = load_checkpoint(best_checkpoint, map_location=ctx.device)
            pg.unwrap(self.net).load_state_dict(ck["model"])
            best_epoch = int(ck["epoch"])
        else:  # every epoch diverged: keep the last weights, say so
            log.warning(
                "%s: no best checkpoint (no finite validation error); predicting with the last weights",
                self.cfg.run_id,
            )
        preds = self.predict_store(self.all_images, "regressor: sizes of every slice")
        sizes = preds[:, self.lv_col] if self.width > 1 else preds
        arrays: dict[str, Any] = dict(
            sizes=sizes,
            true=self.true_all,
            image_size=np.int64(self.cfg.image_size),
            best_epoch=np.int64(best_epoch),
            run_id=np.str_(self.cfg.run_id),
        )
        if self.width > 1:
            columns = np.asarray(target_columns(self.cfg))
            arrays.update(targets=preds, true_targets=self.true_targets, columns=columns)
        if ctx.is_main:
            path = ctx.paths.sizes
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays)
        pg.barrier()


def check_batch_norm_fits(cfg: Any, n_samples: int) -> None:
    """Refuse, before any work, a regressor whose batch norm would meet one value per channel: torchvision's
    ResNeXt ends on a ceil(S/32)-pixel map, 1x1 up to image_size 32, and an epoch of ``n_samples`` in global
    batches of ``reg_batch`` over ``world_size`` ranks may leave a rank a batch of one sample."""
    if cfg.reg_arch != "resnext" or cfg.image_size > 32:
        return
    per_rank = [cfg.reg_batch // cfg.world_size]
    last = n_samples % cfg.reg_batch
    if last:  # a short last batch, padded to a multiple of world_size (process_group.global_batches)
        per_rank.append(-(-last // cfg.world_size))
    if min(per_rank) == 1:
        raise InputError(
            f"config fields image_size={cfg.image_size}, reg_batch={cfg.reg_batch}: the regressor's last "
            f"stage is 1x1 at this size and its {n_samples} training samples leave a batch of 1 sample per "
            "rank, which batch norm cannot train on; use image_size >= 64, or a reg_batch or "
            "reg_aug_copies that leaves every rank 2 or more samples"
        )


def regressor_optimizer(cfg: Any, net: torch.nn.Module) -> torch.optim.SGD:
    """SGD with the config's lr, momentum and weight decay (the paper's and the authors' optimiser)."""
    return torch.optim.SGD(
        net.parameters(),
        lr=cfg.reg_lr,
        momentum=cfg.reg_momentum,
        weight_decay=cfg.reg_weight_decay,
        **optimizer_options(cfg),
    )


def centroid_errors(cfg: Any, pred: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Mean |error| of the predicted centroid coordinates (pixels) over the slices where the class is
    present: ``centroid_abs_err`` over every constrained class, and with several classes each class's too
    (``centroid_abs_err_rv``, ``_myo``, ``_lv``), which differ as their size errors do."""
    labels = constrained_labels(cfg)
    k = len(labels)
    present = np.repeat(targets[:, :k] > 0, 2, axis=1)  # columns: the sizes, then (y, x) per class
    err = np.abs(pred[:, k:] - targets[:, k:])

    def mean(cols: slice) -> float:
        e = err[:, cols][present[:, cols]]
        return float(e.mean()) if e.size else float("nan")

    out = {"centroid_abs_err": mean(slice(None))}
    if k > 1:
        for j, label in enumerate(labels):
            out[f"centroid_abs_err_{CLASS_NAMES[label].lower()}"] = mean(slice(2 * j, 2 * j + 2))
    return out


def other_class_metrics(cfg: Any, pred: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """:func:`regression_metrics` of the size of every constrained class but the LV, suffixed with the
    class (``size_abs_err_rv``, ``bounds_ok_myo``, ...): with ``constrained=all`` the RV and myocardium
    bounds are as much a part of the method as the LV's, and their errors differ."""
    out: dict[str, float] = {}
    for j, label in enumerate(constrained_labels(cfg)):
        if label == LV_LABEL:
            continue
        suffix = CLASS_NAMES[label].lower()
        for k, v in regression_metrics(pred[:, j], targets[:, j], cfg.gamma).items():
            out[f"{k}_{suffix}"] = v
    return out


def regression_metrics(pred: np.ndarray, true: np.ndarray, gamma: float) -> dict[str, float]:
    """``size_abs_err`` (pixels), ``size_abs_err_pct`` (over slices with an LV), ``bounds_ok`` (γ bounds)."""
    err = np.abs(pred - true)
    has = true > 0
    pct = float(np.mean(err[has] / true[has]) * 100.0) if has.any() else float("nan")
    r = np.maximum(pred, 0.0)
    ok = (true >= (1.0 - gamma) * r) & (true <= (1.0 + gamma) * r)
    return {"size_abs_err": float(err.mean()), "size_abs_err_pct": pct, "bounds_ok": float(ok.mean())}
