"""Job state without an accounting database: ``squeue`` and the job-completion log stand in for ``sacct``.

submitit asks ``sacct`` for the state of its jobs. On a cluster without ``slurmdbd`` (like the local test
cluster) ``sacct`` exits 1, submitit logs "Bypassing sacct error" and the state stays ``UNKNOWN``: a job that
dies before writing its result (``scancel``, out of memory, time limit without checkpoint) then makes
``job.result()`` wait forever.

:class:`QueueInfoWatcher` keeps submitit's interface and asks, in order:

1. ``sacct`` while it works (a real cluster with accounting: nothing changes);
2. ``squeue --states=all`` (every job slurmctld still remembers: ``MinJobAge`` after the end);
3. the ``jobcomp/filetxt`` completion log (``JobCompLoc`` from ``scontrol show config``), for jobs squeue has
   forgotten.

Non-final SLURM states that submitit does not know (CONFIGURING, SUSPENDED, REQUEUE_HOLD, ...) are mapped to
ones it treats as "not done", so that a job is reported done only when it really ended. A job that ended in a
failure state without a result file is reported after a 2 s grace instead of submitit's 15 s.

Use :class:`WatchedSlurmExecutor` (or :func:`executor`) instead of ``submitit.SlurmExecutor``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
import typing as tp
from pathlib import Path

from submitit.core import core, utils
from submitit.slurm import slurm as submitit_slurm

log = logging.getLogger("slurm.watch")

# states after which the job will not write anything any more (without its result file: a failure)
FAILED_STATES = {
    "CANCELLED",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "TIMEOUT",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
    "SPECIAL_EXIT",
}
FINAL_STATES = FAILED_STATES | {"COMPLETED"}
# SLURM states that are not final but unknown to submitit's "incomplete" list
_NOT_DONE = {
    "CONFIGURING": "RUNNING",
    "SIGNALING": "RUNNING",
    "STAGE_OUT": "RUNNING",
    "RESIZING": "RUNNING",
    "STOPPED": "RUNNING",
    "SUSPENDED": "PENDING",
    "REQUEUE_HOLD": "PENDING",
    "REQUEUE_FED": "PENDING",
    "RESV_DEL_HOLD": "PENDING",
    "UPDATE_DB": "RUNNING",
    "POWER_UP_NODE": "PENDING",
}
# PREEMPTED is left out on purpose: a preempted job with requeue enabled comes back (REQUEUED -> PENDING), and
# submitit treats PREEMPTED as not done.


def normalise_state(state: str) -> str:
    """``CANCELLED by 0`` → ``CANCELLED``; non-final states unknown to submitit → RUNNING/PENDING."""
    state = (state or "").split()[0].upper().rstrip("+") if state else ""
    return _NOT_DONE.get(state, state)


def _jobcomp_location() -> Path | None:
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    kind = re.search(r"^JobCompType\s*=\s*(\S+)", out.stdout, re.M)
    loc = re.search(r"^JobCompLoc\s*=\s*(\S+)", out.stdout, re.M)
    if kind and "filetxt" in kind.group(1) and loc:
        return Path(loc.group(1))
    return None


def read_squeue(job_ids: tp.Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """States of the jobs slurmctld still knows: ``{job_id: {"State", "NodeList", "Reason"}}``.

    Array tasks appear as ``<array id>_<task>`` (pending ones expanded with ``--array``); the plain job id of
    an array task is also keyed so that either spelling answers.
    """
    cmd = ["squeue", "--states=all", "--array", "--noheader", "--format=%i|%A|%T|%N|%r"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    wanted = None if job_ids is None else {j.split("_")[0] for j in job_ids}
    info: dict[str, dict[str, str]] = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 5:
            continue
        jid, raw_id, state, nodes, reason = parts
        if wanted is not None and jid.split("_")[0] not in wanted and raw_id not in wanted:
            continue
        entry = {
            "JobID": jid,
            "State": normalise_state(state),
            "RawState": state,
            "NodeList": nodes,
            "Reason": reason,
            "Source": "squeue",
        }
        info[jid] = entry
        info.setdefault(raw_id, entry)
    return info


def read_jobcomp(path: Path, job_ids: tp.Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """Final states from a ``jobcomp/filetxt`` log (the last line of a job wins: requeues append lines)."""
    wanted = None if job_ids is None else set(job_ids) | {j.split("_")[0] for j in job_ids}
    info: dict[str, dict[str, str]] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return info
    for line in text.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        jid = fields.get("JobId")
        if not jid:
            continue
        keys = [jid]
        if fields.get("ArrayJobId") and fields.get("ArrayTaskId") not in (None, "", "4294967294"):
            keys.append(f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}")
        if wanted is not None and not wanted.intersection(keys):
            continue
        entry = {
            "JobID": keys[-1],
            "State": normalise_state(fields.get("JobState", "")),
            "RawState": fields.get("JobState", ""),
            "NodeList": fields.get("NodeList", ""),
            "ExitCode": fields.get("ExitCode", ""),
            "Start": fields.get("StartTime", ""),
            "End": fields.get("EndTime", ""),
            "Source": "jobcomp",
        }
        for k in keys:
            info[k] = entry
    return info


class QueueInfoWatcher(submitit_slurm.SlurmInfoWatcher):
    """submitit's watcher with ``squeue`` and the completion log as state sources when ``sacct`` fails."""

    def __init__(self, delay_s: int = 10) -> None:
        super().__init__(delay_s=delay_s)
        self._sacct_works: bool | None = (
            None if os.environ.get("SUITE_SLURM_USE_SACCT", "1") != "0" else False
        )
        self._jobcomp: Path | None | bool = False  # False: not looked up yet

    def update_if_long_enough(self, mode: str) -> None:
        # submitit polls at 2, 4, 8, ... s after the last submission, then every delay_s
        if mode == "standard" and time.time() - self._last_status_check > self._delay_s:
            self.update()
            return
        super().update_if_long_enough(mode)

    def update(self) -> None:
        to_check = {x for x in self._registered - self._finished}
        if not to_check:
            return
        self._num_calls += 1
        info: dict[str, dict[str, str]] = {}
        if self._sacct_works is not False:
            command = self._make_command()
            try:
                if command is not None:
                    info = self.read_info(subprocess.check_output(command, stderr=subprocess.DEVNULL))
                self._sacct_works = True
            except (OSError, subprocess.SubprocessError):
                if self._sacct_works is None:
                    log.debug("sacct unavailable (no accounting database): using squeue and the jobcomp log")
                self._sacct_works = False
        if self._sacct_works is False:
            try:
                info = read_squeue(to_check)
            except (OSError, subprocess.SubprocessError) as e:
                log.warning("squeue failed (%s); job states may be stale", e)
            missing = {j for j in to_check if j not in info}
            if missing:
                if self._jobcomp is False:
                    self._jobcomp = _jobcomp_location()
                if isinstance(self._jobcomp, Path):
                    info.update(
                        {k: v for k, v in read_jobcomp(self._jobcomp, missing).items() if k in missing}
                    )
        self._info_dict.update(info)
        self._last_status_check = time.time()
        for job_id in to_check:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def is_done(self, job_id: str, mode: str = "standard") -> bool:
        state = self.get_state(job_id, mode=mode)
        return normalise_state(state) in FINAL_STATES


