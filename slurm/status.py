"""``suite slurm status RESULTS/<experiment>``: progress from the run directories and the queue.

A run is *finished* when its directory has ``summary.json`` (whoever ran it), *failed* when it has
``failed.json`` or when the job that was to run it ended (any final SLURM state) without finishing it,
*running* while its job runs, *queued* while its job is pending, and *partial* when it was started and no job
of this experiment is working on it now (re-submitting resumes it). Failed runs are listed with their logs:
the run's own ``run.log`` and the SLURM job's log.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm.ledger import read_ledger
from slurm.watch import FINAL_STATES, _jobcomp_location, normalise_state, read_jobcomp, read_squeue
from suite.errors import InputError
from suite.paths import ExperimentPaths

ORDER = ("finished", "running", "queued", "partial", "failed", "absent")


@dataclass
class RunState:
    run_id: str
    state: str  # one of ORDER
    job_id: str = ""
    job_state: str = ""
    logs: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class ExperimentStatus:
    root: Path
    runs: dict[str, RunState]
    jobs: dict[str, str]  # job id → state ("" when unknown)
    queue_error: str = ""

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(ORDER, 0)
        for r in self.runs.values():
            out[r.state] += 1
        return out


def _job_states(job_ids: list[str]) -> tuple[dict[str, dict[str, str]], str]:
    if not job_ids:
        return {}, ""
    info: dict[str, dict[str, str]] = {}
    err = ""
    try:
        info = read_squeue(job_ids)
    except (OSError, subprocess.SubprocessError) as e:
        err = f"squeue unavailable ({type(e).__name__}); job states from the completion log only"
    missing = [j for j in job_ids if j not in info]
    if missing:
        loc = _jobcomp_location()
        if loc is not None:
            info.update({k: v for k, v in read_jobcomp(loc, missing).items() if k in missing})
    return info, err


def collect(root: str | Path) -> ExperimentStatus:
    exp = ExperimentPaths(Path(root))
    if not exp.root.is_dir():
        raise InputError(f"{exp.root}: no such experiment folder; give RESULTS/<experiment>")
    ledger = read_ledger(exp)
    if not ledger and not exp.runs_dir.is_dir():
        raise InputError(
            f"{exp.root}: neither runs/ nor slurm/{'submissions.jsonl'}; is this an experiment folder?"
        )
    # which job is (last) responsible for which run
    owner: dict[str, dict[str, Any]] = {}
    job_ids: list[str] = []
    for sub in ledger:
        if sub.get("mode") == "ray":
            job_ids.append(sub["job_id"])
            for rid in sub.get("runs", []):
                owner[rid] = {
                    "job_id": sub["job_id"],
                    "log_out": sub.get("log_out", ""),
                    "log_err": sub.get("log_err", ""),
                }
        for task in sub.get("tasks", []):
            job_ids.append(task["job_id"])
            owner[task["run_id"]] = task
    info, qerr = _job_states(job_ids)
    runs: dict[str, RunState] = {}
    names = {p.run_id for p in exp.all_runs()} | set(owner)
    for rid in sorted(names):
        rp = exp.run(rid)
        disk = rp.status()
        own = owner.get(rid, {})
        jid = own.get("job_id", "")
        jstate = normalise_state(info.get(jid, {}).get("State", "")) if jid else ""
        raw = info.get(jid, {}).get("RawState", jstate) if jid else ""
        logs = [str(rp.log)] if rp.log.exists() else []
        if own.get("log_err"):
            logs.append(own["log_err"])
        st = RunState(rid, disk, jid, raw, logs)
        if disk == "finished":
            st.state = "finished"
        elif disk == "failed":
            st.state = "failed"
            try:
                st.error = json.loads(rp.failed.read_text()).get("error", "")
            except (OSError, ValueError):
                pass
        elif jstate in ("RUNNING", "COMPLETING"):
            st.state = "running"
        elif jstate in ("PENDING", "REQUEUED", "PREEMPTED"):
            st.state = "queued"
        elif jstate in FINAL_STATES:
            st.state = "failed"
            st.error = f"job {jid} ended {raw} without finishing the run"
        else:
            st.state = "partial" if disk == "partial" else "absent"
        runs[rid] = st
    jobs = {j: info.get(j, {}).get("RawState", "") for j in dict.fromkeys(job_ids)}
    return ExperimentStatus(exp.root, runs, jobs, qerr)


def format_status(st: ExperimentStatus, verbose: bool = False) -> str:
    c = st.counts()
    total = len(st.runs)
    lines = [
        f"{st.root}: {total} run(s): "
        + ", ".join(f"{c[k]} {k}" for k in ORDER if c[k] or k in ("finished", "running", "failed"))
    ]
    if st.queue_error:
        lines.append(f"note: {st.queue_error}")
    failed = [r for r in st.runs.values() if r.state == "failed"]
    if failed:
        lines.append("failed runs:")
        for r in failed:
            lines.append(f"  {r.run_id}  job {r.job_id or '-'} {r.job_state}  {r.error}".rstrip())
            for lg in r.logs:
                lines.append(f"      log: {lg}")
    if verbose:
        lines.append("runs:")
        for r in st.runs.values():
            lines.append(f"  {r.state:<9} {r.run_id}  job {r.job_id or '-'} {r.job_state}".rstrip())
    if st.jobs:
        active = {j: s for j, s in st.jobs.items() if normalise_state(s) not in FINAL_STATES}
        lines.append(
            f"jobs: {len(st.jobs)} submitted, {len(active)} in the queue"
            + (
                ": " + ", ".join(f"{j} {s or 'UNKNOWN'}" for j, s in list(active.items())[:20])
                if active
                else ""
            )
        )
    return "\n".join(lines)


__all__ = ["collect", "format_status", "ExperimentStatus", "RunState"]
