"""The Tune function trainable: one trial runs one run directory.

- ``world_size == 1`` (default): :func:`suite.stages.runner.execute` runs directly in the trial process and
  each epoch is reported to Tune from the ``on_epoch_end`` hook (no ``TorchTrainer`` start-up: ~1 s per
  trial instead of 8–20 s);
- ``world_size > 1`` (``--workers-per-trial``) or ``use_train``: the trial fits a Ray Train ``TorchTrainer``
  (:mod:`suite.ray_glue.train`).

A finished run reports ``skipped=1``; a run whose lock (or an unfinished prerequisite's) another launcher
holds reports ``busy=1`` at once, giving its resources back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from suite.config import RunConfig
from suite.paths import ExperimentPaths, RunPaths
from suite.ray_glue.faults import maybe_crash
from suite.ray_glue.resources import TrialOptions, cfg_for_trial, device_share, trial_resources
from suite.ray_glue.train import epoch_report, fit_with_train, mark_launcher
from suite.run_lock import busy_lock


class TuneHooks:
    """Direct trials: report each epoch's run-level metrics to Tune."""

    def __init__(self, cfg: RunConfig, gpus: float = 0.0) -> None:
        self.cfg = cfg
        self.reported = 0
        self.device_share = device_share(gpus)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], paths: RunPaths) -> None:
        from ray import tune

        maybe_crash(epoch, paths, 0)
        tune.report(epoch_report(metrics, self.cfg))
        self.reported += 1


def tune_trial(config: dict[str, Any]) -> None:
    """The Tune function trainable: one run directory (see the module docstring)."""
    from ray import tune

    opts = TrialOptions(**config["opts"])
    cfg = cfg_for_trial(RunConfig.from_dict(config["trial"]["run"], source="trial config"), opts)
    paths = ExperimentPaths(Path(opts.experiment_root)).run(cfg.run_id)
    base = {"run_id": cfg.run_id}
    if paths.is_finished():
        tune.report({**base, "done": 1, "skipped": 1, "busy": 0})
        return
    held = busy_lock(cfg, opts.experiment_root)
    if held is not None:  # another launcher trains it: give the resources back, the driver waits outside
        tune.report({**base, "done": 0, "skipped": 0, "busy": 1, "lock": str(held)})
        return
    import torch

    torch.set_num_threads(int(cfg.threads))
    if opts.wants_train(cfg):
        result = fit_with_train(cfg, opts, in_tune=True)
        if getattr(result, "error", None) is not None:
            raise RuntimeError(f"{cfg.run_id}: Ray Train failed: {result.error}")
    else:
        from suite.stages.runner import execute

        mark_launcher("ray-tune")
        execute(cfg, opts.experiment_root, hooks=TuneHooks(cfg, opts.gpus))
    done = paths.is_finished()
    final: dict[str, Any] = {**base, "done": int(done), "skipped": 0, "busy": 0}
    if done:
        summary = paths.read_json(paths.summary)
        final["best_value"] = float(summary.get("best_value", float("nan")))
        final["best_epoch"] = int(summary.get("best_epoch", -1))
    tune.report(final)


def trial_name(trial: Any) -> str:
    """A trial's name and directory: its run id."""
    return str(trial.config["trial"]["run_id"])


def trial_placement(config: dict[str, Any]) -> Any:
    """The placement group of one trial, from its config
    (:func:`~suite.ray_glue.resources.trial_resources`)."""
    from ray import tune

    opts = TrialOptions(**config["opts"])
    cfg = RunConfig.from_dict(config["trial"]["run"], source="trial config")
    return tune.PlacementGroupFactory([trial_resources(cfg, opts)])
