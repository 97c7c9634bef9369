"""The run lock: one file lock per run directory (``RunPaths.lock``), so that no two launchers ever train the
same run, and the rules every launcher follows around it.

* Training a run (rank 0 of :func:`suite.stages.runner.execute`) and writing into another run's directory (the
  proposals pseudo-labels in the FS run) happen inside :func:`holding`: a second process waits for the
  holder, then finds the run finished and skips it.
* A launcher that holds scarce resources (a Ray trial) never waits for a lock: it probes with
  :func:`busy_lock` (the run and its unfinished prerequisites, without blocking), gives the resources back
  when one is held, and waits with :func:`wait_for_lock` while holding nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from suite.config import RunConfig
from suite.paths import ExperimentPaths, RunPaths

log = logging.getLogger("suite.run_lock")

# how long holding() tries before it says that it is waiting for another process
_QUIET_WAIT_S = 0.5


@contextlib.contextmanager
def holding(paths: RunPaths) -> Iterator[None]:
    """Hold the lock of the run at ``paths`` for the block, waiting as long as another process holds it."""
    lock = FileLock(str(paths.lock))
    try:
        lock.acquire(timeout=_QUIET_WAIT_S)
    except Timeout:
        log.info("%s: another process holds %s; waiting for it", paths.run_id, paths.lock)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def busy_lock(cfg: RunConfig, experiment_root: str | os.PathLike) -> Path | None:
    """The lock file of an unfinished run (this one or a prerequisite) that another process holds, else None.

    Probes without blocking (acquire with timeout 0, release at once).
    """
    exp = ExperimentPaths(Path(experiment_root))
    for c in [*_all_prerequisites(cfg), cfg]:
        paths = exp.run(c.run_id)
        if paths.is_finished() or not paths.lock.exists():
            continue
        lock = FileLock(str(paths.lock))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return paths.lock
        else:
            lock.release()
    return None


def _all_prerequisites(cfg: RunConfig) -> list[RunConfig]:
    out: list[RunConfig] = []
    for pre in cfg.prerequisites():
        out.extend(_all_prerequisites(pre))
        out.append(pre)
    return out


def wait_for_lock(lock_path: Path, poll_s: float = 2.0, timeout_s: float | None = None) -> bool:
    """Block (holding nothing else) until ``lock_path`` is free; False on timeout."""
    t0 = time.monotonic()
    lock = FileLock(str(lock_path))
    while True:
        try:
            lock.acquire(timeout=poll_s)
        except Timeout:
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                return False
            continue
        lock.release()
        return True
