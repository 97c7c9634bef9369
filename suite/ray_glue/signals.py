"""Processes the suite starts for Ray never act on SLURM's preemption signal; only submitit's process does."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# the signal SLURM sends before a time limit or on preemption (submitit's `--signal=USR2@90`; a manual
# `scancel --signal=USR2`). SLURM delivers it to every process of the job step, not only to submitit's.
PREEMPTION_SIGNAL = signal.SIGUSR2


@contextlib.contextmanager
def preemption_signal_blocked() -> Iterator[None]:
    """Processes started inside this block never act on SLURM's preemption signal: it is blocked in this
    thread while they start, and a blocked signal stays blocked across fork and exec (Ray's GCS, raylet,
    dashboard, and the workers the raylet starts later all inherit it). This process gets it again, with any
    that arrived meanwhile still pending, when the block ends.

    Without it the signal kills them (its default action) within milliseconds, the Ray core worker in the
    driver then ends the driver's process (exit 1, no Python exception), and whether submitit's handler in
    that process has requeued the job by then is a race: lost, the job ends FAILED without a result instead of
    being requeued. Only the submitit process should act on the signal (checkpoint, requeue); Ray ends with
    the job. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {PREEMPTION_SIGNAL})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
