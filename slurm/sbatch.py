"""The sbatch script of a submission, rendered with submitit's own (private) function.

submitit writes the script with ``submitit.slurm.slurm._make_sbatch_string(command=..., folder=...,
**parameters)`` and the command ``<python> -u -m submitit.core._submit <folder>``
(``SlurmExecutor._submitit_command_str``). The suite renders the same text for ``--dry-run`` and for the
record in ``slurm/sbatch/<job>.sh``; this module is the only place that calls the private function, and
tests/test_slurm_profiles.py checks that its text is byte for byte what submitit's executor writes (a test
that fails when submitit changes that private API).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from slurm.profiles import Profile, submitit_parameters


def submit_command(python: str, folder: str | Path) -> str:
    """The command submitit's script runs (the same string as ``SlurmExecutor._submitit_command_str``)."""
    return " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder))])


def sbatch_script(
    parameters: dict[str, Any], *, folder: str | Path, python: str, map_count: int | None = None
) -> str:
    """The script submitit writes for an executor with these ``parameters`` (``map_count`` > 1: an array)."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = dict(parameters)
    if map_count is not None and map_count > 1:
        params["map_count"] = map_count
    return _make_sbatch_string(command=submit_command(python, folder), folder=folder, **params)


def render_sbatch(
    profile: Profile,
    mode: str,
    *,
    folder: str | Path,
    python: str | None = None,
    job_name: str = "suite",
    array_size: int | None = None,
    max_parallel: int | None = None,
    dependency: str | None = None,
) -> str:
    """The sbatch script a submission with ``profile`` in ``mode`` gets (``--dry-run``: no executor)."""
    params = submitit_parameters(profile, mode, job_name=job_name, max_parallel=max_parallel)
    if dependency:
        params["dependency"] = dependency
    py = python or profile.python or shlex.quote(sys.executable)
    return sbatch_script(params, folder=folder, python=py, map_count=array_size)
