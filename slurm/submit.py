"""Submit an experiment to SLURM with submitit, in one of two modes, and wait for it.

**ray** (the main mode): one allocation, Ray inside. One submitit job (:class:`slurm.jobs.RayAllocationJob`)
runs the same Tune driver as ``suite tune``: on one node against a local Ray, on several nodes against a Ray
head + workers it starts over the allocation (``slurm.ray_cluster``).

**array**: no Ray. One array task per run (:class:`slurm.jobs.RunTask`), one array per dependency level of
the plan (``suite.planner``: level 0 = runs whose prerequisites are finished or that have none; level k + 1 =
the runs that need a level-k run), each submitted with ``--dependency=afterany:<previous array>``.
``afterany`` and not ``afterok``: a failed prerequisite must not leave its dependants pending forever; each
dependant checks its prerequisites' run directories and, when one is not finished, fails with a line that
names it and its log. ``--max-parallel`` caps simultaneous array tasks (submitit's ``array_parallelism``).

Re-submitting the same experiment submits only the runs that are not finished. Everything submitted is
recorded under ``RESULTS/<experiment>/slurm/`` (``slurm.ledger``); array mode records the launch in
experiment.json, ray mode leaves that to the driver inside the job.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces.expand import Expanded, expand
from slurm.jobs import RayAllocationJob, RunTask
from slurm.ledger import record_submission
from slurm.profiles import Profile, check_against_cluster, submitit_parameters
from slurm.sbatch import render_sbatch, sbatch_script
from suite.config import RunConfig
from suite.errors import InputError
from suite.experiment import now_iso, record_launch
from suite.experiment_spec import ExperimentSpec
from suite.paths import ExperimentPaths

log = logging.getLogger("slurm.submit")


@dataclass
class Submitted:
    """What one ``submit`` call did."""

    mode: str
    planned: Expanded
    levels: list[list[str]]  # unfinished run ids by dependency level (array mode: one array each)
    finished: list[str]  # runs already finished: submitted in no array
    jobs: list[Any] = field(default_factory=list)  # submitit jobs (array mode: one per run)
    job_ids: list[str] = field(default_factory=list)  # one per sbatch (array ids / the allocation id)
    run_of_job: dict[str, str] = field(default_factory=dict)  # array task id -> run_id
    submitted_at: float = 0.0
    dry_run_text: str = ""

    @property
    def exp(self) -> ExperimentPaths:
        return self.planned.exp

    def configs(self, level: int) -> list[RunConfig]:
        return [self.planned.plan.runs[r] for r in self.levels[level]]


def check_request(
    spec: ExperimentSpec, profile: Profile, mode: str, *, max_parallel: int | None, explicit_runs: bool
) -> None:
    """Refuse option combinations that a mode cannot honour (one line each, before anything is written)."""
    profile.check_mode(mode)
    if explicit_runs and mode != "array":
        raise InputError(
            "explicit run configs need --mode array (ray mode runs the space through the Tune driver)"
        )
    if max_parallel is not None:
        if mode != "array":
            raise InputError("--max-parallel applies to --mode array; use --max-concurrent for ray mode")
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
            raise InputError(f"--max-parallel {max_parallel}: must be a whole number >= 1")
    if mode == "array" and spec.ray_options_set():
        names = "/".join(f"--{k.replace('_', '-')}" for k in spec.ray_options_set())
        raise InputError(
            f"{names} apply to --mode ray; for --mode array set the resources of each task in the profile"
        )
    if mode == "ray":
        for key in ("address", "num_cpus"):
            if getattr(spec, key) is not None:
                raise InputError(
                    f"{key}={getattr(spec, key)!r}: set by the allocation job in --mode ray; drop it"
                )


def submit(
    spec: ExperimentSpec,
    profile: Profile,
    mode: str,
    *,
    dry_run: bool = False,
    max_parallel: int | None = None,
    check_cluster: bool = True,
    configs: list[RunConfig] | None = None,
    ray_port: int | None = None,
    simulate_nodes: int = 0,
) -> Submitted:
    """Submit ``spec`` in ``mode`` (``ray`` | ``array``) with ``profile``; with ``dry_run`` only render the
    sbatch script(s) and the job layout into ``Submitted.dry_run_text`` (nothing written, nothing submitted).

    ``configs`` (array mode) submits these run configs instead of the space's grid (their prerequisites are
    added as usual). ``ray_port`` / ``simulate_nodes``: see :class:`slurm.jobs.RayAllocationJob`."""
    check_request(spec, profile, mode, max_parallel=max_parallel, explicit_runs=configs is not None)
    if not dry_run and shutil.which("sbatch") is None:
        raise InputError(
            "sbatch not found: run on a SLURM login node (or start a local cluster with "
            "slurm/testing/start-local-cluster.sh), or use --dry-run"
        )
    planned = expand(spec.replace(launcher=f"slurm-{mode}"), configs)
    exp, plan = planned.exp, planned.plan
    finished = [r for r in plan.runs if exp.run(r).is_finished()]
    out = Submitted(mode=mode, planned=planned, levels=plan.levels(set(finished)), finished=finished)
    folder = exp.slurm_dir / "jobs" / "%j"
    name = f"suite-{exp.root.name}"
    if dry_run:
        out.dry_run_text = _layout_text(out, profile, folder, name, max_parallel)
        return out
    if check_cluster:
        check_against_cluster(profile)
    exp.root.mkdir(parents=True, exist_ok=True)
    out.submitted_at = time.time()
    if not out.levels:
        log.info("every run of %s is finished; nothing to submit", exp.root)
        return out
    if mode == "ray":
        _submit_allocation(out, profile, folder, name, ray_port, simulate_nodes)
    else:
        record_launch(
            exp, planned.record(), {"at": now_iso(), "launcher": "slurm-array", "profile": profile.name}
        )
        _submit_arrays(out, profile, folder, name, max_parallel)
    return out


def _executor(
    folder: Path,
    profile: Profile,
    mode: str,
    *,
    job_name: str,
    max_parallel: int | None,
    dependency: str | None,
) -> Any:
    from slurm.watch import WatchedSlurmExecutor

    python = profile.python or shlex.quote(sys.executable)
    ex = WatchedSlurmExecutor(folder=folder, max_num_timeout=profile.max_requeues, python=python)
    params = submitit_parameters(profile, mode, job_name=job_name, max_parallel=max_parallel)
    if dependency:
        params["dependency"] = dependency
    ex.update_parameters(**params)
    return ex


def _script(ex: Any, map_count: int | None) -> str:
    return sbatch_script(dict(ex.parameters), folder=ex.folder, python=ex.python, map_count=map_count)


def _submit_allocation(
    out: Submitted, profile: Profile, folder: Path, name: str, ray_port: int | None, simulate_nodes: int
) -> None:
    exp, spec = out.exp, out.planned.spec
    ex = _executor(folder, profile, "ray", job_name=f"{name}-ray", max_parallel=None, dependency=None)
    job = ex.submit(RayAllocationJob(), spec.to_dict(), ray_port, simulate_nodes)
    record_submission(
        exp,
        mode="ray",
        phase="allocation",
        job_id=job.job_id,
        parameters=dict(ex.parameters),
        profile=profile.to_dict(),
        script=_script(ex, None),
        tasks=[],
        spec=spec.to_dict(),
        extra={
            "log_out": str(job.paths.stdout),
            "log_err": str(job.paths.stderr),
            "runs": [r for level in out.levels for r in level],
        },
    )
    out.jobs, out.job_ids = [job], [job.job_id]
    log.info("submitted ray allocation job %s (logs %s)", job.job_id, job.paths.stdout)


def _submit_arrays(
    out: Submitted, profile: Profile, folder: Path, name: str, max_parallel: int | None
) -> None:
    exp, spec = out.exp, out.planned.spec
    dep = None
    for k in range(len(out.levels)):
        cfgs = out.configs(k)
        phase = str(k + 1)
        ex = _executor(
            folder,
            profile,
            "array",
            job_name=f"{name}-array{phase}",
            max_parallel=max_parallel,
            dependency=dep,
        )
        with ex.batch():
            jobs = [
                ex.submit(RunTask(), c.to_dict(include_derived=False), str(exp.root), k > 0) for c in cfgs
            ]
        array_id = jobs[0].job_id.split("_")[0]
        tasks = [
            {
                "run_id": c.run_id,
                "job_id": j.job_id,
                "log_out": str(j.paths.stdout),
                "log_err": str(j.paths.stderr),
            }
            for c, j in zip(cfgs, jobs, strict=True)
        ]
        record_submission(
            exp,
            mode="array",
            phase=phase,
            job_id=array_id,
            parameters=dict(ex.parameters),
            profile=profile.to_dict(),
            script=_script(ex, len(jobs)),
            tasks=tasks,
            spec=spec.to_dict(),
            extra={"dependency": dep},
        )
        log.info(
            "submitted array %s (phase %s: %d run(s)%s)",
            array_id,
            phase,
            len(jobs),
            f", after {dep}" if dep else "",
        )
        out.jobs += jobs
        out.job_ids.append(array_id)
        out.run_of_job.update({j.job_id: c.run_id for c, j in zip(cfgs, jobs, strict=True)})
        dep = f"afterany:{array_id}"


def _layout_text(out: Submitted, profile: Profile, folder: Path, name: str, max_parallel: int | None) -> str:
    todo = [r for level in out.levels for r in level]
    lines = [
        f"# dry run: nothing submitted; experiment {out.exp.root}",
        f"# profile {profile.name}: {profile.nodes} node(s), {profile.cpus_per_task} CPU(s)/task, "
        f"{profile.gpus_per_node} GPU(s)/node, mem {profile.mem or 'cluster default'}, time {profile.time}",
        f"# runs: {len(todo) + len(out.finished)} ({len(out.finished)} finished and skipped)",
    ]
    if out.mode == "ray":
        n = profile.nodes
        where = (
            "local to the job"
            if n == 1
            else f"head on the first host, {n - 1} worker(s) via srun --overlap --mem=0 -N1 -n1 -w HOST "
            "ray start"
        )
        lines += [f"# layout: 1 job, {n} node(s); Ray {where}"]
        lines += [f"# the job runs the suite tune driver for {len(todo)} run(s):"]
        lines += [f"#   {r}" for r in todo]
        lines += ["", render_sbatch(profile, "ray", folder=folder, job_name=f"{name}-ray")]
        return "\n".join(lines)
    cap = max_parallel or profile.array_parallelism
    for k, level in enumerate(out.levels):
        what = "runs without prerequisites" if k == 0 else f"runs that need phase {k}"
        after = f", --dependency=afterany:<array {k}>" if k else ""
        lines.append(f"# array {k + 1}: {len(level)} task(s), {what}, at most {cap} at once{after}")
        lines += [f"#   [{i}] {r}" for i, r in enumerate(level)]
    for k, level in enumerate(out.levels):
        lines += [
            "",
            f"# ---- sbatch script of array {k + 1}",
            render_sbatch(
                profile,
                "array",
                folder=folder,
                job_name=f"{name}-array{k + 1}",
                array_size=len(level),
                max_parallel=max_parallel,
                dependency=f"afterany:<array {k} job id>" if k else None,
            ),
        ]
    if not out.levels:
        lines.append("# nothing to submit: every run is finished")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- waiting
@dataclass
class Outcome:
    run_id: str
    job_id: str
    ok: bool
    status: str  # run directory status after the job
    error: str = ""
    log: str = ""


def wait(sub: Submitted, timeout_s: float | None = None) -> list[Outcome]:
    """Wait for every job of ``sub``; a job that dies without a result is reported (never waited on forever:
    the queue and the completion log stand in for ``sacct``). One failure does not stop the others."""
    deadline = None if timeout_s is None else time.time() + timeout_s
    outcomes: list[Outcome] = []
    pending = list(sub.jobs)
    while pending:
        still = []
        for job in pending:
            if job.done():
                outcomes.append(_outcome(job, sub))
            else:
                still.append(job)
        pending = still
        if pending:
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(
                    f"{len(pending)} job(s) still running after {timeout_s:.0f}s: "
                    f"{', '.join(j.job_id for j in pending)}"
                )
            time.sleep(1.0)
    return outcomes


def _settled_state(job_id: str, state: str, timeout_s: float = 15.0) -> str:
    """The job's final SLURM state once it leaves RUNNING/COMPLETING (a job stopped by ``scancel`` can write
    its result while it is still COMPLETING: report CANCELLED, not the transient state), or ``state``."""
    from slurm.watch import FINAL_STATES, read_squeue

    deadline = time.time() + timeout_s
    while True:
        try:
            raw = read_squeue([job_id]).get(job_id, {}).get("RawState", "")
        except (OSError, subprocess.SubprocessError):
            return state
        if raw and raw.split()[0].upper() in FINAL_STATES:
            return raw
        if not raw or time.time() > deadline:
            return raw or state
        time.sleep(0.5)


def _outcome(job: Any, sub: Submitted) -> Outcome:
    from submitit.core.utils import FailedJobError, UncompletedJobError

    exp = sub.exp
    run_id = sub.run_of_job.get(job.job_id, "")
    try:
        res = job.result()
    except (FailedJobError, UncompletedJobError) as e:
        first = [ln for ln in str(e).splitlines() if ln.strip()]
        err = next((ln for ln in reversed(first) if "Error" in ln), first[0] if first else repr(e))
        status = exp.run(run_id).status() if run_id else "failed"
        return Outcome(
            run_id, job.job_id, ok=False, status=status, error=err.strip(), log=str(job.paths.stderr)
        )
    if not run_id:  # the ray allocation: the driver's summary says whether every run finished
        ok = bool(res.get("ok")) if isinstance(res, dict) else False
        runs = res.get("runs", {}) if isinstance(res, dict) else {}
        bad = sorted(r for r, s in runs.items() if s != "finished")
        return Outcome(
            "",
            job.job_id,
            ok=ok,
            status="finished" if ok else "incomplete",
            error="" if ok else f"{len(bad)} run(s) not finished: {', '.join(bad[:5])}",
            log=str(job.paths.stdout),
        )
    status = exp.run(run_id).status()
    state = job.watcher.get_info(job.job_id, mode="cache").get("RawState", "") or job.state
    if status != "finished":
        state = _settled_state(job.job_id, state)
    return Outcome(
        run_id,
        job.job_id,
        ok=status == "finished",
        status=status,
        error="" if status == "finished" else f"job {job.job_id} ended {state} with the run {status}",
        log=str(job.paths.stdout),
    )
