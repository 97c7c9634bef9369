#!/usr/bin/env python
"""Time per full training epoch of each method at paper settings (256×256, the paper's ENet, 2 threads).

The epoch is what ``suite.stages`` runs: all labeled batches (CE) then all unlabeled batches (the method's
term), then validation of every segmenter-validation volume. The code timed is the stage code itself
(``SegmenterStage.train_epoch`` / ``validate``, ``RegressorStage.train_epoch``) on the prepared phantom.

On a shared 2-core CPU a full paper epoch takes many minutes, so by default a **fixed number of steps** is
timed and the epoch is **extrapolated** linearly from per-step (per-slice for validation) times and the
split's slice counts; the output says which figures are measured and which extrapolated. ``--full`` runs
whole epochs instead. Two slice counts are reported: this dataset's split at ``--labeled``, and the same
per-volume slice count scaled to ACDC's patient counts (n labeled, 75 − n unlabeled, 20 validation).

Timing details: ``proposed`` and ``oracle`` cost the same per step (penalty around cached sizes: the
regressor never runs during segmenter training), so ``proposed`` is timed with the exact sizes;
``proposals`` is timed with pseudo-labels made from the ground truth (same cost as the FS model's). Each
figure is the median over ``--repeats`` timings of ``--steps`` steps after one warm-up block. Wall seconds and
process CPU seconds (all threads) are both recorded: on a machine shared with other busy processes the CPU
seconds are the steadier figure (an idle 2-core machine gives a wall time between CPU/2 and CPU). ``uptime``
load is printed and stored.

Usage::

    python scripts/bench_epochs.py --data PREPARED256 --out bench_epochs.json
    python scripts/bench_epochs.py --data PREPARED256 --steps 5 --repeats 1 --methods fs proposed   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ")[0]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="prepared dataset (256×256 for paper settings)")
    ap.add_argument("--labeled", type=int, default=10, help="paper-scale n (default 10)")
    ap.add_argument("--methods", nargs="+", default=["fs", "proposed", "oracle", "proposals", "regressor"])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block (extrapolation mode)")
    ap.add_argument("--repeats", type=int, default=3, help="timed blocks per figure (median)")
    ap.add_argument("--reg-steps", type=int, default=2, help="regressor steps per timed block (batch 10)")
    ap.add_argument("--full", action="store_true", help="time whole epochs instead of extrapolating")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument(
        "--omp-wait-policy",
        default="passive",
        choices=["passive", "active"],
        help="OpenMP threads sleep (passive, default) or spin while waiting; set before torch loads",
    )
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", args.omp_wait_policy.upper())

    import numpy as np
    import torch

    from suite.config import RunConfig
    from suite.data.acdc import LV_LABEL
    from suite.paths import RunPaths
    from suite.stages.base import RunContext, configure_torch, open_data
    from suite.stages.checkpoint import seed_epoch
    from suite.stages.regressor import RegressorStage
    from suite.stages.segmenter import SegmenterStage
    from suite.stages.segmenter_data import load_seg_data

    results: dict[str, object] = {
        "data": str(args.data),
        "preset": args.preset,
        "labeled": args.labeled,
        "threads": args.threads,
        "mode": "full epochs" if args.full else f"extrapolated from {args.repeats}x{args.steps} timed steps",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "torch": torch.__version__,
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_start": _load(),
        "methods": {},
    }
    print(f"load average at start: {results['load_start']} ({os.cpu_count()} CPUs)", flush=True)

    def make_ctx(method: str, stage: str = "segmenter"):
        cfg = RunConfig.from_preset(
            args.preset,
            stage=stage,
            method="regressor" if stage == "regressor" else method,
            n_labeled=args.labeled,
            data=str(args.data),
            threads=args.threads,
            device="cpu",
        )
        if args.overrides:
            cfg = cfg.with_overrides(args.overrides)
        cfg, data = open_data(cfg)
        configure_torch(cfg, torch.device("cpu"))
        return RunContext(
            cfg=cfg,
            paths=RunPaths(Path("/nonexistent") / cfg.run_id),
            experiment_root=Path("/nonexistent"),
            data=data,
            device=torch.device("cpu"),
            rank=0,
            world=1,
        )

    def timed(fn) -> tuple[float, float]:
        """(wall s, process CPU s over all threads) of one call."""
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - t0, time.process_time() - c0

    def median(fn, n: int) -> tuple[float, float]:
        runs = [timed(fn) for _ in range(n)]
        return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)

    counts_acdc: dict[str, int] = {}

    def bench_segmenter(method: str) -> dict[str, object]:
        # proposed/proposals timed with an equivalent-cost stand-in (module docstring)
        ctx = make_ctx("oracle" if method == "proposed" else ("fs" if method == "proposals" else method))
        sd = load_seg_data(ctx)
        if method != ctx.cfg.method:
            ctx.cfg = ctx.cfg.replace(method=method)
        if method == "proposals":
            lab = sd.labels.index_select(0, torch.as_tensor(sd.unl_idx))
            sd.pseudo_target = (lab == LV_LABEL).to(torch.uint8)
            sd.pseudo_mask = lab == LV_LABEL
        n_lab, n_unl, n_val = len(sd.lab_idx), len(sd.unl_idx), len(sd.val_idx)
        used = np.concatenate([sd.lab_idx, sd.unl_idx, sd.val_idx])
        per_vol = len(used) / max(1, len(set(np.asarray(ctx.data.volume)[used].tolist())))
        counts_acdc.update(
            labeled=round(per_vol * 2 * args.labeled),
            unlabeled=round(per_vol * 2 * (75 - args.labeled)),
            val=round(per_vol * 2 * 20),
        )
        stage = SegmenterStage(ctx, seg_data=sd)
        cfg = ctx.cfg
        fs_like = cfg.method == "fs"
        entry: dict[str, object] = {
            "counts_dataset": {
                "labeled": n_lab,
                "unlabeled": n_unl,
                "val": n_val,
                "val_volumes": len(sd.volumes),
            }
        }
        seed_epoch(cfg, 0)
        if args.full:
            (t_train, c_train), (t_val, c_val) = (
                timed(lambda: stage.train_epoch(0)),
                timed(lambda: stage.validate(0)),
            )
            entry.update(
                measured_epoch_s=t_train + t_val, train_s=t_train, val_s=t_val, cpu_s=c_train + c_val
            )
            return entry
        k = args.steps
        # one block = k labeled steps, then k unlabeled steps (none for fs)
        sd.lab_idx = sd.lab_idx[: k * cfg.seg_batch]
        sel = np.arange(min(n_unl, k * cfg.unl_batch))
        sd.unl_idx = sd.unl_idx[sel]
        if sd.unl_targets is not None:
            sd.unl_targets = sd.unl_targets[torch.as_tensor(sel)]
        if sd.pseudo_target is not None:
            sd.pseudo_target, sd.pseudo_mask = sd.pseudo_target[sel], sd.pseudo_mask[sel]
        stage.train_epoch(0)  # warm-up
        blocks = median(lambda: stage.train_epoch(0), args.repeats)
        lab_only = blocks
        if not fs_like:  # a labeled-only block splits the time between labeled and unlabeled steps
            saved = sd.unl_idx
            sd.unl_idx = saved[:0]
            lab_only = median(lambda: stage.train_epoch(0), args.repeats)
            sd.unl_idx = saved
        n_lab_steps = -(-len(sd.lab_idx) // cfg.seg_batch)
        n_unl_steps = -(-len(sel) // cfg.unl_batch)
        t_lab, c_lab = lab_only[0] / n_lab_steps, lab_only[1] / n_lab_steps
        t_unl = 0.0 if fs_like else max(blocks[0] - lab_only[0], 0.0) / n_unl_steps
        c_unl = 0.0 if fs_like else max(blocks[1] - lab_only[1], 0.0) / n_unl_steps
        sd.volumes = sd.volumes[:2]
        nv_slices = sum(len(i) for _, i in sd.volumes)
        stage.validate(0)
        t_val, c_val = median(lambda: stage.validate(0), args.repeats)
        t_val_slice, c_val_slice = t_val / nv_slices, c_val / nv_slices

        def epoch_s(c: dict[str, int], lab: float, unl: float, val: float) -> float:
            lab_steps = -(-c["labeled"] // cfg.seg_batch)
            unl_steps = 0 if fs_like else -(-c["unlabeled"] // cfg.unl_batch)
            return lab_steps * lab + unl_steps * unl + c["val"] * val

        ds = {"labeled": n_lab, "unlabeled": n_unl, "val": n_val}
        entry.update(
            labeled_step_s=t_lab,
            unlabeled_step_s=t_unl,
            val_slice_s=t_val_slice,
            labeled_step_cpu_s=c_lab,
            unlabeled_step_cpu_s=c_unl,
            val_slice_cpu_s=c_val_slice,
            epoch_s_dataset=epoch_s(ds, t_lab, t_unl, t_val_slice),
            epoch_s_acdc=epoch_s(counts_acdc, t_lab, t_unl, t_val_slice),
            epoch_cpu_s_dataset=epoch_s(ds, c_lab, c_unl, c_val_slice),
            epoch_cpu_s_acdc=epoch_s(counts_acdc, c_lab, c_unl, c_val_slice),
            counts_acdc=dict(counts_acdc),
        )
        return entry

    for method in args.methods:
        if method == "regressor":
            continue
        entry = bench_segmenter(method)
        entry["load_after"] = _load()
        results["methods"][method] = entry
        print(method, json.dumps(entry), flush=True)

    if "regressor" in args.methods:
        ctx = make_ctx("regressor", stage="regressor")
        st = RegressorStage(ctx)
        cfg = ctx.cfg
        n_aug = len(st.aug)
        steps_epoch = -(-n_aug // cfg.reg_batch)
        if args.full:
            t, c = timed(lambda: st.train_epoch(0))
            entry = {"measured_epoch_s": t, "cpu_s": c, "steps": steps_epoch}
        else:
            # time an epoch over the first slices only (reg_steps batches), then scale per step
            n_keep = args.reg_steps * cfg.reg_batch
            orig_images, orig_labels = st.aug.images, st.aug.labels
            keep_slices = -(-n_keep // cfg.reg_aug_copies)
            st.aug.images, st.aug.labels = orig_images[:keep_slices], orig_labels[:keep_slices]
            st.aug.params = type(st.aug.params)(
                st.aug.params.flip[:keep_slices],
                st.aug.params.mirror[:keep_slices],
                st.aug.params.angle[:keep_slices],
            )
            st.train_epoch(0)  # warm-up
            n_steps = -(-len(st.aug) // cfg.reg_batch)
            t_blk, c_blk = median(lambda: st.train_epoch(0), args.repeats)
            t_step, c_step = t_blk / n_steps, c_blk / n_steps
            acdc_steps = (
                -(-counts_acdc.get("labeled", 0) * cfg.reg_aug_copies // cfg.reg_batch)
                if counts_acdc
                else None
            )
            entry = {
                "step_s": t_step,
                "step_cpu_s": c_step,
                "steps_dataset": steps_epoch,
                "epoch_s_dataset": t_step * steps_epoch,
                "epoch_cpu_s_dataset": c_step * steps_epoch,
                "augmented_slices_dataset": n_aug,
            }
            if acdc_steps:
                entry.update(
                    steps_acdc=acdc_steps,
                    epoch_s_acdc=t_step * acdc_steps,
                    epoch_cpu_s_acdc=c_step * acdc_steps,
                )
        entry["load_after"] = _load()
        results["methods"]["regressor"] = entry
        print("regressor", json.dumps(entry), flush=True)

    results["load_end"] = _load()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
