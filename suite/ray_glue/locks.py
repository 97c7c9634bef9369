"""Run-lock probes made around Ray: a trial never waits while holding its resources."""

from __future__ import annotations

import os
import time
from pathlib import Path

from suite.config import RunConfig
from suite.paths import ExperimentPaths


def busy_lock(cfg: RunConfig, experiment_root: str | os.PathLike) -> Path | None:
    """The lock file of an unfinished run (this one or a prerequisite) that another process holds, else None.

    Probes without blocking (acquire with timeout 0, release at once).
    """
    from filelock import FileLock, Timeout

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
    """Block (outside Ray, holding nothing) until ``lock_path`` is free; False on timeout."""
    from filelock import FileLock, Timeout

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
