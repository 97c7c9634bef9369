#!/usr/bin/env python
"""Where a batch-1 training step of the authors' ENet goes on one CPU thread, before and after the epoch's
speed-ups: forward, backward and optimiser update timed apart, per variant.

Variants (the authors' ENet with their init and 4-channel head, ``--size``×``--size``, batch ``--batch``,
deterministic mode on as ``suite.stages.base.configure_torch`` sets it):

- ``before``: torch's CPU default Adam (a loop over the 459 parameter tensors) and deterministic mode's NaN
  fill of every new tensor, what the suite ran until the speed-ups;
- ``foreach``: the multi-tensor Adam (bit for bit the loop), NaN fill kept;
- ``now``: the multi-tensor Adam and no fill (``optim_impl: foreach``, the default: the same numbers);
- ``fused``: one fused Adam kernel, no fill (``optim_impl: fused``: other rounding, another run id).

Timing protocol: ``scripts/bench_steps.py`` (seeded inputs and weights, round-robin blocks, medians).
``--profile`` adds the top operators of the ``now`` step by self CPU time (torch.profiler).

Usage::

    python scripts/bench_step_parts.py --threads 1 --size 64            # the repro preset's step
    python scripts/bench_step_parts.py --threads 1 --size 64 --profile
    python scripts/bench_step_parts.py --steps 3 --warmup 1 --size 32   # a quick check that it runs
"""

from __future__ import annotations

import argparse
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
from suite.losses import partial_ce
from suite.models import channel_target

# (Adam keyword, NaN fill) per variant
VARIANTS = {
    "before": ({"foreach": False}, True),
    "foreach": ({"foreach": True}, True),
    "now": ({"foreach": True}, False),
    "fused": ({"fused": True}, False),
}


class PartsStep(SegmenterStep):
    """One labeled step, its forward, backward and update timed apart (``parts``: lists of seconds)."""

    def __init__(self, cfg: RunConfig, batch: int, seed: int, adam: dict[str, bool], fill: bool) -> None:
        super().__init__(cfg, batch, seed)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.seg_lr, betas=tuple(cfg.seg_betas), **adam)
        self.fill = fill
        s = cfg.image_size
        self.target = channel_target(cfg, torch.randint(0, 4, (batch, s, s), generator=self.generator))
        self.parts: dict[str, list[float]] = {"forward": [], "backward": [], "update": []}

    def __call__(self, record: bool) -> None:
        torch.utils.deterministic.fill_uninitialized_memory = self.fill  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        loss = partial_ce(self.net(self.x), self.target)
        t1 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        self.opt.step()
        t3 = time.perf_counter()
        if record:
            self.times.append(t3 - t0)
            for k, v in zip(self.parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                self.parts[k].append(v)


def profile_table(step: PartsStep, n: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(n):
            step(record=False)
    return str(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64, help="input size (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=1, help="batch (default: %(default)s)")
    ap.add_argument("--profile", action="store_true", help="also print the top operators of the 'now' step")
    add_timing_args(ap)
    args = ap.parse_args(argv)
    torch.use_deterministic_algorithms(True, warn_only=True)
    cfg = RunConfig.from_preset("code", image_size=args.size, reg_arch="resnext", threads=args.threads)
    steps = {
        name: PartsStep(cfg, args.batch, args.seed, adam, fill) for name, (adam, fill) in VARIANTS.items()
    }
    print(
        f"# authors' ENet, {args.size}x{args.size}, batch {args.batch}, {args.threads} thread(s), "
        f"{args.steps} steps per variant, torch {torch.__version__}, load {load()} at start"
    )
    time_interleaved(steps, args)
    base = statistics.median(steps["before"].times)
    print(f"{'variant':<10} {'step ms':>8} {'forward':>8} {'backward':>9} {'update':>7} {'speed-up':>9}")
    for name, st in steps.items():
        med = {k: statistics.median(v) * 1e3 for k, v in st.parts.items()}
        step = statistics.median(st.times)
        print(
            f"{name:<10} {step * 1e3:8.1f} {med['forward']:8.1f} {med['backward']:9.1f} {med['update']:7.1f}"
            f" {base / step:8.2f}x"
        )
    print(f"# load {load()} at the end")
    if args.profile:
        print(profile_table(steps["now"], args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
