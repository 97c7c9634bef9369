#!/usr/bin/env python
"""CPU step time of the segmenters: the original ENet (``seg_arch=enet``, at given widths) vs the authors'
variant (``seg_arch=enet-authors``, 4-channel head, their init).

One step = forward, partial cross-entropy, backward and an Adam update (the labeled step of every method),
batch ``--batch``, ``--size``×``--size`` inputs, ``torch.set_num_threads(--threads)``. The variants are timed
*interleaved* (round-robin blocks of ``--block`` steps, so that a change of machine load hits all alike); each
figure is the median of ``--steps`` steps after ``--warmup``. ``OMP_WAIT_POLICY`` is passive (set before torch
loads) as in ``scripts/bench_cpu.py``: spinning OpenMP threads make a shared-core step many times slower.

Usage::

    python scripts/bench_arch.py                                  # batch 1, 256×256 (the BENCHMARKS figure)
    python scripts/bench_arch.py --size 64 --widths 1.0 0.25      # the smoke and fidelity presets' size
    python scripts/bench_arch.py --steps 3 --warmup 1 --size 64   # a quick check that it runs
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
from suite.models import channel_target, count_parameters


def make_variants(widths: list[float], size: int) -> dict[str, RunConfig]:
    base = dict(image_size=size, threads=1, device="cpu")
    out = {
        f"enet w{w:g} (2 ch)": RunConfig.from_preset(
            "paper", **base, seg_arch="enet", seg_width=w, seg_out_channels=2
        )
        for w in widths
    }
    out["enet-authors (4 ch)"] = RunConfig.from_preset(
        "paper", **base, seg_arch="enet-authors", seg_width=1.0, seg_out_channels=4
    )
    return out


class Step(SegmenterStep):
    """One labeled training step of one variant, on fixed random inputs."""

    def __init__(self, cfg: RunConfig, batch: int, seed: int) -> None:
        super().__init__(cfg, batch, seed)
        s = cfg.image_size
        self.target = channel_target(cfg, torch.randint(0, 4, (batch, s, s), generator=self.generator))

    def __call__(self, record: bool) -> None:
        t0 = time.perf_counter()
        loss = partial_ce(self.net(self.x), self.target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if record:
            self.times.append(time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--widths", type=float, nargs="+", default=[1.0], help="widths of the original ENet")
    add_timing_args(ap)
    args = ap.parse_args(argv)
    steps = {
        name: Step(cfg, args.batch, args.seed) for name, cfg in make_variants(args.widths, args.size).items()
    }
    time_interleaved(steps, args)
    ref = statistics.median(steps["enet-authors (4 ch)"].times)
    print(
        f"segmenter training step, batch {args.batch}, {args.size}x{args.size}, {args.threads} thread(s), "
        f"median of {args.steps} (interleaved), load {load()}"
    )
    print(
        f"| {'variant':<22} | {'parameters':>10} | {'median ms':>9} | {'IQR ms':>13} | {'vs authors':>10} |"
    )
    print(f"|{'-' * 24}|{'-' * 12}|{'-' * 11}|{'-' * 15}|{'-' * 12}|")
    for name, step in steps.items():
        t = sorted(step.times)
        med = statistics.median(t)
        q1, q3 = t[len(t) // 4], t[(3 * len(t)) // 4]
        print(
            f"| {name:<22} | {count_parameters(step.net):>10,} | {med * 1e3:>9.1f} | "
            f"{q1 * 1e3:>5.1f} – {q3 * 1e3:>5.1f} | {med / ref:>9.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
