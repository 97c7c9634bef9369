"""The segmenter stage: ENet trained with one of the four methods of the paper (section 4).

With ``update: alternating`` (the default, the authors' code) each epoch runs **all labeled batches**
(partial cross-entropy, global batch ``cfg.seg_batch``) **then all unlabeled batches** (global batch
``cfg.unl_batch``), each a separate optimiser step; with ``update: joint`` (the paper's objective) each step
takes one unlabeled batch and the next labeled batch (the labeled set cycled) and steps on their summed loss,
an epoch being one pass over the unlabeled set. What the unlabeled images contribute:

=============  ==========================================================================================
method         what the unlabeled images contribute
=============  ==========================================================================================
``fs``         nothing: the unlabeled pass is skipped, unlabeled images never enter the network
``proposed``   λ · size penalty (eq. 4) with bounds ((1−γ)R, (1+γ)R) around the *regressor's* cached
               prediction R (``predictions/sizes.npz`` of the prerequisite regressor run)
``oracle``     the same penalty around the *exact* LV size of each unlabeled slice
               (other classes, the centroid, the log-barrier: ``suite.constraints``)
``proposals``  cross-entropy on the FS model's pseudo-labels, supervising only the predicted-LV pixels
               (``suite.stages.proposals``)
=============  ==========================================================================================

Any method may add a semi-supervised term on the unlabeled slices (``cfg.ssl``: Mean Teacher, entropy
minimisation, cross pseudo supervision; :mod:`suite.stages.ssl_terms`); with ``ssl: none`` nothing below
changes.

Metrics (``metrics.csv``): per validation volume ``dice`` (3-D), ``dice2d`` (mean per-slice 2-D Dice),
``lv_volume_pred_ml``, ``lv_volume_true_ml``; run-level ``dice2d_slices`` (mean 2-D Dice over all validation
slices: the authors' selection metric) and ``dice_mean`` (mean 3-D Dice over volumes); train ``loss_ce`` (mean
labeled-batch CE), ``loss_penalty`` (the unweighted unlabeled term per unlabeled image: size penalty for
proposed/oracle, pseudo-label CE per unlabeled batch for proposals, 0 for fs), ``loss_total`` = ``loss_ce`` +
weight · ``loss_penalty`` (weight λ, or 1 for proposals), ``lr``, ``in_bounds`` (proposed/oracle: fraction of
unlabeled slices whose soft size was inside its bounds during the epoch's pass; with other constraints: every
active one), ``epoch_time_s``. With ``classes=multi`` or ``constrained=all`` the validation also logs the RV
and myocardium Dice (``suite.constraints.reported_labels``; names suffixed ``_rv``, ``_myo``). With an
``ssl`` term: ``loss_ssl`` (its unweighted mean over the steps that had it) and ``ssl_weight`` (w that
epoch), added to ``loss_total`` as w · ``loss_ssl``.

Seeds: the initial weights come from ``derive_seed(cfg.seed, "segmenter", "init")`` and the data orders from
``derive_seed(cfg.seed, "segmenter", "labeled"|"unlabeled", epoch)`` -- the method is not an axis, so FS,
Proposed, Oracle and Proposals of the same seed start from the same weights and see the labeled images in the
same order (common random numbers for the paired comparisons).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.atomic import atomic_path
from suite.constraints import label_targets, metric_suffix, reported_labels, target_columns, unlabeled_loss
from suite.data.acdc import LV_LABEL
from suite.errors import InputError
from suite.log import progress
from suite.losses import partial_ce
from suite.metrics import VOLUME_STATS, run_metrics, volume_metrics, volume_stats
from suite.models import (
    build_segmenter,
    channel_target,
    lv_channel,
    prepare_input,
    prepare_model,
    unit_slices,
)
from suite.seeding import derive_seed
from suite.stages import process_group as pg
from suite.stages.base import EpochResult, OptimisedStage, RunContext, autocast, resized_arrays
from suite.stages.lr_rules import CodeRule, LrRule, PlateauRule
from suite.stages.metrics_log import metric_dict
from suite.stages.ssl_terms import MethodTerms, StepBatch, make_ssl_terms

log = logging.getLogger("suite.stages.segmenter")

N_EXAMPLES_PATIENTS = 2  # val_examples.npz: mid slices of the first two validation patients, ED and ES


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


def load_seg_data(ctx: RunContext) -> SegData:
    """Slices of (n, split) at the training resolution, as device tensors; targets for the method."""
    cfg, data = ctx.cfg, ctx.data
    split = data.split(cfg.n_labeled, cfg.split_mode, cfg.split_seed)
    lab_idx = np.sort(np.asarray(data.indices(split.labeled), dtype=np.int64))
    unl_idx = np.sort(np.asarray(data.indices(split.unlabeled), dtype=np.int64))
    val_patients = sorted(split.val_seg)
    val_idx = np.sort(np.asarray(data.indices(val_patients), dtype=np.int64))
    if len(lab_idx) == 0:
        raise InputError(
            f"{cfg.data}: split n_labeled={cfg.n_labeled} has no labeled slices; check splits.json"
        )
    if len(val_idx) == 0:
        raise InputError(f"{cfg.data}: the split has no segmenter-validation slices; check splits.json")
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
        from suite.stages.proposals import load_pseudo_labels

        target, mask = load_pseudo_labels(ctx, unl_idx)
        sd.pseudo_target, sd.pseudo_mask = target.to(dev), mask.to(dev)
    return sd


def regressor_targets(ctx: RunContext, idx: np.ndarray) -> torch.Tensor:
    """The prerequisite regressor's cached predictions (len(idx), W) for slices ``idx``: the target columns of
    ``suite.constraints`` (the LV size R in pixels at ``cfg.image_size`` in the paper's setting)."""
    from suite.paths import ExperimentPaths

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


def make_lr_rule(cfg: Any) -> LrRule:
    if cfg.lr_rule == "plateau":
        return PlateauRule(cfg.seg_lr, cfg.lr_patience, cfg.lr_factor)
    return CodeRule(cfg.seg_lr, cfg.lr_patience, cfg.lr_factor)


class SegmenterStage(OptimisedStage):
    """One segmenter run (driven by :func:`suite.stages.runner.run_epochs`)."""

    higher_is_better = True

    def __init__(self, ctx: RunContext, seg_data: SegData | None = None) -> None:
        self.ctx = ctx
        cfg = ctx.cfg
        self.cfg = cfg
        self.sd = seg_data if seg_data is not None else load_seg_data(ctx)
        torch.manual_seed(derive_seed(cfg.seed, "segmenter", "init"))
        net = build_segmenter(cfg).to(ctx.device)
        net = prepare_model(net, cfg)
        self.net = net
        self.model = pg.wrap_ddp(net, ctx.device, cfg.world_size)
        self.opt = torch.optim.Adam(
            net.parameters(),
            lr=cfg.seg_lr,
            betas=(cfg.seg_betas[0], cfg.seg_betas[1]),
            weight_decay=cfg.seg_weight_decay,
        )
        self.rule = make_lr_rule(cfg)
        self.lv = lv_channel(cfg)
        # after network 1's init: the term's own networks never shift its seeds
        terms = MethodTerms(self._inputs, self._labeled_loss, lambda *a: self._unlabeled_term(*a)[0])
        self.ssl = make_ssl_terms(ctx, net, self.opt, terms)

    # -------------------------------------------------------------- one epoch
    def _bar(self, epoch: int, part: str) -> str:
        """The progress bar's label: which run, epoch and pass."""
        return f"{self.cfg.method} epoch {epoch + 1}/{self.cfg.epochs} {part}"

    def _inputs(self, idx: np.ndarray) -> torch.Tensor:
        """The network input of slices ``idx``."""
        return prepare_input(batch_images(self.sd.images, idx), self.cfg)

    def _forward(self, idx: np.ndarray) -> torch.Tensor:
        x = self._inputs(idx)
        with autocast(self.cfg, self.ctx.device):
            return self.model(x)

    def _with_ssl(
        self, loss: torch.Tensor, logits: torch.Tensor, batch: StepBatch, epoch: int
    ) -> torch.Tensor:
        """``loss`` plus the run's ``ssl`` term on the step's images (unchanged without one)."""
        extra = None if self.ssl is None else self.ssl.term(logits, batch, epoch)
        return loss if extra is None else loss + extra

    def _labeled_loss(self, logits: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """Partial CE of a labeled batch (its mean over the supervised pixels)."""
        sd, dev = self.sd, self.ctx.device
        target = channel_target(self.cfg, sd.labels.index_select(0, torch.as_tensor(idx, device=dev)))
        return partial_ce(logits, target)

    def _unlabeled_term(
        self, logits: torch.Tensor, gb: np.ndarray, local: np.ndarray, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The method's unlabeled term of one batch (global positions ``gb``, this rank's ``local``) in
        ``epoch`` (the log-barrier's t grows with it: ``suite.constraints``).

        Returns (the loss to add, weighted and scaled for DDP; the unweighted term for the log; the count of
        slices inside their bounds, 0 for proposals). The one home of the unlabeled term: both update
        schemes call it."""
        cfg, sd, dev, world = self.cfg, self.sd, self.ctx.device, self.cfg.world_size
        if cfg.method == "fs":  # with an ssl term: FS itself adds nothing on the unlabeled slices
            zero = torch.zeros((), dtype=torch.float64, device=dev)
            return logits.new_zeros(()), zero, zero
        pos = torch.as_tensor(local, device=dev)
        if cfg.method == "proposals":
            # load_seg_data made the pseudo-labels of a proposals run
            assert sd.pseudo_target is not None and sd.pseudo_mask is not None
            target = sd.pseudo_target.index_select(0, pos).long()
            mask = sd.pseudo_mask.index_select(0, pos)
            term = partial_ce(logits, target, mask)
            if world > 1:  # exact global mean over the supervised pixels of the whole global batch
                gpos = torch.as_tensor(gb, device=dev)
                g_count = sd.pseudo_mask.index_select(0, gpos).sum().clamp_min(1)
                term = term * mask.sum().clamp_min(1) * world / g_count
            return term, term.detach().double() / world, torch.zeros((), dtype=torch.float64, device=dev)
        assert sd.unl_targets is not None  # load_seg_data made them for the penalty methods
        term, inside = unlabeled_loss(cfg, logits, sd.unl_targets.index_select(0, pos), epoch)
        # the penalty is a sum over the batch: DDP averages gradients, so scale by the world size
        loss = cfg.lam * term * world if world > 1 else cfg.lam * term
        return loss, term.detach().double(), inside.sum().double()

    def _step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.ssl is not None:
            self.ssl.after_step()

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch of the run's update scheme (``cfg.update``); FS and warm-up epochs: labeled CE only.

        ``alternating`` (the authors' code): all labeled batches (CE steps), then all unlabeled batches (steps
        on the unlabeled term alone). ``joint`` (the paper's objective): one step per unlabeled batch on CE of
        the next labeled batch + the unlabeled term, the labeled set cycled (a new seeded order per pass),
        both batches through one forward pass (so DDP sees one graph per step)."""
        cfg, sd, ctx = self.cfg, self.sd, self.ctx
        world = cfg.world_size
        self.model.train()
        dev = ctx.device
        acc = torch.zeros(4, dtype=torch.float64, device=dev)  # CE, unlabeled term, inside, unlabeled items
        lr = self.rule.lr
        n_lab_batches = n_unl_batches = 0
        # penalty_warmup: the first epochs skip the unlabeled pass (they train exactly as FS; 0 = the paper)
        uses_unlabeled = cfg.method != "fs" or self.ssl is not None
        unlabeled = uses_unlabeled and len(sd.unl_idx) > 0 and epoch >= cfg.penalty_warmup
        unl_batches = (
            pg.epoch_batches(
                len(sd.unl_idx), cfg.unl_batch, cfg.seed, ("segmenter", "unlabeled", epoch), ctx.rank, world
            )
            if unlabeled
            else []
        )

        def lab_pass(p: int) -> list[tuple[np.ndarray, np.ndarray]]:
            axes = ("segmenter", "labeled", epoch) if p == 0 else ("segmenter", "labeled", epoch, p)
            return pg.epoch_batches(len(sd.lab_idx), cfg.seg_batch, cfg.seed, axes, ctx.rank, world)

        if cfg.update == "joint" and unl_batches:
            lab_batches: list[tuple[np.ndarray, np.ndarray]] = []
            n_pass = 0
            while len(lab_batches) < len(unl_batches):  # load_seg_data refuses an empty labeled set
                lab_batches += lab_pass(n_pass)
                n_pass += 1
            pairs = list(zip(lab_batches, unl_batches, strict=False))  # one pair per unlabeled batch
            for (_, lab_local), (gb, local) in progress(
                pairs, self._bar(epoch, "joint"), enabled=ctx.is_main
            ):
                idx = sd.lab_idx[lab_local]
                both = np.concatenate([idx, sd.unl_idx[local]])
                logits = self._forward(both)
                ce = self._labeled_loss(logits[: len(idx)], idx)
                loss, term, inside = self._unlabeled_term(logits[len(idx) :], gb, local, epoch)
                self._step(self._with_ssl(ce + loss, logits, StepBatch(both, len(idx), gb, local), epoch))
                acc += torch.stack([ce.detach().double(), term, inside, acc.new_tensor(float(len(local)))])
                n_lab_batches += 1
                n_unl_batches += 1
        else:
            for _, local in progress(lab_pass(0), self._bar(epoch, "labeled"), enabled=ctx.is_main):
                idx = sd.lab_idx[local]
                logits = self._forward(idx)
                ce = self._labeled_loss(logits, idx)
                self._step(self._with_ssl(ce, logits, StepBatch(idx, len(idx)), epoch))
                acc[0] += ce.detach().double()
                n_lab_batches += 1
            for gb, local in progress(unl_batches, self._bar(epoch, "unlabeled"), enabled=ctx.is_main):
                idx = sd.unl_idx[local]
                logits = self._forward(idx)
                loss, term, inside = self._unlabeled_term(logits, gb, local, epoch)
                self._step(self._with_ssl(loss, logits, StepBatch(idx, 0, gb, local), epoch))
                acc[1:] += torch.stack([term, inside, acc.new_tensor(float(len(local)))])
                n_unl_batches += 1

        stats = acc.cpu()
        pg.all_reduce_sum(stats)
        mean_ce = float(stats[0]) / max(n_lab_batches * world, 1)
        out: dict[str, float] = {"loss_ce": mean_ce, "lr": lr}
        if cfg.method == "fs":
            out["loss_penalty"] = 0.0
            out["loss_total"] = mean_ce
        elif cfg.method == "proposals":
            pen = float(stats[1]) / max(n_unl_batches, 1)
            out["loss_penalty"] = pen
            out["loss_total"] = mean_ce + pen
        else:
            pen = float(stats[1]) / max(float(stats[3]), 1.0)
            out["loss_penalty"] = pen
            out["loss_total"] = mean_ce + cfg.lam * pen
            if float(stats[3]) > 0:  # not in warm-up epochs: no unlabeled slice was seen
                out["in_bounds"] = float(stats[2]) / float(stats[3])
        if self.ssl is not None:
            out.update(self.ssl.epoch_metrics(epoch))
            out["loss_total"] += out["ssl_weight"] * out["loss_ssl"]
        return out

    # -------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Network 1's state (:class:`OptimisedStage`) and the ssl term's networks beside it."""
        state = super().state_dict()
        if self.ssl is not None:
            state["ssl"] = self.ssl.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.ssl is not None:
            self.ssl.load_state_dict(state["ssl"])

    # -------------------------------------------------------------- validation
    @torch.no_grad()
    def predict(self, idx: np.ndarray) -> torch.Tensor:
        """Arg-max class map (B, S, S) of the slices ``idx`` with the bare network in eval mode."""
        net = pg.unwrap(self.net)
        net.eval()
        x = prepare_input(batch_images(self.sd.images, idx), self.cfg)
        with autocast(self.cfg, self.ctx.device):
            logits = net(x)
        return logits.float().argmax(dim=1)

    @torch.no_grad()
    def validate(self, epoch: int) -> tuple[list[tuple[int, str, str, str, float]], dict[str, float]]:
        """Per-volume Dice (3-D and mean 2-D), LV volumes; run-level dice2d_slices and dice_mean.

        Volumes are sharded across ranks (each volume is one batch, so the numbers do not depend on the
        sharding) and the per-volume sums are all-reduced.
        """
        sd, dev = self.sd, self.ctx.device
        pg.sync_buffers(pg.unwrap(self.net))
        nv = len(sd.volumes)
        # the LV first (its metrics keep their names), then RV, myocardium where reported (channel = label)
        labels = [LV_LABEL] + [k for k in reported_labels(self.cfg) if k != LV_LABEL]
        acc = torch.zeros((len(labels), nv, len(VOLUME_STATS)), dtype=torch.float64)
        mine = range(self.ctx.rank, nv, self.ctx.world)
        for v in progress(mine, self._bar(epoch, "validation volumes"), enabled=self.ctx.is_main):
            _, idx = sd.volumes[v]
            pred_map = self.predict(idx)
            true_map = sd.labels.index_select(0, torch.as_tensor(idx, device=dev))
            for i, k in enumerate(labels):
                acc[i, v] = volume_stats(pred_map == (self.lv if k == LV_LABEL else k), true_map == k).cpu()
        pg.all_reduce_sum(acc)
        by_volume = volume_metrics(acc[0].numpy(), sd.voxel_ml)
        rows: list[tuple[int, str, str, str, float]] = []
        for v, (name, _) in enumerate(sd.volumes):
            rows += [(epoch, "val", name, k, float(values[v])) for k, values in by_volume.items()]
        run = run_metrics(acc[0].numpy())
        rows += [(epoch, "val", "", k, v) for k, v in run.items()]
        for i, k in enumerate(labels[1:], start=1):  # per-class Dice: dice_rv, dice2d_slices_myo, ...
            sfx = metric_suffix(k)
            other = volume_metrics(acc[i].numpy(), sd.voxel_ml)
            for v, (name, _) in enumerate(sd.volumes):
                rows += [(epoch, "val", name, f"{m}{sfx}", float(other[m][v])) for m in ("dice", "dice2d")]
            rows += [(epoch, "val", "", f"{m}{sfx}", x) for m, x in run_metrics(acc[i].numpy()).items()]
        return rows, run

    def epoch(self, epoch: int) -> EpochResult:
        train = self.train_epoch(epoch)
        rows = [(epoch, "train", "", k, v) for k, v in train.items()]
        vrows, run = self.validate(epoch)
        rows += vrows
        sel = run["dice2d_slices"] if self.cfg.best_metric == "dice2d" else run["dice_mean"]
        return EpochResult(rows=rows, metrics=metric_dict(rows), selection=sel)

    # -------------------------------------------------------------- end of run
    def example_slices(self) -> np.ndarray:
        """A fixed set of validation slices: the mid slice of ED and ES of the first two validation patients
        (sorted ids): the same for every run on the same data and split."""
        data = self.ctx.data
        patients = np.asarray(data.patient)
        val_patients = sorted(set(patients[self.sd.val_idx].tolist()))[:N_EXAMPLES_PATIENTS]
        out = []
        for p in val_patients:
            for name, idx in self.sd.volumes:
                if name.startswith(f"{p}_"):
                    out.append(int(idx[len(idx) // 2]))
        return np.asarray(out, dtype=np.int64)

    def finish(self, best_checkpoint: Path, final: dict[str, float]) -> None:
        """Write ``predictions/val_examples.npz`` (last-epoch model; rank 0), then evaluate the final and best
        checkpoints on the held-out test split (``suite.evaluation``)."""
        if not self.ctx.is_main:
            return
        idx = self.example_slices()
        pred = self.predict(idx).to(torch.uint8).cpu().numpy()
        label = channel_target(
            self.cfg, self.sd.labels.index_select(0, torch.as_tensor(idx, device=self.ctx.device))
        )
        data = self.ctx.data
        path = self.ctx.paths.predictions / "val_examples.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(
                    f,
                    image=self.sd.images.index_select(0, torch.as_tensor(idx, device=self.ctx.device))
                    .cpu()
                    .numpy(),
                    label=label.to(torch.uint8).cpu().numpy(),
                    pred=pred,
                    volume=np.asarray(data.volume)[idx].astype(str),
                    slice_index=np.asarray(data.slice_index)[idx].astype(np.int64),
                    index=idx,
                    lv_channel=np.int64(self.lv),
                )
        # the held-out test split, now that the last epoch is done (never earlier: nothing selects on it)
        from suite.evaluation import evaluate_after_training

        evaluate_after_training(self.cfg, self.ctx.paths, self.ctx.data, self.ctx.device)
