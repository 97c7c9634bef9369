"""One Tune experiment over a list of run configs, dispatched by dependency (``search_spaces.driver``).

Tune is the executor; :class:`DependencySearcher` decides what runs next. Whenever a slot is free it
suggests, among the runs whose prerequisites have all finished, the one expected to take longest
(``suite.planner``), so a Proposed run starts as soon as its regressor is done instead of waiting for every
other prerequisite of the grid (a barrier between dependency levels measured 1,327 s on the fidelity grid
against a 1,220 s floor of run time over 2 slots). It ends the experiment when nothing is running and
nothing can start: every run ended, or waits on one that failed or that another launcher holds.

Per-trial resources (:mod:`suite.ray_glue.resources`), fault tolerance (``tune.FailureConfig``: a crashed
trial is retried before the searcher hears of it) and the suite's own one-line progress
(:mod:`suite.ray_glue.progress`; Tune itself is silenced with ``verbose=0``).
"""

from __future__ import annotations

import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.search import Searcher

from suite.config import RunConfig
from suite.paths import ExperimentPaths
from suite.planner import Plan
from suite.ray_glue.progress import (
    Progress,
    ProgressCallback,
    active_progress,
    set_active_progress,
    trial_run_id,
)
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


class DependencySearcher(Searcher):
    """Suggests runs as their prerequisites finish, longest first, at most ``max_concurrent`` at a time.

    ``plan``: the runs of this experiment and their prerequisites; ``done``: runs already finished (their
    dependants are ready). A trial that reports ``done`` finishes its run; one that errors (after Tune's
    retries) or ends otherwise (``busy``: another launcher holds the lock; stopped) does not, and its
    dependants are left for the driver to block or requeue. It saves no state: a relaunch plans again from
    the run directories (Tune's experiment state is never restored)."""

    def __init__(self, plan: Plan, done: Collection[str], opts: TrialOptions, max_concurrent: int) -> None:
        super().__init__()
        self.plan = plan
        self.done = set(done)
        self.opts = opts
        self.max_concurrent = max_concurrent
        self.started: dict[str, str] = {}  # trial id -> run id
        self.live: set[str] = set()  # trial ids not ended

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True  # the slot count is ours: each free slot gets the longest ready run at that moment

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if len(self.live) >= self.max_concurrent:
            return None
        ready = self.plan.ready(self.done, exclude=set(self.started.values()))
        if not ready:
            # a running trial may release more; with none running, nothing ever will
            # (Tune's annotation of suggest leaves out FINISHED, the string it documents)
            return None if self.live else Searcher.FINISHED  # type: ignore[return-value]
        run_id = ready[0]
        self.started[trial_id] = run_id
        self.live.add(trial_id)
        self._show_waiting()
        cfg = self.plan.runs[run_id]
        return {
            "trial": {"run_id": run_id, "run": cfg.to_dict(include_derived=False)},
            "opts": asdict(self.opts),
        }

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.live.discard(trial_id)
        run_id = self.started.get(trial_id)
        if run_id is not None and not error and result and result.get("done") and not result.get("busy"):
            self.done.add(run_id)
        self._show_waiting()

    def waiting(self) -> int:
        """Runs not started that still can (waiting for a slot or for prerequisites that are running)."""
        started = set(self.started.values())
        ended = started - self.done - {self.started[t] for t in self.live}
        return len(set(self.plan.runs) - started - self.done - set(self.plan.blocked(ended)))

    def _show_waiting(self) -> None:
        progress = active_progress()
        if progress is not None:
            n = self.waiting()
            progress.phase = f"{n} waiting for prerequisites or a slot" if n else ""


def run_trials(
    cfgs: Sequence[RunConfig],
    opts: TrialOptions,
    *,
    name: str,
    max_concurrent: int,
    max_failures: int,
    progress: Progress,
    deps: Mapping[str, Sequence[str]] | None = None,
    done: Collection[str] = (),
) -> dict[str, TrialOutcome]:
    """Run one Tune experiment (``<experiment>/ray/tune/<name>``) over ``cfgs``; one outcome per run that
    was started (a run whose prerequisites never finished has none).

    ``deps`` (run id -> prerequisite run ids) and ``done`` (runs finished before): a run starts once each
    of its prerequisites is in ``done`` or finished in this experiment.

    Never restored from Tune's saved experiment state: that state is pickled (cloudpickle), and a results
    folder received from someone else could carry a pickle that runs code when loaded. The run directories
    (weights-only checkpoints, JSON, CSV) already say what is finished and where each partial run resumes.
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
    if exp_path.exists():
        shutil.rmtree(exp_path)
    runs = {c.run_id: c for c in cfgs}
    plan = Plan(runs=runs, requested=list(runs), deps={r: list((deps or {}).get(r, ())) for r in runs})
    tuner = tune.Tuner(
        trainable,
        run_config=run_config,
        tune_config=tune.TuneConfig(
            search_alg=DependencySearcher(plan, done, opts, max_concurrent),
            num_samples=-1,  # the searcher says when the experiment is over
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
