"""The record of what was submitted: ``RESULTS/<experiment>/slurm/submissions.jsonl`` (one JSON line per
sbatch: time, mode, phase, job id, parameters, profile, spec, log paths, the run of every array task) and
``slurm/sbatch/<job>.sh`` (the exact script). ``suite slurm status`` and the array tasks read it back to
name the job and log that belong to a run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from suite.atomic import write_text_atomic
from suite.experiment import now_iso
from suite.paths import ExperimentPaths

LEDGER = "submissions.jsonl"


def jsonable(x: Any) -> Any:
    """``x`` when it is JSON-serialisable, else its ``repr`` (the ledger never fails on a parameter)."""
    try:
        json.dumps(x)
        return x
    except (TypeError, ValueError):
        return repr(x)


def read_ledger(exp: ExperimentPaths) -> list[dict[str, Any]]:
    """Every submission of the experiment, oldest first (a damaged line is skipped)."""
    path = exp.slurm_dir / LEDGER
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def run_jobs(exp: ExperimentPaths) -> dict[str, dict[str, Any]]:
    """The latest array task of each run: ``{run_id: {job_id, log_out, log_err, submitted_at}}``."""
    out: dict[str, dict[str, Any]] = {}
    for sub in read_ledger(exp):
        for task in sub.get("tasks", []):
            out[task["run_id"]] = {**task, "submitted_at": sub.get("submitted_at"), "mode": sub.get("mode")}
    return out


def run_log_hint(exp: ExperimentPaths, run_id: str) -> str:
    """The run's own log when it has one, else the log of the array task that was to run it."""
    rp = exp.run(run_id)
    if rp.log.exists():
        return str(rp.log)
    entry = run_jobs(exp).get(run_id)
    return entry["log_err"] if entry else str(rp.log)


def record_submission(
    exp: ExperimentPaths,
    *,
    mode: str,
    phase: str,
    job_id: str,
    parameters: dict[str, Any],
    profile: dict[str, Any],
    script: str,
    tasks: list[dict[str, Any]],
    spec: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``sbatch/<job_id>.sh`` and append one line to the ledger (flushed to disk)."""
    sbatch_path = exp.slurm_dir / "sbatch" / f"{job_id}.sh"
    write_text_atomic(sbatch_path, script)
    entry = {
        "submitted_at": now_iso(),
        "mode": mode,
        "phase": phase,
        "job_id": job_id,
        "sbatch": str(sbatch_path),
        "parameters": jsonable(parameters),
        "profile": profile,
        "spec": jsonable(spec),
        "tasks": tasks,
        "command": ["suite", *sys.argv[1:]] if Path(sys.argv[0]).name == "suite" else sys.argv,
        **(extra or {}),
    }
    path = exp.slurm_dir / LEDGER
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
