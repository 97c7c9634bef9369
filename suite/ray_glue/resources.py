"""What one trial and its workers ask Ray for, and how many trials fit at once.

On a small machine: a direct trial asks for ``{"CPU": cpus_per_trial, "GPU": gpus_per_trial}`` (fractions
allowed, several small trials per GPU); a Train trial asks only for ``{"trial_driver": 1}`` and its workers
for the CPUs/GPUs, so that the trial driver never takes a CPU away from its own workers (which deadlocks on 2
CPUs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from suite.config import RunConfig
from suite.ray_glue.cluster import TRIAL_DRIVER


@dataclass(frozen=True)
class TrialOptions:
    """How each trial runs (the same for every trial of one launch)."""

    experiment_root: str
    cpus: float = 1.0  # per direct trial, or per Train worker
    gpus: float = 0.0  # per direct trial (fractions share a GPU), or per Train worker
    use_train: bool | None = None  # None: Train only when world_size > 1
    train_max_failures: int = 1  # Train: worker-group restarts from the last checkpoint
    has_trial_driver: bool = True

    def wants_train(self, cfg: RunConfig) -> bool:
        return bool(self.use_train) if self.use_train is not None else cfg.world_size > 1


def trial_resources(cfg: RunConfig, opts: TrialOptions) -> dict[str, float]:
    """The Tune resource request of one trial (see the module docstring)."""
    if opts.wants_train(cfg):
        return {TRIAL_DRIVER: 1.0} if opts.has_trial_driver else {"CPU": 0.01}
    res = {"CPU": float(opts.cpus)}
    if opts.gpus > 0:
        res["GPU"] = float(opts.gpus)
    return res


def worker_resources(opts: TrialOptions) -> dict[str, float]:
    res = {"CPU": float(opts.cpus)}
    if opts.gpus > 0:
        res["GPU"] = float(opts.gpus)
    return res


def device_share(gpus: float) -> float:
    """The share of one GPU that a direct trial, or each Train worker, holds: ``--gpus-per-trial 0.25`` packs
    four on one GPU, and each run is charged its quarter (``Hooks.device_share``); a whole GPU or none
    (CPU): 1."""
    return float(gpus) if 0.0 < gpus < 1.0 else 1.0


def default_concurrency(cfgs: Sequence[RunConfig], opts: TrialOptions, cpus: float, gpus: float) -> int:
    """How many trials fit at once: the cluster's CPUs (and GPUs) over what one trial's processes take."""
    if not cfgs:
        return 1
    cfg = cfgs[0]
    per = worker_resources(opts)
    k = cfg.world_size if opts.wants_train(cfg) else 1
    fits = math.floor(cpus / (per["CPU"] * k) + 1e-9) if per["CPU"] > 0 else len(cfgs)
    if per.get("GPU", 0) > 0:
        fits = min(fits, math.floor(gpus / (per["GPU"] * k) + 1e-9))
    return max(1, min(fits, len(cfgs)))


def cfg_for_trial(cfg: RunConfig, opts: TrialOptions) -> RunConfig:
    # CPU-only trials must not grab a GPU that Ray did not assign (device is not identity)
    if opts.gpus <= 0 and cfg.device == "auto":
        return cfg.replace(device="cpu")
    return cfg
