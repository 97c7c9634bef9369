"""``scripts/bench_vs_authors.py`` times the suite of a given checkout: each side imports its own ``suite``."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("bench_vs_authors", ROOT / "scripts" / "bench_vs_authors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_baseline_tree_runs_its_own_suite(tmp_path, monkeypatch):
    """Started from this checkout (the working folder the script is run from), the baseline's ``suite``
    must still be the one imported: ``python -m`` puts the working folder ahead of ``PYTHONPATH``."""
    bench = _script()
    tree = tmp_path / "before"
    (tree / "suite").mkdir(parents=True)
    (tree / "suite" / "__init__.py").write_text("")
    (tree / "suite" / "__main__.py").write_text("import suite\nprint('imported', suite.__file__)\n")
    monkeypatch.chdir(ROOT)
    log = tmp_path / "log.txt"
    bench.run_suite(tree, ["run", "--out", "x"], tmp_path / "out", log)
    assert f"imported {os.path.join(tree, 'suite', '__init__.py')}" in log.read_text()
