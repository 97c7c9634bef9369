"""One Tune experiment over a list of run configs (one phase of the driver in ``search_spaces.driver``).

Per-trial resources (:mod:`suite.ray_glue.resources`), fault tolerance (``tune.FailureConfig``) and the
suite's own one-line progress (:mod:`suite.ray_glue.progress`; Tune itself is silenced with ``verbose=0``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ray import tune

from suite.config import RunConfig
from suite.paths import ExperimentPaths
from suite.ray_glue.progress import Progress, ProgressCallback, set_active_progress, trial_run_id
from suite.ray_glue.resources import TrialOptions
from suite.ray_glue.trainable import trial_name, trial_placement, tune_trial


@dataclass
class TrialOutcome:
    """What the driver learns about one run from its trial."""

    run_id: str
    status: str  # finished | busy | error | incomplete
    error: str | None = None
    trial_path: str | None = None
    lock: str | None = None
    best_value: float | None = None


def run_trials(
    cfgs: Sequence[RunConfig],
    opts: TrialOptions,
    *,
    name: str,
    max_concurrent: int,
    max_failures: int,
    progress: Progress,
    restore: bool = False,
) -> dict[str, TrialOutcome]:
    """Run one Tune experiment (``<experiment>/ray/tune/<name>``) over ``cfgs``; one outcome per run id.

    ``restore=True`` restores that experiment (``Tuner.restore(..., resume_errored=True)``) instead of
    starting it; ``cfgs`` is then only used to label the outcomes.
    """
    set_active_progress(progress)
    storage = ExperimentPaths(Path(opts.experiment_root)).ray_dir / "tune"
    storage.mkdir(parents=True, exist_ok=True)
    trainable = tune.with_resources(tune_trial, trial_placement)
    exp_path = storage / name
    run_config = tune.RunConfig(
        name=name,
        storage_path=str(storage.resolve()),
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=max_failures),
        callbacks=[ProgressCallback()],
    )
    if restore:
        tuner = tune.Tuner.restore(str(exp_path.resolve()), trainable=trainable, resume_errored=True)
    else:
        if exp_path.exists():
            shutil.rmtree(exp_path)
        param_space = {
            "trial": tune.grid_search(
                [{"run_id": c.run_id, "run": c.to_dict(include_derived=False)} for c in cfgs]
            ),
            "opts": asdict(opts),
        }
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            run_config=run_config,
            tune_config=tune.TuneConfig(
                max_concurrent_trials=max_concurrent,
                reuse_actors=False,
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
            ),
        )
    grid = tuner.fit()
    outcomes: dict[str, TrialOutcome] = {}
    for i in range(len(grid)):  # ResultGrid is indexed (its type declares no __iter__)
        result = grid[i]
        run_id = trial_run_id(result.config) or "?"
        metrics = result.metrics or {}
        path = str(result.path) if getattr(result, "path", None) else None
        if result.error is not None:
            err = str(result.error).strip().splitlines()
            outcomes[run_id] = TrialOutcome(run_id, "error", error=_short_error(err), trial_path=path)
        elif metrics.get("busy"):
            outcomes[run_id] = TrialOutcome(run_id, "busy", trial_path=path, lock=metrics.get("lock"))
        elif metrics.get("done"):
            outcomes[run_id] = TrialOutcome(
                run_id, "finished", trial_path=path, best_value=metrics.get("best_value")
            )
        else:
            outcomes[run_id] = TrialOutcome(run_id, "incomplete", trial_path=path)
    return outcomes


def _short_error(lines: list[str]) -> str:
    """The most telling line of a Ray error (the innermost exception)."""
    for line in reversed(lines):
        s = line.strip()
        if s and not s.startswith(("File ", "^", "~")) and ":" in s:
            return s[:400]
    return (lines[-1] if lines else "unknown error")[:400]


def can_restore(experiment_root: str | os.PathLike, name: str) -> bool:
    """Whether ``<experiment>/ray/tune/<name>`` holds a Tune experiment that ``restore=True`` can resume."""
    path = ExperimentPaths(Path(experiment_root)).ray_dir / "tune" / name
    return path.is_dir() and tune.Tuner.can_restore(str(path.resolve()))
