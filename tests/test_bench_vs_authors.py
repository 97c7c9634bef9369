"""``scripts/bench_vs_authors.py`` times what it names: each tree imports its own ``suite``, and no earlier
benchmark's runs are reported as new."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    path = ROOT / "scripts" / "bench_vs_authors.py"
    spec = importlib.util.spec_from_file_location("bench_vs_authors", path)
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


def test_a_work_folder_with_an_earlier_benchmark_is_refused(tmp_path, capsys):
    """Finished runs in ``--work`` are skipped, not timed: their old epoch times would come out as new."""
    bench = _script()
    (tmp_path / "suite" / "now-r0").mkdir(parents=True)
    argv = ["--data", "D", "--authors", "A", "--their-python", "P", "--work", str(tmp_path)]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "earlier benchmark" in err and "another --work" in err