class WatchedSlurmJob(submitit_slurm.SlurmJob[core.R]):
    """A SlurmJob whose state comes from :class:`QueueInfoWatcher`; a failed job without a result file is
    reported after 2 s (submitit waits 15 s for a result file in case the filesystem is slow)."""

    watcher = QueueInfoWatcher(delay_s=int(os.environ.get("SUITE_SLURM_POLL_S", "10")))

    def _get_outcome_and_result(self) -> tuple[str, tp.Any]:
        state = normalise_state(self.watcher.get_state(self.job_id, mode="cache"))
        if state in FAILED_STATES and not self.paths.result_pickle.exists():
            deadline = time.time() + 2
            while time.time() < deadline and not self.paths.result_pickle.exists():
                time.sleep(0.2)
            if not self.paths.result_pickle.exists():
                raw_state = self.watcher.get_info(self.job_id, mode="cache").get("RawState", state)
                raise utils.UncompletedJobError(
                    f"Job {self.job_id} ended {raw_state} without a result; log: {self.paths.stderr}"
                )
        return super()._get_outcome_and_result()


class WatchedSlurmExecutor(submitit_slurm.SlurmExecutor):
    """``submitit.SlurmExecutor`` whose jobs (arrays included) use :class:`WatchedSlurmJob`."""

    job_class = WatchedSlurmJob

    def _internal_process_submissions(self, delayed_submissions):
        jobs = super()._internal_process_submissions(delayed_submissions)
        out = []
        for job in jobs:
            if isinstance(job, WatchedSlurmJob):
                out.append(job)
                continue
            # submitit builds array jobs as plain SlurmJob: rebuild them with our watcher
            w = WatchedSlurmJob(folder=self.folder, job_id=job.job_id, tasks=job._tasks)
            out.append(w)
        return out


def executor(folder: str | os.PathLike, **kwargs: tp.Any) -> WatchedSlurmExecutor:
    return WatchedSlurmExecutor(folder=Path(folder), **kwargs)


def poll_interval_s() -> float:
    return float(WatchedSlurmJob.watcher._delay_s)


__all__ = [
    "QueueInfoWatcher",
    "WatchedSlurmJob",
    "WatchedSlurmExecutor",
    "executor",
    "read_squeue",
    "read_jobcomp",
    "normalise_state",
    "FAILED_STATES",
    "FINAL_STATES",
]
