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
``derive_seed(cfg.seed, "segmenter", "labeled"|"unlabeled", epoch)`` (:func:`labeled_batches`,
:func:`unlabeled_batches`, over the slices of ``segmenter_data.split_slices``) -- the method is not an
axis, so FS, Proposed, Oracle and Proposals of the same seed start from the same weights and see the labeled
images in the same order (common random numbers for the paired comparisons).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.atomic import atomic_path
from suite.constraints import (
    DYNAMICS,
    dynamics_metrics,
    lam_at,
    metric_suffix,
    reported_labels,
    size_dynamics,
    unlabeled_loss,
)
from suite.data.acdc import LV_LABEL
from suite.log import progress
from suite.losses import partial_ce
from suite.metrics import VOLUME_STATS, run_metrics, volume_metrics, volume_stats
from suite.models import (
    build_segmenter,
    channel_target,
    lv_channel,
    prepare_input,
    prepare_model,
)
from suite.seeding import derive_seed
from suite.stages import process_group as pg
from suite.stages.base import (
    EpochResult,
    OptimisedStage,
    RunContext,
    autocast,
    optimizer_options,
)
from suite.stages.lr_rules import CodeRule, LrRule, PlateauRule
from suite.stages.metrics_log import metric_dict
from suite.stages.segmenter_data import SegData, batch_images, load_seg_data
from suite.stages.ssl_terms import MethodTerms, StepBatch, make_ssl_terms

log = logging.getLogger("suite.stages.segmenter")

N_EXAMPLES_PATIENTS = 2  # val_examples.npz: mid slices of the first two validation patients, ED and ES


def labeled_batches(
    cfg: Any, n_items: int, epoch: int, rank: int, world: int, n_pass: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pass ``n_pass`` of ``epoch`` over the labeled slices: (global batch, this rank's share) positions into
    the labeled slice list (``joint`` cycles the labeled set: passes 1, 2, … within one epoch)."""
    axes = ("segmenter", "labeled", epoch) if n_pass == 0 else ("segmenter", "labeled", epoch, n_pass)
    return pg.epoch_batches(n_items, cfg.seg_batch, cfg.seed, axes, rank, world)


def unlabeled_batches(
    cfg: Any, n_items: int, epoch: int, rank: int, world: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pass of ``epoch`` over the unlabeled slices, as :func:`labeled_batches` (global batch
    ``cfg.unl_batch``)."""
    return pg.epoch_batches(n_items, cfg.unl_batch, cfg.seed, ("segmenter", "unlabeled", epoch), rank, world)


def has_unlabeled_pass(cfg: Any, n_unlabeled: int, epoch: int) -> bool:
    """Whether ``epoch`` has a pass over the unlabeled slices (never for FS without an ``ssl`` term; not in
    ``penalty_warmup`` epochs, which train exactly as FS; 0 = the paper)."""
    uses_unlabeled = cfg.method != "fs" or getattr(cfg, "ssl", "none") != "none"
    return uses_unlabeled and n_unlabeled > 0 and epoch >= cfg.penalty_warmup


def initial_segmenter(cfg: Any) -> torch.nn.Module:
    """The run's segmenter before its first step: :func:`build_segmenter` after seeding the global RNG from
    ``derive_seed(cfg.seed, "segmenter", "init")`` (the method is not an axis: every method of a seed starts
    from these weights)."""
    torch.manual_seed(derive_seed(cfg.seed, "segmenter", "init"))
    return build_segmenter(cfg)


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
        net = initial_segmenter(cfg).to(ctx.device)
        net = prepare_model(net, cfg)
        self.net = net
        self.model = pg.wrap_ddp(net, ctx.device, cfg.world_size)
        self.opt = torch.optim.Adam(
            net.parameters(),
            lr=cfg.seg_lr,
            betas=(cfg.seg_betas[0], cfg.seg_betas[1]),
            weight_decay=cfg.seg_weight_decay,
            **optimizer_options(cfg),
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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The method's unlabeled term of one batch (global positions ``gb``, this rank's ``local``) in
        ``epoch`` (the log-barrier's t grows with it and λ may ramp up: ``suite.constraints``).

        Returns (the loss to add, weighted and scaled for DDP; the log's sums: the unweighted term, the count
        of slices inside their bounds (0 for proposals), then the ``DYNAMICS`` sums of the penalty methods).
        The one home of the unlabeled term: both update schemes call it."""
        cfg, sd, dev, world = self.cfg, self.sd, self.ctx.device, self.cfg.world_size
        if cfg.method == "fs":  # with an ssl term: FS itself adds nothing on the unlabeled slices
            return logits.new_zeros(()), torch.zeros(2 + len(DYNAMICS), dtype=torch.float64, device=dev)
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
            log = torch.zeros(2 + len(DYNAMICS), dtype=torch.float64, device=dev)
            log[0] = term.detach().double() / world
            return term, log
        assert sd.unl_targets is not None  # load_seg_data made them for the penalty methods
        targets = sd.unl_targets.index_select(0, pos)
        term, inside = unlabeled_loss(cfg, logits, targets, epoch)
        # the penalty is a sum over the batch: DDP averages gradients, so scale by the world size
        lam = lam_at(cfg, epoch)
        loss = lam * term * world if world > 1 else lam * term
        dyn = size_dynamics(cfg, logits, targets)
        return loss, torch.cat([torch.stack([term.detach().double(), inside.sum().double()]), dyn])

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
        # CE, unlabeled term, inside, the DYNAMICS sums, unlabeled items
        acc = torch.zeros(4 + len(DYNAMICS), dtype=torch.float64, device=dev)
        items = acc.new_tensor([0.0] * (3 + len(DYNAMICS)) + [1.0])  # adds one unlabeled item per slice
        lr = self.rule.lr
        n_lab_batches = n_unl_batches = 0
        unlabeled = has_unlabeled_pass(cfg, len(sd.unl_idx), epoch)
        unl_batches = unlabeled_batches(cfg, len(sd.unl_idx), epoch, ctx.rank, world) if unlabeled else []

        def lab_pass(p: int) -> list[tuple[np.ndarray, np.ndarray]]:
            return labeled_batches(cfg, len(sd.lab_idx), epoch, ctx.rank, world, p)

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
                loss, log = self._unlabeled_term(logits[len(idx) :], gb, local, epoch)
                self._step(self._with_ssl(ce + loss, logits, StepBatch(both, len(idx), gb, local), epoch))
                acc[0] += ce.detach().double()
                acc[1:-1] += log
                acc += items * len(local)
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
                loss, log = self._unlabeled_term(logits, gb, local, epoch)
                self._step(self._with_ssl(loss, logits, StepBatch(idx, 0, gb, local), epoch))
                acc[1:-1] += log
                acc += items * len(local)
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
            n_unl = float(stats[-1])
            pen = float(stats[1]) / max(n_unl, 1.0)
            out["loss_penalty"] = pen
            out["loss_total"] = mean_ce + lam_at(cfg, epoch) * pen
            if cfg.lam_rampup:
                out["lam"] = lam_at(cfg, epoch)
            if n_unl > 0:  # not in warm-up epochs: no unlabeled slice was seen
                out["in_bounds"] = float(stats[2]) / n_unl
                out.update(dynamics_metrics(stats[3:-1].tolist(), n_unl))
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
        """Write ``predictions/val_examples.npz`` (last-epoch model; rank 0)."""
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
