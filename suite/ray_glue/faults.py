"""Test-only fault injection: a run's process exits hard right after an epoch's checkpoint.

``SUITE_TEST_CRASH="<substring>@<epoch>[@<rank>];..."`` makes the process of a run whose id contains
``<substring>`` exit hard (``os._exit``) right after epoch ``<epoch>``'s checkpoint, on rank ``<rank>``
(default 0), once per run (marker files in ``SUITE_TEST_CRASH_MARKER_DIR``, default
``<experiment>/runs/.crash-markers``). Read in the trial/worker process: set it before Ray starts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from suite.paths import RunPaths

log = logging.getLogger("suite.ray_glue")

CRASH_ENV = "SUITE_TEST_CRASH"
CRASH_MARKER_ENV = "SUITE_TEST_CRASH_MARKER_DIR"


def maybe_crash(epoch: int, paths: RunPaths, rank: int) -> None:
    """Test-only fault injection (see the module docstring)."""
    spec = os.environ.get(CRASH_ENV, "").strip()
    if not spec:
        return
    hit = False
    for entry in spec.split(";"):
        parts = entry.strip().split("@")
        if len(parts) < 2:
            continue
        match, at, want_rank = parts[0], int(parts[1]), int(parts[2]) if len(parts) > 2 else 0
        if match in paths.run_id and at == epoch and want_rank == rank:
            hit = True
    if not hit:
        return
    marker_dir = Path(os.environ.get(CRASH_MARKER_ENV) or (paths.root.parent / ".crash-markers"))
    marker_dir.mkdir(parents=True, exist_ok=True)
    marker = marker_dir / f"{paths.run_id}.crashed"
    if marker.exists():
        return
    marker.write_text(f"epoch {epoch} pid {os.getpid()}\n")
    log.warning("%s: test fault injection: exiting the process after epoch %d", paths.run_id, epoch)
    os._exit(17)
