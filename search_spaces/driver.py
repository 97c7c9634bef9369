"""The Tune driver: one experiment (an :class:`~suite.experiment_spec.ExperimentSpec`) run under Ray Tune.

``run_experiment(spec)`` (what ``suite tune``, ``suite demo`` and the SLURM allocation job call):

1. expands the spec (``search_spaces.expand``): the space's run configs with the dataset path and content
   hash, every prerequisite added and runs deduplicated by ``run_id`` (``suite.planner``), so a regressor
   of (n, split, seed) shared by 15 Proposed runs is one run;
2. records the launch in ``RESULTS/<experiment>/experiment.json`` (``suite.experiment.record_launch``);
3. counts what the run directories already hold: finished runs are skipped (never relaunched), partial ones
   resume inside their trial from ``checkpoint_last.pt``, failed ones are retried;
4. runs the rest as one Tune experiment dispatched by dependency (``suite.ray_glue.trials.run_trials``): a
   run starts as soon as its prerequisites have finished and a slot is free, the longest ready run first,
   so a trial never waits on another trial's lock and no slot idles at a barrier between dependency
   levels; the dependants of a run that failed are never started (reported as blocked);
5. a trial that finds its lock held by another launcher returns at once; the driver waits for the lock
   outside Ray (holding no resources) and requeues what is left in another round;
6. resuming reads only the run directories: re-running the same command (``resume=True`` is the same
   thing) plans again from them and finishes the rest without repeating a finished run. Tune's own saved
   experiment state is never restored: it is pickled, and a results folder someone sent could carry a
   pickle that runs code when loaded;
7. returns a summary (also written to ``ray/last_launch.json``).
"""

from __future__ import annotations

import collections
import logging
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces.expand import expand
from suite.atomic import write_json_atomic
from suite.errors import InputError
from suite.experiment import now_iso, record_launch
from suite.experiment_spec import ExperimentSpec
from suite.paths import ExperimentPaths
from suite.planner import Plan

log = logging.getLogger("search_spaces.driver")

MAX_ROUNDS = 20  # requeue rounds per phase for runs whose lock another launcher held


def run_status(exp: ExperimentPaths, run_ids: Iterable[str]) -> dict[str, str]:
    return {rid: exp.run(rid).status() for rid in run_ids}


# ---------------------------------------------------------------------------------------------- driver
@dataclass
class Summary:
    experiment: str
    total: int
    already_finished: int
    finished_now: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)  # runs given to each Tune experiment of this launch
    wall_time_s: float = 0.0
    ray_start_s: float = 0.0
    interrupted: bool = False
    runs: dict[str, str] = field(default_factory=dict)  # run_id -> final status

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked and not self.incomplete and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["ok"] = self.ok
        return d


