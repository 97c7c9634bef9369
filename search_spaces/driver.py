"""The Tune driver: one experiment = one space x preset x seeds, run in phases under Ray Tune.

``run_experiment`` (what ``suite tune``, ``make demo`` and the SLURM launcher call):

1. expands the space into run configs (``search_spaces.get_space(...).configs``), fills the dataset path and
   content hash, and adds every prerequisite (``RunConfig.prerequisites()``); runs are deduplicated by
   ``run_id``, so a regressor of (n, split, seed) shared by 15 Proposed runs is one run;
2. counts what the run directories already hold: finished runs are skipped (never relaunched), partial ones
   resume inside their trial from ``checkpoint_last.pt``, failed ones are retried;
3. orders the rest in phases: a run goes in the phase after its last unfinished prerequisite (phase 1:
   regressors, FS, Oracle; phase 2: Proposed and Proposals), so a trial never waits on another trial's
   lock; the dependants of a run that failed are not launched (reported as blocked);
4. runs each phase as one Tune experiment (``suite.ray_glue.trials.run_trials``); a trial that finds its lock
   held by another launcher returns at once, the driver waits for the lock outside Ray (holding no
   resources) and requeues it;
5. ``resume=True`` first restores the Tune experiments a killed driver left unfinished
   (``Tuner.restore(..., resume_errored=True)``), then plans again from the run directories, so re-running
   the same command finishes the rest without repeating a finished run either way;
6. writes ``RESULTS/<experiment>/experiment.json`` (space, preset, seeds, overrides, data hash, cohort, git
   sha, versions, launcher) and returns a summary (also written to ``ray/last_launch.json``).
"""

from __future__ import annotations

import collections
import json
import logging
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from search_spaces import get_space
from suite.atomic import write_json_atomic
from suite.config import RunConfig
from suite.errors import InputError
from suite.paths import ExperimentPaths

log = logging.getLogger("search_spaces.driver")

MAX_ROUNDS = 20  # requeue rounds per phase for runs whose lock another launcher held


# ---------------------------------------------------------------------------------------------- planning
@dataclass
class Plan:
    """All runs of an experiment (requested + prerequisites), deduplicated, with their dependencies."""

    runs: dict[str, RunConfig]  # run_id -> config, in a stable order
    requested: list[str]
    deps: dict[str, list[str]]  # run_id -> prerequisite run_ids

    def closure(self, run_id: str) -> list[str]:
        out: list[str] = []
        for d in self.deps.get(run_id, []):
            out.extend(self.closure(d))
            out.append(d)
        return out


def build_plan(cfgs: Iterable[RunConfig]) -> Plan:
    """Add prerequisites (recursively) and deduplicate by ``run_id`` (prerequisites placed first)."""
    runs: dict[str, RunConfig] = {}
    deps: dict[str, list[str]] = {}
    requested: list[str] = []

    def add(cfg: RunConfig) -> str:
        rid = cfg.run_id
        if rid in runs:
            return rid
        pre_ids = [add(p) for p in cfg.prerequisites()]
        runs[rid] = cfg
        deps[rid] = pre_ids
        return rid

    for cfg in cfgs:
        rid = add(cfg)
        if rid not in requested:
            requested.append(rid)
    return Plan(runs=runs, requested=requested, deps=deps)


def cost_rank(cfg: RunConfig) -> tuple[int, int]:
    """Sort key putting the runs expected to take longest first: those that pass over the unlabeled images
    every epoch (Proposed, Oracle, Proposals), then regressors, then FS; more epochs first within each. Trials
    start in this order, so a phase does not end with one long run alone on an otherwise idle machine
    (longest-processing-time-first: on the fidelity grid it removed a ~4.5 min single-run tail of phase 1)."""
    if cfg.stage == "regressor":
        return (1, -cfg.reg_epochs)
    if cfg.method == "fs":
        return (2, -cfg.seg_epochs)
    return (0, -(cfg.seg_epochs - cfg.penalty_warmup))


def phases(plan: Plan, done: set[str]) -> list[list[str]]:
    """Unfinished runs by level: level = 1 + the highest level of an unfinished prerequisite (0 if none);
    within a level, longest expected runs first (:func:`cost_rank`, stable)."""
    level: dict[str, int] = {}

    def lv(rid: str) -> int:
        if rid not in level:
            level[rid] = max([lv(d) + 1 for d in plan.deps.get(rid, []) if d not in done], default=0)
        return level[rid]

    todo = [rid for rid in plan.runs if rid not in done]
    out: dict[int, list[str]] = collections.defaultdict(list)
    for rid in todo:
        out[lv(rid)].append(rid)
    return [sorted(out[k], key=lambda r: cost_rank(plan.runs[r])) for k in sorted(out)]


