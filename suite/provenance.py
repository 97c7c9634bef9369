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
    """Installed versions, always from the package metadata: a module's ``__version__`` can carry a build
    tag the metadata lacks (torchvision ``0.29.1+cu130`` against ``0.29.1``), so mixing the two sources made
    one installation look like two."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for dist in ("torch", "torchvision", "numpy", "nibabel", "ray", "submitit", "pandas", "seaborn"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:  # optional package
            continue
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
