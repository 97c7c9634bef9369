"""The end user's first command: `make venv` (and so `make test`, `make demo`) on a disk too small for torch.

A full disk mid-install used to end in pip's ``OSError: [Errno 28] No space left on device`` after minutes,
with a half-built venv left behind; the Makefile now measures first and refuses in one line, exit 2,
creating nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_venv_on_a_disk_too_small_is_refused_in_one_line_and_creates_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "not" / "yet" / "venv"
    r = _make("venv", f"VENV={venv}", "VENV_FREE_GB=1000000000")
    assert r.returncode == 2
    ours = [ln for ln in r.stderr.splitlines() if "***" not in ln]
    assert len(ours) == 1, r.stderr
    assert f"{tmp_path} has " in ours[0] and "GiB free" in ours[0] and "VENV=DIR" in ours[0]
    assert not (tmp_path / "not").exists()  # nothing half-built


def test_the_check_passes_where_torch_is_already_installed_or_space_suffices(tmp_path: Path) -> None:
    """Re-installing over a venv that has torch (pyproject.toml changed) needs little space: no refusal."""
    venv = tmp_path / "venv"
    assert _make("venv-space", f"VENV={venv}", "VENV_FREE_GB=1000000000").returncode == 2
    (venv / "lib" / "python3.11" / "site-packages" / "torch").mkdir(parents=True)
    r = _make("venv-space", f"VENV={venv}", "VENV_FREE_GB=1000000000")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert _make("venv-space", f"VENV={tmp_path / 'other'}", "VENV_FREE_GB=0").returncode == 0