def run_experiment(spec: ExperimentSpec) -> dict[str, Any]:
    """Run (or finish) one experiment under Ray Tune; returns the summary dict (see the module docstring).

    The experiment folder is ``spec.out/<experiment>``. ``workers_per_trial > 1`` trains every run with DDP
    through Ray Train (``world_size`` is part of the run identity; global batches must be divisible by it).
    ``gpus_per_trial`` may be a fraction (several small trials per GPU; per worker for DDP). ``address``
    joins a running Ray cluster instead of starting one; ``num_cpus`` caps a local Ray's CPUs. When Ray is
    already initialised in this process (e.g. by ``suite.ray_glue.cluster.start_ray``), it is used and left
    running; otherwise it is started and shut down here.
    """
    t_start = time.monotonic()
    planned = expand(spec)
    spec, plan, exp = planned.spec, planned.plan, planned.exp
    address = spec.address
    record_launch(
        exp,
        planned.record(),
        {
            "at": now_iso(),
            "launcher": spec.launcher,
            "address": address or "local",
            "workers_per_trial": spec.workers_per_trial,
            "gpus_per_trial": spec.gpus_per_trial,
            "resume": spec.resume,
        },
    )
    name = spec.name
    max_failures = spec.max_failures

    status = run_status(exp, plan.runs)
    done0 = {rid for rid, s in status.items() if s == "finished"}
    summary = Summary(experiment=str(exp.root), total=len(plan.runs), already_finished=len(done0))
    log.info(
        "experiment %s: %d runs (%d requested + prerequisites), %d already finished",
        exp.root,
        len(plan.runs),
        len(plan.requested),
        len(done0),
    )
    if len(done0) == len(plan.runs):
        summary.runs = status
        summary.wall_time_s = time.monotonic() - t_start
        _finish(exp, summary)
        return summary.to_dict()

    from suite.ray_glue.cluster import ray_running, short_temp_dir, start_ray, stop_ray
    from suite.ray_glue.progress import Progress
    from suite.ray_glue.resources import TrialOptions

    progress = Progress(label=name, total=len(plan.runs), already=frozenset(done0))
    interrupted = {"flag": False}
    old_int = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:  # Tune handles the first SIGINT; we remember it
        interrupted["flag"] = True
        if callable(old_int):
            old_int(signum, frame)

    owns_ray = not ray_running()  # a caller that started Ray (tests, SLURM launcher) keeps it
    info = start_ray(
        address,
        num_cpus=spec.num_cpus,
        temp_dir=short_temp_dir(str(exp.root)) if address in (None, "", "local") else None,
    )
    summary.ray_start_s = info.start_s
    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        pass
    try:
        ref = next(iter(plan.runs.values()))
        cpus = spec.cpus_per_trial or float(min(ref.threads, max(1.0, info.cpus)))
        if spec.workers_per_trial > 1 and spec.cpus_per_trial is None:
            cpus = float(max(1, min(ref.threads, int(info.cpus // spec.workers_per_trial) or 1)))
        if spec.gpus_per_trial > 0 and info.gpus <= 0:
            raise InputError(
                f"--gpus-per-trial {spec.gpus_per_trial}: the Ray cluster has no GPU; drop the option"
            )
        opts = TrialOptions(
            experiment_root=str(exp.root),
            cpus=cpus,
            gpus=float(spec.gpus_per_trial),
            use_train=spec.use_train,
            train_max_failures=max_failures,
            has_trial_driver=info.has_trial_driver,
        )
        errors: dict[str, dict[str, Any]] = {}

        status = run_status(exp, plan.runs)
        todo = [rid for rid, st in status.items() if st != "finished"]
        if todo and not summary.interrupted:
            outcomes = _dispatch(
                exp, plan, todo, opts, progress, spec, info, _next_launch_name(exp), interrupted, summary
            )
            summary.interrupted = summary.interrupted or interrupted["flag"]
            # an uninterrupted launch ends each run finished, failed, blocked or incomplete
            for rid in todo if not summary.interrupted else ():
                oc = outcomes.get(rid)
                if exp.run(rid).is_finished():
                    continue
                if oc is None:  # never started: a prerequisite did not finish
                    summary.blocked.append(rid)
                elif oc.status == "error":
                    errors[rid] = _error_record(exp, rid, oc)
                else:
                    summary.incomplete.append(rid)
        summary.failed = list(errors.values())
    finally:
        try:
            signal.signal(signal.SIGINT, old_int)
        except ValueError:
            pass
        progress.close()
        if owns_ray:
            stop_ray()
    final = run_status(exp, plan.runs)
    summary.runs = final
    summary.finished_now = sum(1 for rid, s in final.items() if s == "finished" and rid not in done0)
    summary.wall_time_s = time.monotonic() - t_start
    for rec in summary.failed:
        log.error("run %s failed: %s (log: %s)", rec["run_id"], rec["error"], rec["log"])
    for rid in summary.blocked:
        log.error("run %s not started: a prerequisite failed", rid)
    _finish(exp, summary)
    return summary.to_dict()


def _dispatch(
    exp: ExperimentPaths,
    plan: Plan,
    todo: list[str],
    opts: Any,
    progress: Any,
    spec: ExperimentSpec,
    info: Any,
    name: str,
    interrupted: dict[str, bool],
    summary: Summary,
) -> dict[str, Any]:
    """Run ``todo`` as one Tune experiment dispatched by dependency, then (rarely) more rounds for runs
    another launcher was holding (the driver waits for its lock outside Ray, holding no resources)."""
    from suite.ray_glue.resources import default_concurrency
    from suite.ray_glue.trials import run_trials
    from suite.run_lock import wait_for_lock

    outcomes: dict[str, Any] = {}
    pending = list(todo)
    for rnd in range(MAX_ROUNDS):
        done = {r for r in plan.runs if exp.run(r).is_finished()}
        cfgs = [plan.runs[r] for r in pending]
        conc = spec.max_concurrent or default_concurrency(cfgs, opts, info.cpus, info.gpus)
        summary.rounds.append(len(pending))
        progress.emit(force=True)
        res = run_trials(
            cfgs,
            opts,
            name=name if rnd == 0 else f"{name}-round{rnd + 1}",
            max_concurrent=conc,
            max_failures=spec.max_failures,
            progress=progress,
            deps=plan.deps,
            done=done,
        )
        outcomes.update(res)
        known_done = done | {r for r, oc in res.items() if oc.status == "finished"}
        settled = set(plan.runs) - set(pending) | set(res) | {r for r in pending if exp.run(r).is_finished()}
        if interrupted["flag"] or plan.ready(known_done, exclude=settled):
            interrupted["flag"] = True  # a run that could start never did: the experiment was stopped
            return outcomes
        busy = [r for r in pending if r in res and res[r].status == "busy"]
        if not busy:
            return outcomes
        for r in busy:
            lock = res[r].lock
            log.info("run %s is being trained by another launcher (%s); waiting outside Ray", r, lock)
            if lock:
                wait_for_lock(Path(lock))
            if exp.run(r).is_finished():
                progress.mark(r, finished=True)
        ended = {r for r in pending if r in res and res[r].status in ("error", "incomplete")}
        blocked = set(plan.blocked(ended))
        pending = [r for r in pending if not exp.run(r).is_finished() and r not in ended | blocked]
        if not pending:
            return outcomes
    return outcomes


def _next_launch_name(exp: ExperimentPaths) -> str:
    """``launch<k>``, k one more than any Tune experiment in ``ray/tune`` (earlier launches' folders are
    kept as a record, never read back)."""
    tune_dir = exp.ray_dir / "tune"
    names = [p.name for p in tune_dir.iterdir() if p.is_dir()] if tune_dir.is_dir() else []
    return f"launch{1 + max((k for k, _, _ in map(_launch_key, names) if k < 10**6), default=0)}"


def _launch_key(name: str) -> tuple[int, int, str]:
    """Sort key of the Tune experiments of earlier launches: ``launch<k>[-round<r>]`` (and ``phase<k>`` of the
    versions that ran dependency levels one after the other)."""
    import re

    m = re.match(r"(?:launch|phase)(\d+)(?:-round(\d+))?$", name)
    return (int(m.group(1)), int(m.group(2) or 1), name) if m else (10**6, 0, name)


def _error_record(exp: ExperimentPaths, rid: str, oc: Any) -> dict[str, Any]:
    paths = exp.run(rid)
    trial_err = Path(oc.trial_path) / "error.txt" if oc.trial_path else None
    log_path = (
        paths.log if paths.log.exists() else (trial_err if trial_err and trial_err.exists() else paths.log)
    )
    return {
        "run_id": rid,
        "error": oc.error,
        "log": str(log_path),
        "failed_json": str(paths.failed) if paths.failed.exists() else None,
        "trial_error": str(trial_err) if trial_err and trial_err.exists() else None,
    }


def _finish(exp: ExperimentPaths, summary: Summary) -> None:
    exp.ray_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(exp.ray_dir / "last_launch.json", {**summary.to_dict(), "at": now_iso()})
    counts = collections.Counter(summary.runs.values())
    log.info(
        "experiment %s: %d/%d runs finished (%d this launch, %d before), %d failed, %d blocked, %.0f s",
        exp.root.name,
        counts.get("finished", 0),
        summary.total,
        summary.finished_now,
        summary.already_finished,
        len(summary.failed),
        len(summary.blocked),
        summary.wall_time_s,
    )
