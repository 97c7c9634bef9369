"""The semi-supervised term of a segmenter run (``cfg.ssl``): what it adds to each step of network 1 (the
segmenter the run evaluates), the networks it keeps beside it and their checkpoint state.

=================  ===========================================================================================
``ssl``            what it adds, on which images of a step (the math: :mod:`suite.ssl`)
=================  ===========================================================================================
``mean_teacher``   w · MSE between the student's softmax and an EMA teacher's softmax on the *unlabeled*
                   images, the teacher fed them with Gaussian noise; the teacher is averaged after every
                   optimiser step of the student (labeled steps included)
``entropy_min``    w · the normalised softmax entropy of *every* image of the step (labeled and unlabeled)
``cps``            w · CE against network 2's arg-max on the *unlabeled* images; network 2 (same architecture,
                   another initialisation, its own Adam) takes a step on the same images at the same time: the
                   method's labeled and unlabeled terms plus w · CE against network 1's arg-max
=================  ===========================================================================================

Step order: the run's ``update`` scheme. ``alternating``: the term joins the labeled CE steps where it reads
labeled images (entropy; network 2's CE) and the unlabeled steps otherwise; ``joint``: one step on CE + the
method's term + the SSL term of the same (labeled, unlabeled) pair. ``penalty_warmup`` epochs train as FS:
no term; the teacher still follows the student and network 2 still learns from the labeled images, so both
are ready when the term starts. w = ``ssl_weight`` · ramp-up at the epoch (:func:`SslTerms.weight`).

Seeds: network 2 starts from ``derive_seed(seed, "segmenter", "init", "cps")`` (network 1 from ``(seed,
"segmenter", "init")``); the noise of epoch e from ``derive_seed(seed, "segmenter", "ssl-noise", e)``, drawn
for the global batch and sharded, so an image gets the same noise whatever the world size. Every other draw
(dropout of the teacher and of network 2) comes from the epoch's reseeded global RNG, like network 1's, so
after their first forward pass network 1's dropout masks differ from a run without the term. Neither
network's initialisation touches the global RNG state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from suite.models import build_segmenter, prepare_model
from suite.ramps import sigmoid_rampup
from suite.seeding import derive_seed
from suite.ssl import (
    consistency_mse,
    cross_pseudo_supervision,
    ema_update,
    entropy,
    input_noise,
)
from suite.stages import process_group as pg
from suite.stages.base import RunContext, autocast
from suite.stages.lr_rules import set_lr


@dataclass(frozen=True)
class StepBatch:
    """The images of one optimiser step of network 1: prepared-slice indices ``idx``, the first ``n_lab`` of
    them labeled, the rest unlabeled at global positions ``gb`` (this rank's: ``local``) of the epoch's
    unlabeled order (``None`` in a labeled step)."""

    idx: np.ndarray
    n_lab: int
    gb: np.ndarray | None = None
    local: np.ndarray | None = None

    @property
    def has_unlabeled(self) -> bool:
        return self.gb is not None and len(self.idx) > self.n_lab


@dataclass(frozen=True)
class MethodTerms:
    """What the segmenter stage computes for a network's logits, so that network 2 is trained on the run's
    own objective: the network input of slices, the labeled loss, the method's unlabeled term (weighted)."""

    inputs: Callable[[np.ndarray], Tensor]
    labeled: Callable[[Tensor, np.ndarray], Tensor]
    unlabeled: Callable[[Tensor, np.ndarray, np.ndarray, int], Tensor]


class SslTerms:
    """The ``cfg.ssl`` term of one run beside network 1 ``net`` and its optimiser ``opt`` (see the module
    docstring); :meth:`term` on every step, :meth:`after_step` after each of network 1's optimiser steps."""

    def __init__(
        self, ctx: RunContext, net: nn.Module, opt: torch.optim.Optimizer, terms: MethodTerms
    ) -> None:
        self.ctx, self.cfg, self.kind = ctx, ctx.cfg, ctx.cfg.ssl
        self.student, self.opt, self.terms = net, opt, terms
        self.steps = 0  # network 1's optimiser steps so far (the teacher's average weights them)
        # the epoch's unweighted term, summed, and its steps (on the device: no host sync per step)
        self.acc = torch.zeros(2, dtype=torch.float64, device=ctx.device)
        self._noise: tuple[int, torch.Generator] | None = None
        self.teacher: nn.Module | None = None
        self.net2: nn.Module | None = None
        self.model2: nn.Module | None = None
        self.opt2: torch.optim.Optimizer | None = None
        if self.kind == "mean_teacher":
            # the teacher starts as the student (the first update copies it anyway); it never takes a step
            self.teacher = self._network(None)
            self.teacher.load_state_dict(pg.unwrap(net).state_dict())
            self.teacher.requires_grad_(False)
        elif self.kind == "cps":
            self.net2 = self._network(derive_seed(self.cfg.seed, "segmenter", "init", "cps"))
            self.model2 = pg.wrap_ddp(self.net2, ctx.device, self.cfg.world_size)
            # the stage's optimiser recipe (its class and settings), for network 2's parameters
            self.opt2 = type(opt)(self.net2.parameters(), **opt.defaults)

    def _network(self, seed: int | None) -> nn.Module:
        """A segmenter like network 1, built without disturbing the global RNG (seeded: ``seed``)."""
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            net = build_segmenter(self.cfg).to(self.ctx.device)
        return prepare_model(net, self.cfg).train()

    # -------------------------------------------------------------- weights, noise
    def weight(self, epoch: int) -> float:
        """w at ``epoch``: ``ssl_weight`` · exp(−5 (1 − e / L)²), L = ``ssl_rampup`` · ``seg_epochs``."""
        return self.cfg.ssl_weight * sigmoid_rampup(epoch, self.cfg.ssl_rampup * self.cfg.seg_epochs)

    def _teacher_noise(self, batch: StepBatch, epoch: int) -> Tensor:
        """This rank's rows of the noise drawn for the whole global unlabeled batch (epoch-seeded stream)."""
        assert batch.gb is not None
        dev = self.ctx.device
        if self._noise is None or self._noise[0] != epoch:
            gen = torch.Generator(device=dev).manual_seed(
                derive_seed(self.cfg.seed, "segmenter", "ssl-noise", epoch)
            )
            self._noise = (epoch, gen)
        s = self.cfg.image_size
        noise = input_noise((len(batch.gb), 1, s, s), self.cfg.ssl_noise, self._noise[1], dev)
        rows = pg.shard(np.arange(len(batch.gb)), self.ctx.rank, self.cfg.world_size)
        return noise[torch.as_tensor(rows, device=dev)]

    # -------------------------------------------------------------- one step
    def term(self, logits: Tensor, batch: StepBatch, epoch: int) -> Tensor | None:
        """The weighted term to add to network 1's loss on ``batch`` (``logits``: network 1's, in the order of
        ``batch.idx``), or None where it adds nothing; network 2 (cps) takes its step here."""
        active = epoch >= self.cfg.penalty_warmup
        w = self.weight(epoch)
        n = batch.n_lab
        value: Tensor | None = None
        if self.kind == "mean_teacher" and active and batch.has_unlabeled:
            assert self.teacher is not None
            x = self.terms.inputs(batch.idx[n:]) + self._teacher_noise(batch, epoch)
            with torch.no_grad(), autocast(self.cfg, self.ctx.device):
                teacher_logits = self.teacher(x)
            value = consistency_mse(logits[n:], teacher_logits)
        elif self.kind == "entropy_min" and active:
            value = entropy(logits)
        elif self.kind == "cps":
            value = self._cps_step(logits, batch, epoch, w, active)
        if value is None:
            return None
        self.acc += torch.stack([value.detach().double(), self.acc.new_ones(())])
        return w * value

    def _cps_step(
        self, logits: Tensor, batch: StepBatch, epoch: int, w: float, active: bool
    ) -> Tensor | None:
        """Network 2's step on the same images (its labeled loss, the method's term and w · CE against
        network 1's arg-max); network 1's cross term, unweighted (None in a labeled step)."""
        assert self.model2 is not None and self.opt2 is not None
        n = batch.n_lab
        with autocast(self.cfg, self.ctx.device):
            logits2 = self.model2(self.terms.inputs(batch.idx))
        parts = [self.terms.labeled(logits2[:n], batch.idx[:n])] if n else []
        cross = None
        if active and batch.has_unlabeled:
            assert batch.gb is not None and batch.local is not None
            parts.append(self.terms.unlabeled(logits2[n:], batch.gb, batch.local, epoch))
            parts.append(w * cross_pseudo_supervision(logits2[n:], logits[n:]))
            cross = cross_pseudo_supervision(logits[n:], logits2[n:])
        if parts:
            # the main optimiser's lr (the run's lr rule steers both networks, as SSL4MIS's schedule does)
            set_lr(self.opt2, self.opt.param_groups[0]["lr"])
            self.opt2.zero_grad(set_to_none=True)
            sum(parts[1:], parts[0]).backward()
            self.opt2.step()
        return cross

    def after_step(self) -> None:
        """After each optimiser step of network 1: the teacher's moving average (mean teacher)."""
        if self.teacher is not None:
            params = pg.unwrap(self.student).parameters()
            ema_update(self.teacher.parameters(), params, self.cfg.ssl_ema_decay, self.steps)
        self.steps += 1

    def epoch_metrics(self, epoch: int) -> dict[str, float]:
        """``loss_ssl`` (the unweighted term's mean over the epoch's steps and ranks that had one) and
        ``ssl_weight`` (w at ``epoch``); resets the epoch's sums."""
        stats = pg.all_reduce_sum(self.acc.cpu().clone())  # a copy: the sums restart below
        self.acc.zero_()
        return {"loss_ssl": float(stats[0]) / max(float(stats[1]), 1.0), "ssl_weight": self.weight(epoch)}

    # -------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"ssl": self.kind, "steps": self.steps}
        if self.teacher is not None:
            state["teacher"] = self.teacher.state_dict()
        if self.net2 is not None and self.opt2 is not None:
            state["net2"] = self.net2.state_dict()
            state["optimizer2"] = self.opt2.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
        if self.net2 is not None and self.opt2 is not None:
            self.net2.load_state_dict(state["net2"])
            self.opt2.load_state_dict(state["optimizer2"])


def make_ssl_terms(
    ctx: RunContext, net: nn.Module, opt: torch.optim.Optimizer, terms: MethodTerms
) -> SslTerms | None:
    """The run's semi-supervised term, or None for ``ssl: none`` (the segmenter's steps untouched)."""
    return None if ctx.cfg.ssl == "none" else SslTerms(ctx, net, opt, terms)
