"""The suite's single progress line, and the Tune callback that feeds it from a running Tune experiment.

This module imports ``ray.tune`` (seconds) at the top because :class:`ProgressCallback` subclasses its
``Callback``; only the Ray glue and the Tune driver import it. A Tune experiment pickles its callbacks (the
suite never restores one), so the callback is an ordinary module-level class that carries no state across
pickling and reports to the progress line of the driver process (:func:`set_active_progress`).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from suite.log import progress_enabled


@dataclass
class Progress:
    """Counts for the suite's single progress line (shared by the driver and the Tune callback).

    Runs are counted by run id, never by event: a retried or requeued trial re-reports runs that
    finished before (skipped in a second), and one run can end in several rounds; neither counts twice."""

    label: str
    total: int
    already: frozenset[str] = frozenset()  # finished before this launch
    running: int = 0
    phase: str = ""
    finished_ids: set[str] = field(default_factory=set)
    failed_ids: set[str] = field(default_factory=set)
    t0: float = field(default_factory=time.monotonic)
    last_line: str = ""
    last_emit: float = 0.0
    min_interval_s: float = 5.0

    def mark(self, run_id: str, *, finished: bool = False, failed: bool = False) -> None:
        if finished:
            self.finished_ids.add(run_id)
            self.failed_ids.discard(run_id)
        elif failed and run_id not in self.finished_ids:
            self.failed_ids.add(run_id)

    @property
    def finished(self) -> int:
        """Runs finished this launch."""
        return len(self.finished_ids - self.already)

    def line(self) -> str:
        el = int(time.monotonic() - self.t0)
        done = len(self.finished_ids | self.already)
        return (
            f"{self.label}: {done}/{self.total} runs finished "
            f"({len(self.already)} already done), {self.running} running, {len(self.failed_ids)} failed"
            f"{', ' + self.phase if self.phase else ''} [{el // 60}:{el % 60:02d}]"
        )

    def emit(self, force: bool = False) -> None:
        text = self.line()
        now = time.monotonic()
        core, last_core = text.rsplit(" [", 1)[0], self.last_line.rsplit(" [", 1)[0]
        if core == last_core and not force:
            return  # nothing new to say
        self.last_line, self.last_emit = text, now
        if progress_enabled():
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
        else:
            logging.getLogger("search_spaces.progress").info("%s", text)

    def close(self) -> None:
        if progress_enabled():
            sys.stderr.write("\n")


_active_progress: Progress | None = None  # the driver's current progress line (set by run_trials)


def set_active_progress(progress: Progress | None) -> None:
    """The progress line every :class:`ProgressCallback` of this process reports to from now on."""
    global _active_progress
    _active_progress = progress


def active_progress() -> Progress | None:
    """The progress line set by :func:`set_active_progress` (None outside a driver)."""
    return _active_progress


def trial_run_id(config: dict | None) -> str | None:
    """The run id a trial of :func:`~suite.ray_glue.trials.run_trials` carries in its config
    (``{"trial": {"run_id": ...}}``)."""
    return ((config or {}).get("trial") or {}).get("run_id")


class ProgressCallback(Callback):
    """Counts running, finished and failed runs of a Tune experiment into the active progress line."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.last: dict[str, dict] = {}

    def __getstate__(self) -> dict:
        return {}  # the counts belong to the driver process that runs the experiment, not to its pickle

    def __setstate__(self, state: dict) -> None:
        self.running = set()
        self.last = {}

    def _update(self, trial: Trial, finished: bool = False, failed: bool = False) -> None:
        prog = _active_progress
        if prog is None:
            return
        prog.running = len(self.running)
        prog.mark(trial_run_id(trial.config) or trial.trial_id, finished=finished, failed=failed)
        prog.emit()

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self._update(trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        self.last[trial.trial_id] = result

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        res = self.last.get(trial.trial_id, {})
        self._update(trial, finished=bool(res.get("done")) and not res.get("busy"))

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self._update(trial, failed=True)