def run_status(exp: ExperimentPaths, run_ids: Iterable[str]) -> dict[str, str]:
    return {rid: exp.run(rid).status() for rid in run_ids}


# -------------------------------------------------------------------------------------------- experiment.json
def _data_info(data: str | Path) -> tuple[str, dict[str, Any]]:
    """(data hash, cohort description) of a prepared dataset (raises InputError when it is not one)."""
    from suite.data.dataset import PreparedData

    prepared = PreparedData.open(data)
    cohort: dict[str, Any] = {}
    manifest = getattr(prepared, "manifest", None)
    if isinstance(manifest, dict):
        for key in ("source", "n_patients", "n_volumes", "n_slices", "size", "format"):
            if key in manifest:
                cohort[key] = manifest[key]
        groups = collections.Counter(
            p.get("group") for p in manifest.get("patients", []) if isinstance(p, dict)
        )
        if groups:
            cohort["groups"] = dict(sorted((str(k), v) for k, v in groups.items()))
    return str(prepared.data_hash), cohort


def _write_experiment_json(exp: ExperimentPaths, record: dict[str, Any]) -> None:
    """Create experiment.json, or check that an existing one asked for the same thing, and log the launch."""
    launch = record.pop("launch")
    if exp.experiment.exists():
        try:
            old = json.loads(exp.experiment.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{exp.experiment}: unreadable ({e}); fix or delete it") from e
        for key in ("space", "preset", "data_hash", "overrides", "search"):
            if old.get(key) != record.get(key):
                raise InputError(
                    f"{exp.experiment}: this experiment folder was made with {key}={old.get(key)!r}, now "
                    f"{record.get(key)!r}; use --experiment NAME for a new experiment (or the same options)"
                )
        merged = {**old, **{k: v for k, v in record.items() if k not in ("seeds", "labeled", "created")}}
        merged["seeds"] = sorted(set(old.get("seeds", [])) | set(record["seeds"]))
        launches = list(old.get("launches", []))
    else:
        merged = dict(record)
        launches = []
    launches.append(launch)
    merged["launches"] = launches[-50:]
    write_json_atomic(exp.experiment, merged)


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
    restored: list[str] = field(default_factory=list)
    phases: list[int] = field(default_factory=list)
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


def run_experiment(
    data: str | Path,
    space: str = "smoke",
    preset: str | None = None,
    seeds: Sequence[int] | None = None,
    out: str | Path = "results",
    *,
    experiment: str | None = None,
    address: str | None = None,
    gpus_per_trial: float = 0.0,
    workers_per_trial: int = 1,
    cpus_per_trial: float | None = None,
    max_concurrent: int | None = None,
    resume: bool = True,
    overrides: Sequence[str] = (),
    labeled: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    search: str = "grid",
    num_samples: int | None = None,
    search_seed: int = 0,
    max_failures: int = 1,
    use_train: bool | None = None,
    num_cpus: int | None = None,
    launcher: str = "ray",
) -> dict[str, Any]:
    """Run (or finish) one experiment under Ray Tune; returns the summary dict (see the module docstring).

    ``out/experiment`` is the experiment folder (``experiment`` defaults to ``<space>-<preset>``).
    ``workers_per_trial > 1`` trains every run with DDP through Ray Train (``world_size`` is part of the run
    identity; global batches must be divisible by it). ``gpus_per_trial`` may be a fraction (several small
    trials per GPU; per worker for DDP). ``address`` joins a running Ray cluster instead of starting one.
    ``num_cpus`` caps a local Ray's CPUs (tests, benchmarks). ``methods`` keeps only those segmenter methods.
    When Ray is already initialised in this process (e.g. by ``suite.ray_glue.cluster.start_ray``), it is used
    and left running; otherwise it is started and shut down here.
    """
    t_start = time.monotonic()
    sp = get_space(space)
    preset = preset or sp.default_preset
    seeds = list(sp.default_seeds if seeds is None else seeds)
    if workers_per_trial < 1:
        raise InputError(f"--workers-per-trial {workers_per_trial}: must be >= 1")
    if gpus_per_trial < 0:
        raise InputError(f"--gpus-per-trial {gpus_per_trial}: must be >= 0")
    if workers_per_trial > 1 and 0 < gpus_per_trial < 1:
        raise InputError(
            f"--gpus-per-trial {gpus_per_trial} with --workers-per-trial {workers_per_trial}: "
            "DDP ranks need a whole GPU each (fractions are for single-worker trials)"
        )
    if cpus_per_trial is not None and cpus_per_trial <= 0:
        raise InputError(f"--cpus-per-trial {cpus_per_trial}: must be > 0")
    if max_concurrent is not None and max_concurrent < 1:
        raise InputError(f"--max-concurrent {max_concurrent}: must be >= 1")
    if max_failures < 0:
        raise InputError(f"--max-failures {max_failures}: must be >= 0")
    for item in overrides:
        if item.split("=", 1)[0].strip() in ("data", "data_hash", "world_size"):
            raise InputError(f"--set {item}: set by the launcher; use --data / --workers-per-trial instead")
    data = Path(data).resolve()
    data_hash, cohort = _data_info(data)
    base: dict[str, Any] = {"data": str(data), "data_hash": data_hash, "world_size": int(workers_per_trial)}
    cfgs = sp.configs(
        preset,
        seeds,
        labeled=labeled,
        overrides=overrides,
        base=base,
        search=search,
        num_samples=num_samples,
        search_seed=search_seed,
        methods=methods,
    )
    plan = build_plan(cfgs)
    name = experiment or f"{space}-{preset}"
    if "/" in name or name.startswith("."):
        raise InputError(f"--experiment {name!r}: a folder name without '/' and not starting with '.'")
    exp = ExperimentPaths(Path(out).resolve() / name)
    exp.root.mkdir(parents=True, exist_ok=True)

    from suite.provenance import git_sha, versions

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write_experiment_json(
        exp,
        {
            "experiment": name,
            "space": space,
            "space_description": sp.description,
            "preset": preset,
            "seeds": seeds,
            "labeled": list(labeled) if labeled else list(sp.default_labeled),
            "methods": list(methods) if methods else None,
            "overrides": list(overrides),
            "search": {"mode": search, "num_samples": num_samples, "search_seed": search_seed}
            if search != "grid"
            else "grid",
            "data": str(data),
            "data_hash": data_hash,
            "cohort": cohort,
            "git_sha": git_sha(),
            "versions": versions(),
            "launcher": launcher,
            "created": now,
            "runs": {
                rid: {
                    "stage": c.stage,
                    "method": c.method if c.stage == "segmenter" else "regressor",
                    "n_labeled": c.n_labeled,
                    "seed": c.seed,
                    "requested": rid in plan.requested,
                }
                for rid, c in plan.runs.items()
            },
            "launch": {
                "at": now,
                "address": address or "local",
                "workers_per_trial": workers_per_trial,
                "gpus_per_trial": gpus_per_trial,
                "resume": resume,
            },
        },
    )

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
        num_cpus=num_cpus,
        temp_dir=short_temp_dir(str(exp.root)) if address in (None, "", "local") else None,
    )
    summary.ray_start_s = info.start_s
    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        pass
    try:
        ref = next(iter(plan.runs.values()))
        cpus = cpus_per_trial if cpus_per_trial is not None else float(min(ref.threads, max(1.0, info.cpus)))
        if workers_per_trial > 1 and cpus_per_trial is None:
            cpus = float(max(1, min(ref.threads, int(info.cpus // workers_per_trial) or 1)))
        if gpus_per_trial > 0 and info.gpus <= 0:
            raise InputError(
                f"--gpus-per-trial {gpus_per_trial}: the Ray cluster has no GPU; drop the option"
            )
        opts = TrialOptions(
            experiment_root=str(exp.root),
            cpus=cpus,
            gpus=float(gpus_per_trial),
            use_train=use_train,
            train_max_failures=max_failures,
            has_trial_driver=info.has_trial_driver,
        )
        failed_ids: set[str] = set()
        errors: dict[str, dict[str, Any]] = {}

        if resume:
            _restore_unfinished(exp, plan, opts, progress, max_concurrent, max_failures, info, summary)
            if interrupted["flag"]:
                summary.interrupted = True

        # after restoring a previous launch's phase k, this launch's phases go on from k + 1 (the label and
        # the Tune experiment's name: a restored experiment is never overwritten by the next phase)
        restored_upto = max((k for k, _, _ in map(_phase_key, summary.restored) if k < 10**6), default=0)
        while not summary.interrupted:
            status = run_status(exp, plan.runs)
            done = {rid for rid, s in status.items() if s == "finished"}
            levels = [
                [r for r in lvl if r not in failed_ids and r not in summary.blocked]
                for lvl in phases(plan, done)
            ]
            levels = [lvl for lvl in levels if lvl]
            if not levels:
                break
            todo = levels[0]
            blocked = [
                r for r in todo if any(d in failed_ids or d in summary.blocked for d in plan.closure(r))
            ]
            for r in blocked:
                summary.blocked.append(r)
            todo = [r for r in todo if r not in blocked]
            if not todo:
                continue
            phase_no = restored_upto + len(summary.phases) + 1
            summary.phases.append(len(todo))
            progress.phase = f"phase {phase_no} ({len(todo)} runs)"
            progress.emit(force=True)
            outcomes = _run_rounds(
                exp,
                plan,
                todo,
                opts,
                progress,
                max_concurrent,
                max_failures,
                info,
                f"phase{phase_no}",
                interrupted,
            )
            if interrupted["flag"]:
                summary.interrupted = True
            if summary.interrupted:
                break
            for rid in todo:  # every run of the phase ends finished, failed or incomplete: no endless loop
                if exp.run(rid).status() == "finished":
                    continue
                failed_ids.add(rid)  # its dependants are blocked
                oc = outcomes.get(rid)
                if oc is not None and oc.status == "error":
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


def _run_rounds(
    exp: ExperimentPaths,
    plan: Plan,
    todo: list[str],
    opts: Any,
    progress: Any,
    max_concurrent: int | None,
    max_failures: int,
    info: Any,
    name: str,
    interrupted: dict[str, bool],
) -> dict[str, Any]:
    """One phase: a Tune experiment, then (rarely) more rounds for runs another launcher was holding."""
    from suite.ray_glue.resources import default_concurrency
    from suite.ray_glue.trials import run_trials
    from suite.run_lock import wait_for_lock

    outcomes: dict[str, Any] = {}
    pending = list(todo)
    for rnd in range(MAX_ROUNDS):
        cfgs = [plan.runs[r] for r in pending]
        conc = max_concurrent or default_concurrency(cfgs, opts, info.cpus, info.gpus)
        res = run_trials(
            cfgs,
            opts,
            name=name if rnd == 0 else f"{name}-round{rnd + 1}",
            max_concurrent=conc,
            max_failures=max_failures,
            progress=progress,
        )
        outcomes.update(res)
        busy = [r for r in pending if res.get(r) is not None and res[r].status == "busy"]
        missing = [r for r in pending if r not in res]
        if missing:  # an interrupted fit() returns a partial grid
            interrupted["flag"] = True
            return outcomes
        if not busy or interrupted["flag"]:
            return outcomes
        for r in busy:
            lock = res[r].lock
            log.info("run %s is being trained by another launcher (%s); waiting outside Ray", r, lock)
            if lock:
                wait_for_lock(Path(lock))
        pending = [r for r in busy if exp.run(r).status() != "finished"]
        for r in busy:
            if r not in pending:
                progress.mark(r, finished=True)
        if not pending:
            return outcomes
    return outcomes


def _restore_unfinished(
    exp: ExperimentPaths,
    plan: Plan,
    opts: Any,
    progress: Any,
    max_concurrent: int | None,
    max_failures: int,
    info: Any,
    summary: Summary,
) -> None:
    """Restore (in order) the Tune experiments of a previous launch that still hold unfinished runs."""
    from suite.ray_glue.trials import can_restore, run_trials

    tune_dir = exp.ray_dir / "tune"
    if not tune_dir.is_dir():
        return
    names = sorted((p.name for p in tune_dir.iterdir() if p.is_dir()), key=_phase_key)
    for name in names:
        if not can_restore(exp.root, name):
            continue
        ids = _experiment_run_ids(tune_dir / name)
        if ids and all(exp.run(r).status() == "finished" for r in ids):
            continue
        log.info(
            "restoring the Tune experiment %s (%d runs, %d unfinished)",
            name,
            len(ids),
            sum(1 for r in ids if exp.run(r).status() != "finished"),
        )
        progress.phase = f"restoring {name}"
        progress.emit(force=True)
        try:
            run_trials(
                [],
                opts,
                name=name,
                max_concurrent=max_concurrent or 1,
                max_failures=max_failures,
                progress=progress,
                restore=True,
            )
        except Exception as e:  # noqa: BLE001 - an unrestorable Tune state: the run directories still hold the truth
            log.warning(
                "could not restore the Tune experiment %s (%s: %s); planning from the run directories",
                name,
                type(e).__name__,
                str(e).splitlines()[0] if str(e) else "",
            )
            continue
        summary.restored.append(name)


def _phase_key(name: str) -> tuple[int, int, str]:
    import re

    m = re.match(r"phase(\d+)(?:-round(\d+))?$", name)
    return (int(m.group(1)), int(m.group(2) or 1), name) if m else (10**6, 0, name)


def _experiment_run_ids(path: Path) -> list[str]:
    """Run ids of a Tune experiment folder (its trial folders are named by run id)."""
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


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
    write_json_atomic(
        exp.ray_dir / "last_launch.json",
        {**summary.to_dict(), "at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
    )
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


__all__ = ["run_experiment", "build_plan", "phases", "Plan", "Summary"]
