"""What a partial install can do: ``suite report`` on a machine that only reads results.

``pip install .`` installs everything; these check the import-time split that lets a laptop with only the
analysis dependencies (numpy, pandas, scipy, matplotlib, seaborn, PyYAML) read an experiment, and that a
missing package ends in one line naming the requirement to install. Each check runs in a fresh interpreter:
this test process may already hold Ray or torch from other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from suite.errors import missing_dependency
from suite.testing.synthetic_runs import write_experiment, write_run

HEAVY = ("ray", "submitit", "torch", "nibabel")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("laptop") / "exp"
    write_experiment(root, cohort="phantom")
    for seed in (0, 1):
        write_run(root, stage="regressor", n_labeled=5, seed=seed, epochs=4)
        for method in ("fs", "proposed"):
            write_run(root, method=method, n_labeled=5, seed=seed, epochs=6, stat_window=3, dice=0.5)
    return root


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_suite_report_never_imports_ray_submitit_or_torch(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    code = (
        "import json, sys\n"
        "from suite.cli import main\n"
        f"rc = main(['report', {str(results)!r}, '--out', {str(out)!r}, '-q'])\n"
        f"print(json.dumps({{'rc': rc, 'loaded': sorted(m for m in {HEAVY!r} if m in sys.modules)}}))\n"
    )
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res == {"rc": 0, "loaded": []}, res
    assert (out / "report.md").is_file()


def test_missing_package_is_one_line_naming_the_requirement(results: Path, tmp_path: Path) -> None:
    # a None entry in sys.modules makes `import pandas` raise ModuleNotFoundError, as if it were not installed
    code = (
        "import sys\n"
        "sys.modules['pandas'] = None\n"
        "from suite.cli import main\n"
        f"sys.exit(main(['report', {str(results)!r}, '--out', {str(tmp_path / 'r')!r}]))\n"
    )
    proc = _python(code, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: suite report: needs the Python package 'pandas'"), line
    assert "pip install 'pandas>=" in line and "Traceback" not in proc.stderr


def test_missing_dependency_names_the_declared_requirement() -> None:
    ray = missing_dependency(ModuleNotFoundError(name="ray.tune"))
    assert ray is not None and "pip install 'ray[" in str(ray) and ray.exit_code == 2
    yaml = missing_dependency(ModuleNotFoundError(name="yaml"))
    assert yaml is not None and "'PyYAML'" in str(yaml)
    assert missing_dependency(ModuleNotFoundError(name="suite.nope")) is None  # our own module: a bug
