"""The interleaved step-timing protocol the segmenter step benchmarks share (``bench_arch.py``,
``bench_constraints.py``, ``bench_ssl.py``).

Each variant is one :class:`SegmenterStep`: the config's segmenter in train mode, Adam with the config's lr
and betas, a fixed random input batch, all from one seed. :func:`time_interleaved` warms every variant up,
then times them in round-robin blocks of ``--block`` steps, so that a change of machine load hits all alike;
the figures are medians. The scripts set ``OMP_WAIT_POLICY=PASSIVE`` before importing it or torch
(spinning OpenMP threads make a shared-core step many times slower, as ``scripts/bench_cpu.py`` measured)
and put the repository root on ``sys.path``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

import torch

from suite.config import RunConfig
from suite.models import build_segmenter


class SegmenterStep:
    """One variant: ``net`` (train mode), ``opt`` and the input batch ``x`` (``batch``×1×S×S), seeded.

    Subclasses define ``__call__(record)``: one step, its times appended to ``times`` when ``record``."""

    def __init__(self, cfg: RunConfig, batch: int, seed: int) -> None:
        torch.manual_seed(seed)
        self.cfg = cfg
        self.net = build_segmenter(cfg).train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.seg_lr, betas=tuple(cfg.seg_betas))
        self.generator = torch.Generator().manual_seed(seed)
        s = cfg.image_size
        self.x = torch.rand(batch, 1, s, s, generator=self.generator)
        self.times: list[float] = []

    def __call__(self, record: bool) -> None:
        raise NotImplementedError


def add_timing_args(ap: argparse.ArgumentParser) -> None:
    """``--steps --warmup --block --threads --seed``, with the defaults every step benchmark uses."""
    ap.add_argument("--steps", type=int, default=30, help="timed steps per variant (default 30)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first (default 3)")
    ap.add_argument("--block", type=int, default=3, help="steps per variant per round (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="inputs and initial weights (default 0)")


def time_interleaved(steps: Mapping[object, SegmenterStep], args: argparse.Namespace) -> None:
    """Warm every step up, then run them round-robin until each has recorded ``args.steps`` times."""
    torch.set_num_threads(args.threads)
    for step in steps.values():
        for _ in range(args.warmup):
            step(record=False)
    while any(len(s.times) < args.steps for s in steps.values()):
        for step in steps.values():
            for _ in range(min(args.block, args.steps - len(step.times))):
                step(record=True)


def load() -> str:
    """The 1-minute load average, for the header line every figure is recorded with."""
    return f"{os.getloadavg()[0]:.2f}"
