"""What ``suite run`` is about to train, logged before any work: the runs in order (prerequisites first, as
:func:`suite.planner.build_plan` orders them), each with stage, method, epochs, image size, steps per epoch,
device and a rough time estimate; and a warning when paper-scale work is started on a CPU.

The estimate is a cost model, not a measurement of this machine: per-image seconds of a training step and of a
validation forward at 256x256 with 2 threads on an uncontended 2-core CPU (the figures in BENCHMARKS.md:
ENet step 0.5 CPU s = 0.25 s wall, validation slice 0.06 s; ResNeXt-101 32x4d batch-10 step 23.6 CPU s =
1.2 s wall per image, forward 0.3 s), scaled by pixels, network width and depth and threads, plus a fixed
per-step overhead fitted to the 64x64 figures of ``scripts/bench_arch.py`` (24 ms for ENet at width 0.25 and
34 ms at width 1.0, batch 1, where the overhead dominates). Expect a factor of 2 either way; none on a GPU.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("suite.run_plan")

STEP_OVERHEAD_S = 0.02  # per optimiser step, whatever the network (64x64 fit above)
# wall seconds per image at 256x256, 2 threads: (training step, validation forward)
ENET_S = (0.25, 0.06)
ENET_AUTHORS_FACTOR = 1.4  # the authors' ENet variant per step, against ENet (bench_arch, 64x64, batch 1)
RESNEXT101_S = (1.2, 0.3)  # ResNeXt-101 32x4d: 33 blocks, 32 groups x 4
MEASURED_THREADS = 2

# paper scale: the paper's regressor depth, or the paper's resolution for the paper's number of epochs
PAPER_DEPTH = 101
PAPER_SIZE, PAPER_EPOCHS = 256, 100
LONG_ON_CPU_S = 3600.0  # also warn when the estimate passes an hour


@dataclass(frozen=True)
class PlannedRun:
    cfg: Any  # RunConfig
    status: str  # finished | failed | partial | absent (RunPaths.status)
    steps: int  # optimiser steps per epoch
    epoch_s: float | None  # estimated seconds per epoch (None: no estimate for this device)

    @property
    def todo(self) -> bool:
        return self.status != "finished"

    @property
    def total_s(self) -> float | None:
        return None if self.epoch_s is None else self.epoch_s * self.cfg.epochs


def regressor_depth(cfg: Any) -> int:
    """ResNeXt depth: 3 layers per bottleneck block, plus the stem and the head (3, 4, 23, 3 -> 101)."""
    return 3 * sum(cfg.reg_layers) + 2


def _work(cfg: Any, data: Any) -> tuple[int, float, int, float]:
    """(steps per epoch, images per step, validation images, network cost factor against the reference)."""
    split = data.split(cfg.n_labeled, cfg.split_mode, cfg.split_seed)
    labeled = len(data.indices(split.labeled))
    if cfg.stage == "regressor":
        samples = labeled * cfg.reg_aug_copies
        steps = math.ceil(samples / cfg.reg_batch)
        factor = (sum(cfg.reg_layers) / 33) * (cfg.reg_groups * cfg.reg_width_per_group / 128)
        return steps, samples / max(steps, 1), len(data.indices(split.val_reg)), factor
    steps, samples = math.ceil(labeled / cfg.seg_batch), labeled
    if cfg.method != "fs" or cfg.ssl != "none":  # an ssl term makes FS pass over the unlabeled images too
        unlabeled = len(data.indices(split.unlabeled))
        steps += math.ceil(unlabeled / cfg.unl_batch)
        samples += unlabeled
    factor = cfg.seg_width * (ENET_AUTHORS_FACTOR if cfg.seg_arch == "enet-authors" else 1.0)
    if cfg.ssl == "cps":  # two networks take every step
        factor *= 2
    return steps, samples / max(steps, 1), len(data.indices(split.val_seg)), factor


def estimate_epoch_s(cfg: Any, data: Any, device: str) -> tuple[int, float | None]:
    """(optimiser steps per epoch, estimated wall seconds per epoch on ``device``; None on a GPU)."""
    steps, per_step, val_images, factor = _work(cfg, data)
    if device != "cpu":
        return steps, None
    train_s, val_s = RESNEXT101_S if cfg.stage == "regressor" else ENET_S
    scale = factor * (cfg.image_size / 256) ** 2 * MEASURED_THREADS / max(1, cfg.threads)
    epoch = steps * (STEP_OVERHEAD_S + per_step * train_s * scale) + val_images * val_s * scale
    return steps, epoch


def plan(cfg: Any, experiment: Any, data: Any, device: str) -> list[PlannedRun]:
    """The runs ``execute(cfg)`` trains, prerequisites first, with their status in ``experiment``."""
    from suite.planner import build_plan

    runs = []
    for c in build_plan([cfg]).runs.values():
        steps, epoch_s = estimate_epoch_s(c, data, device)
        runs.append(PlannedRun(c, experiment.run(c.run_id).status(), steps, epoch_s))
    return runs


def duration(seconds: float) -> str:
    """A rough duration: 40 s, 12 min, 3.5 h, 9 days."""
    if seconds < 1:
        return "<1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _about(seconds: float) -> str:
    text = duration(seconds)
    return text if text.startswith("<") else f"~{text}"


_STATUS = {
    "finished": "finished: skipped",
    "partial": "partial: resumes from its last checkpoint",
    "failed": "failed before: trained again",
    "absent": "to train",
}


def plan_lines(runs: list[PlannedRun], device: str) -> list[str]:
    total = sum(r.total_s or 0.0 for r in runs if r.todo)
    head = f"plan: {len(runs)} run(s) on {device}"
    if not any(r.todo for r in runs):
        head += ", every one finished: nothing to train"
    elif device == "cpu":
        head += (
            f", about {duration(total)} in all (rough: per-step times measured on an idle 2-core CPU; "
            "a loaded machine takes several times longer)"
        )
    else:
        head += " (no time estimate on a GPU)"
    lines = [head]
    for i, r in enumerate(runs, 1):
        c = r.cfg
        what = "regressor" if c.stage == "regressor" else f"segmenter {c.method}"
        est = "" if r.epoch_s is None else f", {_about(r.epoch_s)}/epoch, {_about(r.total_s or 0.0)}"
        role = "" if i == len(runs) else " (prerequisite)"
        lines.append(
            f"  {i}. {c.run_id}{role}: {what}, {c.epochs} epochs at {c.image_size}x{c.image_size}, "
            f"{r.steps} steps/epoch{est} [{_STATUS.get(r.status, r.status)}]"
        )
    return lines


def paper_scale_reasons(runs: list[PlannedRun], device: str) -> list[str]:
    """Why the runs still to train are paper-scale work for a CPU (empty: they are not, or not on a CPU)."""
    if device != "cpu":
        return []
    reasons: list[str] = []
    for r in (r for r in runs if r.todo):
        c = r.cfg
        if c.stage == "regressor" and regressor_depth(c) >= PAPER_DEPTH:
            reasons.append(f"a ResNeXt-{regressor_depth(c)} regressor")
        if c.image_size >= PAPER_SIZE and c.epochs >= PAPER_EPOCHS:
            reasons.append(f"{c.epochs} {c.stage} epochs at {c.image_size}x{c.image_size}")
    total = sum(r.total_s or 0.0 for r in runs if r.todo)
    if total >= LONG_ON_CPU_S and not reasons:
        reasons.append(f"an estimated {duration(total)}")
    return list(dict.fromkeys(reasons))


def log_plan(runs: list[PlannedRun], device: str) -> None:
    """The plan at INFO, and at WARNING the paper-scale-on-a-CPU warning naming the quick alternative."""
    for line in plan_lines(runs, device):
        log.info("%s", line)
    reasons = paper_scale_reasons(runs, device)
    if reasons:
        total = sum(r.total_s or 0.0 for r in runs if r.todo)
        log.warning(
            "paper-scale work on a CPU (%s; estimated %s, see the plan above): the paper's settings are "
            "meant for a GPU (--device cuda). For a quick check of the whole pipeline use --preset smoke "
            "(minutes on a CPU).",
            "; ".join(reasons),
            duration(total),
        )
