"""Provenance: git sha, versions, host, SLURM ids (for env.json and experiment.json)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path


def git_sha(cwd: str | Path | None = None) -> str:
    cwd = Path(cwd) if cwd else Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip() if out.returncode == 0 else ""
        if sha:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for mod in ("torch", "torchvision", "numpy", "nibabel", "ray", "submitit", "pandas", "seaborn"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                from importlib.metadata import version

                out[mod] = version(mod)
            except Exception:  # noqa: BLE001 - optional package
                continue
        else:
            out[mod] = getattr(m, "__version__", "?")
    return out


def environment(world_size: int = 1) -> dict[str, object]:
    env: dict[str, object] = {
        "git_sha": git_sha(),
        "versions": versions(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "world_size": world_size,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "launcher": os.environ.get("SUITE_LAUNCHER", "local"),
    }
    try:
        import torch

        env["cuda"] = torch.version.cuda
        env["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return env
