#!/usr/bin/env python
"""CPU step time of each constraint and scheme (``suite.constraints``): what the constraint family costs.

For each constrained-classes × attributes × scheme (LV or RV+Myo+LV; size or size+centroid; penalty or
log-barrier) two figures: the whole unlabeled training step (forward, the constraint term, backward, an Adam
update) and the constraint term alone (softmax, the term and its backward to the logits, on fixed logits).
The network is the ``smoke`` preset's (ENet width 0.25) with the 4-channel head that ``constrained=all``
needs, batch ``--batch`` (the smoke preset's unlabeled batch 16), ``--size``×``--size``, targets from a
phantom-like label map (the Oracle's). Variants are timed interleaved (round-robin blocks of ``--block``
steps, so that a change of machine load hits all alike); each figure is the median of ``--steps`` steps after
``--warmup``. ``OMP_WAIT_POLICY`` is passive (set before torch loads), as in ``scripts/bench_cpu.py``.

Usage::

    python scripts/bench_constraints.py                       # the BENCHMARKS figure (64×64, batch 16)
    python scripts/bench_constraints.py --size 256 --batch 4  # the paper's resolution
    python scripts/bench_constraints.py --steps 3 --warmup 1  # a quick check that it runs
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from bench_steps import SegmenterStep, add_timing_args, load, time_interleaved

from suite.config import RunConfig
from suite.constraints import label_targets, unlabeled_loss

PAPER = ("lv", "size", "penalty")


def make_variants(size: int) -> dict[tuple[str, str, str], RunConfig]:
    base = dict(image_size=size, threads=1, device="cpu", method="oracle")
    base.update(classes="multi", seg_out_channels=4)  # the head constrained=all needs, in every row
    return {
        (k, c, s): RunConfig.from_preset("smoke", **base, constrained=k, constraint=c, scheme=s)
        for k, c, s in itertools.product(("lv", "all"), ("size", "size+centroid"), ("penalty", "logbarrier"))
    }


def label_maps(batch: int, size: int, seed: int) -> torch.Tensor:
    """Concentric RV / myocardium / LV discs at random positions (every class present)."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.arange(size, dtype=torch.float32) + 0.5
    out = torch.zeros(batch, size, size, dtype=torch.uint8)
    for b in range(batch):
        cy, cx = (0.3 + 0.4 * torch.rand(2, generator=g)) * size
        r = (ys[:, None] - cy) ** 2 + (ys[None, :] - cx) ** 2
        out[b][r <= (0.25 * size) ** 2] = 1
        out[b][r <= (0.16 * size) ** 2] = 2
        out[b][r <= (0.11 * size) ** 2] = 3
    return out


class Step(SegmenterStep):
    """One unlabeled step of a variant (``times``: whole step) and its constraint term alone (``term``)."""

    def __init__(self, cfg: RunConfig, batch: int, seed: int) -> None:
        super().__init__(cfg, batch, seed)
        s = cfg.image_size
        self.targets = label_targets(cfg, label_maps(batch, s, seed))
        self.logits = torch.randn(batch, 4, s, s, generator=self.generator)
        self.term: list[float] = []

    def __call__(self, record: bool) -> None:
        t0 = time.perf_counter()
        loss, _ = unlabeled_loss(self.cfg, self.net(self.x), self.targets, epoch=3)
        self.opt.zero_grad(set_to_none=True)
        (self.cfg.lam * loss).backward()
        self.opt.step()
        t1 = time.perf_counter()
        logits = self.logits.clone().requires_grad_(True)
        term, _ = unlabeled_loss(self.cfg, logits, self.targets, epoch=3)
        term.backward()
        t2 = time.perf_counter()
        if record:
            self.times.append(t1 - t0)
            self.term.append(t2 - t1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    add_timing_args(ap)
    args = ap.parse_args(argv)
    steps = {key: Step(cfg, args.batch, args.seed) for key, cfg in make_variants(args.size).items()}
    time_interleaved(steps, args)
    ref = statistics.median(steps[PAPER].times)
    print(
        f"unlabeled step, smoke ENet (4 ch), batch {args.batch}, {args.size}x{args.size}, {args.threads} "
        f"thread(s), median of {args.steps} (interleaved), load {load()}"
    )
    print(f"| {'classes':<7} | {'constraint':<13} | {'scheme':<10} | step ms | vs paper | term ms |")
    print(f"|{'-' * 9}|{'-' * 15}|{'-' * 12}|{'-' * 9}|{'-' * 10}|{'-' * 9}|")
    for (k, c, s), step in steps.items():
        whole, term = statistics.median(step.times), statistics.median(step.term)
        row = f"| {k:<7} | {c:<13} | {s:<10} | {whole * 1e3:>7.1f} | {whole / ref:>7.2f}x |"
        print(f"{row} {term * 1e3:>7.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
