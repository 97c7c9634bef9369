#!/usr/bin/env python
"""CPU step time of each semi-supervised term (``ssl``) over Proposed: what Mean Teacher, entropy minimisation
and cross pseudo supervision cost per unlabeled step.

Each variant is one unlabeled training step of the segmenter stage as ``update: alternating`` runs it:
network 1's forward, λ · the size penalty (the Oracle's targets from a phantom-like label map), the term
through the stage's own :class:`suite.stages.ssl_terms.SslTerms` (Mean Teacher: the teacher's forward on the
noisy batch and the consistency, then the teacher's average after the step; CPS: network 2's forward, its
loss, backward and Adam step), backward and Adam. The network is the ``smoke`` preset's (ENet width 0.25, 2
channels), batch ``--batches`` at ``--sizes`` (by default 16 at 64×64, the smoke preset's unlabeled batch,
and 4 at 256×256). Variants are timed interleaved with the protocol of ``bench_steps.py`` (round-robin
blocks of ``--block`` steps, so that a change of machine load hits all alike; medians of ``--steps`` after
``--warmup``).

Usage::

    python scripts/bench_ssl.py                          # the BENCHMARKS figures (64×64 and 256×256)
    python scripts/bench_ssl.py --steps 2 --warmup 1     # a quick check that it runs
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from bench_constraints import label_maps
from bench_steps import SegmenterStep, add_timing_args, load, time_interleaved

from suite.config import RunConfig
from suite.constraints import label_targets, unlabeled_loss
from suite.losses import partial_ce
from suite.stages.ssl_terms import MethodTerms, SslTerms, StepBatch

TERMS = ("none", "mean_teacher", "entropy_min", "cps")
EPOCH = 3  # the term's weight and the penalty do not change the step's work


class Step(SegmenterStep):
    """One unlabeled step of Proposed with the term ``cfg.ssl`` (none: the paper's step)."""

    def __init__(self, cfg: RunConfig, batch: int, seed: int) -> None:
        super().__init__(cfg, batch, seed)
        self.targets = label_targets(cfg, label_maps(batch, cfg.image_size, seed))
        self.labels = label_maps(batch, cfg.image_size, seed) == 3
        self.ssl: SslTerms | None = None
        if cfg.ssl != "none":
            terms = MethodTerms(
                inputs=lambda idx: self.x[torch.as_tensor(idx)],
                labeled=lambda logits, idx: partial_ce(logits, self.labels[torch.as_tensor(idx)].long()),
                unlabeled=lambda logits, gb, local, epoch: self.penalty(logits, epoch),
            )
            # what SslTerms reads of a run context: the config, the device, the rank
            ctx: Any = SimpleNamespace(cfg=cfg, device=torch.device("cpu"), rank=0, world=1)
            self.ssl = SslTerms(ctx, self.net, self.opt, terms)
        pos = np.arange(batch)
        self.batch = StepBatch(pos, 0, pos, pos)

    def penalty(self, logits: torch.Tensor, epoch: int) -> torch.Tensor:
        return self.cfg.lam * unlabeled_loss(self.cfg, logits, self.targets, epoch)[0]

    def __call__(self, record: bool) -> None:
        t0 = time.perf_counter()
        logits = self.net(self.x)
        loss = self.penalty(logits, EPOCH)
        extra = None if self.ssl is None else self.ssl.term(logits, self.batch, EPOCH)
        loss = loss if extra is None else loss + extra
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.ssl is not None:
            self.ssl.after_step()
        if record:
            self.times.append(time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="image sizes (default 64 256)")
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 4], help="batch per size (default 16 4)")
    add_timing_args(ap)
    args = ap.parse_args(argv)
    if len(args.batches) != len(args.sizes):
        ap.error(f"--batches needs one batch per size ({len(args.sizes)}), got {len(args.batches)}")
    print(
        f"unlabeled step of Proposed + each ssl term, smoke ENet (2 ch), {args.threads} thread(s), median of "
        f"{args.steps} (interleaved), load {load()}"
    )
    print("| size | batch | ssl | step ms | vs Proposed |")
    print("|---|---|---|---|---|")
    for size, batch in zip(args.sizes, args.batches, strict=True):
        base = dict(image_size=size, threads=args.threads, device="cpu", method="oracle")
        steps = {t: Step(RunConfig.from_preset("smoke", **base, ssl=t), batch, args.seed) for t in TERMS}
        time_interleaved(steps, args)
        ref = statistics.median(steps["none"].times)
        for t, step in steps.items():
            ms = statistics.median(step.times)
            print(f"| {size} | {batch} | {t} | {ms * 1e3:.1f} | {ms / ref:.2f}x |")
    print(f"load after: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
