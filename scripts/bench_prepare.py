#!/usr/bin/env python3
"""Time the data layer: ``suite phantom`` + ``suite prepare`` of a 100-patient cohort, the no-op second
prepare, ``PreparedData.open``, ``resized(64)``, and the regressor augmentation (materialised vs per batch).

    python scripts/bench_prepare.py [--patients 100] [--size 256] [--workers 2] [--out DIR] [--json FILE]

Prints one Markdown table (wall and CPU seconds; the 1-minute load average before and after, because the
numbers depend on what else runs on the machine). CPU time includes the phantom's worker processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (user + system)."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def timed(rows: list, name: str, fn, note: str = ""):
    w0, c0 = time.perf_counter(), cpu_s()
    out = fn()
    rows.append(
        {
            "step": name,
            "wall_s": round(time.perf_counter() - w0, 3),
            "cpu_s": round(cpu_s() - c0, 3),
            "note": note,
        }
    )
    print(f"  {name}: {rows[-1]['wall_s']:.2f} s wall, {rows[-1]['cpu_s']:.2f} s CPU {note}", file=sys.stderr)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="work folder (default: a temporary folder, removed)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    ap.add_argument("--aug-labeled", type=int, default=40, help="paper-scale n for the augmentation timing")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads for the augmentation timing (default 1)"
    )
    args = ap.parse_args()

    import numpy as np

    from suite.data.augment import AugmentedSet, augment_labeled
    from suite.data.dataset import PreparedData
    from suite.data.phantom.cohort import write_cohort
    from suite.data.prepare import prepare

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    src, dst = work / "phantom", work / "prepared"
    for p in (src, dst):
        shutil.rmtree(p, ignore_errors=True)
    load0 = os.getloadavg()[0]
    rows: list[dict] = []
    timed(
        rows,
        f"phantom {args.patients} patients",
        lambda: write_cohort(src, args.patients, args.seed, workers=args.workers),
        f"({args.workers} processes)",
    )
    r = timed(rows, f"prepare {args.size}x{args.size}", lambda: prepare(src, dst, size=args.size))
    timed(rows, "prepare again (no-op)", lambda: prepare(src, dst, size=args.size))
    d = timed(rows, "PreparedData.open", lambda: PreparedData.open(dst))
    timed(rows, "resized(64) (first call; cached after)", lambda: d.resized(64))
    import torch

    torch.set_num_threads(args.threads)
    idx = d.indices(d.split(args.aug_labeled).labeled)
    imgs, labs = np.asarray(d.images[idx]), np.asarray(d.labels[idx])
    aug = AugmentedSet(imgs, labs, copies=10, seed=0)
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(aug), 10, replace=False) for _ in range(20)]
    timed(
        rows,
        "augment on the fly: 20 batches of 10",
        lambda: [aug.batch(b) for b in batches],
        f"(n={args.aug_labeled}: {len(idx)} slices x10; torch threads {args.threads})",
    )
    sub = slice(0, min(len(imgs), 100))
    timed(
        rows,
        "augment materialised: 100 slices x10",
        lambda: augment_labeled(imgs[sub], labs[sub], 10, 0),
        f"(all {len(idx)} slices: {len(idx) * 10 * args.size**2 / 2**20:.0f} MiB)",
    )
    load1 = os.getloadavg()[0]
    total = rows[0]["wall_s"] + rows[1]["wall_s"]
    print(
        f"\n{args.patients} patients -> {r.n_slices} slices at {args.size}x{args.size}; "
        f"phantom + prepare {total:.1f} s wall; load average (1 min) {load0:.1f} before, {load1:.1f} after; "
        f"{os.cpu_count()} CPUs\n"
    )
    print("| step | wall (s) | CPU (s) | note |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['step']} | {row['wall_s']:.2f} | {row['cpu_s']:.2f} | {row['note']} |")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "rows": rows,
                    "load_before": load0,
                    "load_after": load1,
                    "n_slices": r.n_slices,
                    "cpus": os.cpu_count(),
                },
                indent=2,
            )
        )
    if not args.out:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
