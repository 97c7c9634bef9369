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
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.atomic import atomic_path
from suite.data.acdc import LV_LABEL
from suite.data.augment import AugmentedSet
from suite.errors import InputError
from suite.losses import size_regression_loss
from suite.models import build_regressor, prepare_input, prepare_model
from suite.seeding import derive_seed
from suite.stages import process_group as pg
from suite.stages.base import EpochResult, OptimisedStage, RunContext, autocast, resized_arrays
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
        images, labels = resized_arrays(data, cfg.image_size)
        self.all_images = images
        self.true_all = (labels == LV_LABEL).sum(axis=(1, 2)).astype(np.float32)
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
        for _, local in pg.epoch_batches(
            len(self.aug), cfg.reg_batch, cfg.seed, ("regressor", "order", epoch), ctx.rank, cfg.world_size
        ):
            imgs, _, area = self.aug.batch(local)
            x = prepare_input(imgs.unsqueeze(1).float().div_(255.0), cfg)
            y = area.float()
            with autocast(cfg, ctx.device):
                pred = self.model(x)
            loss = size_regression_loss(pred, y, cfg.reg_loss_reduction, cfg.world_size)
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
    def predict_store(self, store: torch.Tensor | np.ndarray) -> np.ndarray:
        """Predicted sizes (float32) of every slice of ``store`` with the bare network in eval mode.

        Fixed chunks of ``EVAL_CHUNK`` slices, chunk c on rank c % world, summed across ranks.
        """
        net = pg.unwrap(self.net)
        net.eval()
        pg.sync_buffers(net)
        n = len(store)
        out = torch.zeros(n, dtype=torch.float64)
        for c, start in enumerate(range(0, n, EVAL_CHUNK)):
            if c % self.ctx.world != self.ctx.rank:
                continue
            chunk = store[start : start + EVAL_CHUNK]
            if isinstance(chunk, np.ndarray):
                chunk = torch.from_numpy(np.ascontiguousarray(chunk))
            x = prepare_input(chunk.to(self.ctx.device).unsqueeze(1).float().div_(255.0), self.cfg)
            with autocast(self.cfg, self.ctx.device):
                out[start : start + len(chunk)] = net(x).float().double().cpu()
        pg.all_reduce_sum(out)
        return out.numpy().astype(np.float32)

    def validate(self, epoch: int) -> tuple[list[tuple[int, str, str, str, float]], dict[str, float]]:
        pred = self.predict_store(self.val_x).astype(np.float64)
        true = self.val_y.cpu().numpy().astype(np.float64)
        run = regression_metrics(pred, true, self.cfg.gamma)
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
        sizes = self.predict_store(self.all_images)
        if ctx.is_main:
            path = ctx.paths.sizes
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(
                        f,
                        sizes=sizes,
                        true=self.true_all,
                        image_size=np.int64(self.cfg.image_size),
                        best_epoch=np.int64(best_epoch),
                        run_id=np.str_(self.cfg.run_id),
                    )
        pg.barrier()


def regressor_optimizer(cfg: Any, net: torch.nn.Module) -> torch.optim.SGD:
    """SGD with the config's lr, momentum and weight decay (the paper's and the authors' optimiser)."""
    return torch.optim.SGD(
        net.parameters(), lr=cfg.reg_lr, momentum=cfg.reg_momentum, weight_decay=cfg.reg_weight_decay
    )


def regression_metrics(pred: np.ndarray, true: np.ndarray, gamma: float) -> dict[str, float]:
    """``size_abs_err`` (pixels), ``size_abs_err_pct`` (over slices with an LV), ``bounds_ok`` (γ bounds)."""
    err = np.abs(pred - true)
    has = true > 0
    pct = float(np.mean(err[has] / true[has]) * 100.0) if has.any() else float("nan")
    r = np.maximum(pred, 0.0)
    ok = (true >= (1.0 - gamma) * r) & (true <= (1.0 + gamma) * r)
    return {"size_abs_err": float(err.mean()), "size_abs_err_pct": pct, "bounds_ok": float(ok.mean())}
