"""``suite archive SRC DEST``: keep an experiment's finished runs as records, without their checkpoints.

A run directory is a place to resume from, not a place to keep results: its checkpoints are megabytes a
run (a `repro` Oracle run: 8.3 MB of checkpoints beside 0.4 MB of records), and the machine or the cluster
scratch that holds it may be gone next week. The archive is an experiment folder (``experiment.json`` and
``runs/<run_id>/``) that holds each finished run's record (``RunPaths.record_files``: config, env, every
epoch's metrics, the held-out evaluation, the log, the summary with its cost) and nothing else, so it can be
committed, copied off a cluster or added to over several sessions; ``suite report DEST`` reads it like the
experiment itself.

* Only finished runs are archived; partial and failed runs stay where they are (they resume there).
* A run already in DEST with the same bytes is skipped. One whose files differ is refused before anything
  is written: the same run id finished twice with different numbers (on another CPU, which rounds
  differently) is two results, and keeping either silently would hide the other.
* ``experiment.json`` is merged as a launch is (``suite.experiment``): the identity (space, preset, data
  hash, overrides, search) must be the archive's, and the runs, seeds and launches add up.
* Files are moved in with :func:`suite.atomic.suite_outputs`: nothing in DEST that the suite did not write
  is replaced (a README beside the records stays) and each file arrives whole. The moves are not one
  transaction: an archive killed part-way can leave a run in DEST without all its files, or an
  experiment.json the manifest does not list yet (the next archive then refuses it: delete DEST's
  experiment.json and archive again).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from suite.atomic import suite_outputs, write_json_atomic
from suite.errors import InputError
from suite.experiment import MAX_LAUNCHES, ExperimentRecord, read_record
from suite.paths import ExperimentPaths


@dataclass
class ArchivePlan:
    """What :func:`archive` copies (run id -> files, relative to the run) and what it leaves."""

    new: dict[str, list[str]] = field(default_factory=dict)  # runs to copy, or to complete, and their files
    present: list[str] = field(default_factory=list)  # finished runs already in DEST, the same bytes
    not_finished: dict[str, str] = field(default_factory=dict)  # run id -> partial | failed
    record: ExperimentRecord | None = None  # the merged experiment.json (None: the source has none)
    bytes: int = 0

    def summary(self, src: Path, dest: Path, done: bool = True) -> str:
        left = ""
        if self.not_finished:
            kinds = sorted(set(self.not_finished.values()))
            counts = ", ".join(f"{list(self.not_finished.values()).count(k)} {k}" for k in kinds)
            left = f"; {counts} not archived (they resume in {src})"
        return (
            f"{len(self.new)} run(s) {'archived' if done else 'to archive'} to {dest} "
            f"({self.bytes / 1e6:.2f} MB), "
            f"{len(self.present)} already there{left}"
        )


def plan_archive(src: str | Path, dest: str | Path) -> ArchivePlan:
    """Check everything and decide what to copy; writes nothing (``InputError`` on any conflict)."""
    src_exp, dest_exp = ExperimentPaths(Path(src)), ExperimentPaths(Path(dest))
    if not src_exp.runs_dir.is_dir():
        raise InputError(
            f"{src_exp.root}: not an experiment folder (no runs/); give RESULTS/<experiment> as written by "
            "suite run, tune or slurm"
        )
    if dest_exp.root.exists() and not dest_exp.root.is_dir():
        raise InputError(
            f"DEST {dest_exp.root}: exists and is not a folder; give a folder (created when missing)"
        )
    s, d = src_exp.root.resolve(), dest_exp.root.resolve()
    # inside SRC, DEST would share a folder with SRC's own outputs (runs/, report/: `suite report` replaces
    # the files it wrote there)
    if d.is_relative_to(s):
        raise InputError(
            f"DEST {dest_exp.root}: is inside the experiment {src_exp.root}; give a folder outside it"
        )
    plan = ArchivePlan()
    for rp in src_exp.all_runs():
        status = rp.status()
        if status != "finished":
            if status in ("partial", "failed"):
                plan.not_finished[rp.run_id] = status
            continue
        target = dest_exp.run(rp.run_id)
        files = []
        for path in rp.record_files:
            if not path.is_file():
                continue
            there = target.root / path.name
            if there.exists():
                if there.read_bytes() != path.read_bytes():
                    raise InputError(
                        f"{there}: differs from {path} (the same run finished twice with different results, "
                        f"e.g. on another machine); archive into another folder, or delete {target.root} "
                        "to keep the new one"
                    )
                continue
            files.append(path.name)
            plan.bytes += path.stat().st_size
        if files:
            plan.new[rp.run_id] = files
        else:
            plan.present.append(rp.run_id)
    plan.record = _merged_record(src_exp, dest_exp)
    return plan


def _merged_record(src: ExperimentPaths, dest: ExperimentPaths) -> ExperimentRecord | None:
    new = read_record(src)
    if new is None:
        return None
    old = read_record(dest) if dest.experiment.exists() else None
    if old is None:
        return new
    clash = new.identity_clash(old)
    if clash is not None:
        key, was, now = clash
        raise InputError(
            f"{dest.experiment}: archives an experiment with {key}={was!r}, {src.root} has {now!r}; "
            "archive it into another folder"
        )
    merged = new.merged_into(old, source=str(dest.experiment))
    # archiving again brings the source's launches again: keep each launch once, in order, before the cut
    seen: set[str] = set()
    launches = []
    for launch in [*old.launches, *new.launches]:
        key = json.dumps(launch, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            launches.append(launch)
    merged.launches = launches[-MAX_LAUNCHES:]
    return merged


def archive(src: str | Path, dest: str | Path) -> ArchivePlan:
    """Copy the finished runs' records of experiment ``src`` into ``dest`` (see the module docstring);
    returns what was done."""
    plan = plan_archive(src, dest)
    src_exp, dest_exp = ExperimentPaths(Path(src)), ExperimentPaths(Path(dest))
    if not plan.new and (plan.record is None or not plan.present):
        return plan  # nothing finished to keep: DEST is not made an experiment folder without runs
    # only files missing from DEST are staged (those present were checked equal), so a record copied there
    # by hand is never replaced; experiment.json is replaced when the suite wrote it
    with suite_outputs(dest_exp.root, "DEST", keep_previous=True) as stage:
        for run_id, names in plan.new.items():
            for name in names:
                target = stage / "runs" / run_id / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src_exp.run(run_id).root / name, target)
        if plan.record is not None:
            write_json_atomic(stage / "experiment.json", plan.record.to_dict())
    return plan
