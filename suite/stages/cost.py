"""What a run costs: CPU-seconds, device-seconds, wall seconds, peak memory and the device.

One :class:`CostMeter` per run directory and session (:func:`suite.stages.runner.execute` starts it before
the stage is built, so data loading, pseudo-labels, the epochs and the final predictions all count). Its
totals go into ``checkpoint_last.pt`` (``"cost"``) at every checkpoint and into ``summary.json`` (``"cost"``)
at the end; a resumed session starts from the checkpoint's totals, so a resumed run's cost is the sum of its
sessions.
Work done after a session's last checkpoint and then lost (a crash, a kill) is not counted: it is not part of
the run that finished, the same rule as ``wall_time_s``.

Fields (the contract ``analysis.cost`` reads):

* ``cpu_seconds``: user + system CPU time of the process (all its threads) and of the child processes it
  waited for, summed over the ranks under DDP (an all-reduce: every rank measures its own);
* ``wall_seconds``: elapsed time of the sessions; ``device_seconds``: ``wall_seconds × world_size ×
  device_share`` (one device per rank: GPU-seconds on CUDA, core-group-seconds on CPU; ``device_share``: the
  fraction of a GPU the run held where a launcher packed several runs on one, e.g. Ray Tune trials with
  ``--gpus-per-trial 0.25``; 1 otherwise and always on CPU);
* ``peak_rss_mb``: the largest resident set of one rank's process during the run (Linux resets the high-water
  mark through ``/proc/self/clear_refs`` when the run starts; elsewhere it is the process's lifetime peak,
  ``peak_rss_scope: "process"``, an upper bound when one process ran several runs);
* ``peak_device_mb``: ``torch.cuda.max_memory_allocated`` of the largest rank (``None`` on CPU);
* ``device``: ``"cpu"`` or ``"cuda:<GPU name>"``; ``world_size``; ``segments``: sessions summed.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from suite.stages import process_group as pg

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _usage() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its waited-for children, user + system)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _reset_peak_rss() -> str:
    """Reset the process's peak-RSS mark where the OS allows it: ``"run"`` when reset, else ``"process"``."""
    try:
        _CLEAR_REFS.write_text("5")  # Linux >= 4.0: "5" resets VmHWM only
        return "run"
    except OSError:
        return "process"


def _peak_rss_mb() -> float:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, kB on Linux


def device_name(device: torch.device) -> str:
    """``cpu`` or ``cuda:<GPU name>`` (what the cost table groups by)."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


class CostMeter:
    """The cost of one run: this session's measurements on top of the earlier sessions' totals."""

    def __init__(self, device: torch.device, world: int, share: float = 1.0) -> None:
        self.device = device
        self.world = int(world)
        # a CPU run's device is its process's cores, not a share of a GPU
        self.share = float(share) if device.type == "cuda" and 0.0 < share < 1.0 else 1.0
        self.earlier: dict[str, Any] = {}
        self.rss_scope = _reset_peak_rss()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.wall0, self.cpu0 = _usage()

    def resume(self, earlier: dict[str, Any] | None) -> None:
        """Add the totals a checkpoint carried (``None``: a checkpoint from before cost was recorded)."""
        self.earlier = dict(earlier or {})

    def totals(self) -> dict[str, Any]:
        """The run's cost so far. Under DDP a collective: call it on every rank."""
        wall, cpu = _usage()
        session_wall = wall - self.wall0
        rss = _peak_rss_mb()
        dev_mb = torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None
        t = torch.tensor([cpu - self.cpu0], dtype=torch.float64)
        session_cpu = float(pg.all_reduce_sum(t)[0])
        peaks = pg.all_reduce_max(torch.tensor([rss, dev_mb or 0.0], dtype=torch.float64))
        rss, dev_mb = float(peaks[0]), (float(peaks[1]) if dev_mb is not None else None)
        e = self.earlier
        name = device_name(self.device)
        devices = [d for d in str(e.get("device", "")).split(" + ") if d]
        return {
            "cpu_seconds": float(e.get("cpu_seconds", 0.0)) + session_cpu,
            "wall_seconds": float(e.get("wall_seconds", 0.0)) + session_wall,
            "device_seconds": float(e.get("device_seconds", 0.0)) + session_wall * self.world * self.share,
            "device_share": self.share,
            "peak_rss_mb": max(float(e.get("peak_rss_mb") or 0.0), rss),
            "peak_rss_scope": "process" if "process" in (self.rss_scope, e.get("peak_rss_scope")) else "run",
            "peak_device_mb": _max_or_none(e.get("peak_device_mb"), dev_mb),
            "device": " + ".join(dict.fromkeys([*devices, name])),  # a run resumed elsewhere names both
            "world_size": self.world,
            "segments": int(e.get("segments", 0)) + 1,
        }


def _max_or_none(a: float | None, b: float | None) -> float | None:
    vals = [float(v) for v in (a, b) if v is not None]
    return max(vals) if vals else None
