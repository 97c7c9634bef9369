"""The report's "Leaving the collapse, per seed": per run its collapsed epochs, the epoch from which it stays
out, the epoch its 10-epoch mean reaches its FS's (from its first penalty epoch), on a synthetic experiment
whose answers are worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from suite.testing.synthetic_runs import write_experiment, write_run

E = 30
EP = np.arange(E)
FS = 0.44  # not 0.45: a 10-epoch mean of 0.5s and 0s must not tie it in floats


def _experiment(root: Path) -> Path:
    write_experiment(root, cohort="phantom")
    for s in (0, 1, 2):
        write_run(root, method="fs", seed=s, epochs=E, stat_window=5, dice=FS)
    # authors' start. s0: collapsed in epochs 0-4, then 0.5: the 10-epoch mean passes 0.44 when 9 of its 10
    # epochs are 0.5, at epoch 4 + 9 = 13. s1: collapsed throughout. s2: a dip after learning (epochs
    # 20-21) counts; 0.40 never reaches FS. s3: no FS of its seed
    authors = {
        0: np.where(EP < 5, 0.0, 0.5),
        1: np.full(E, 0.01),
        2: np.where((EP == 20) | (EP == 21), 0.02, 0.40),
        3: np.full(E, 0.5),
    }
    for s, dice in authors.items():
        write_run(root, method="oracle", seed=s, epochs=E, stat_window=5, dice=dice)
    # warm start: FS's own numbers for 10 epochs (which must not count as catching up), collapsed in 10-14,
    # then 0.5: from the first penalty epoch (10) the mean passes 0.44 at epoch 14 + 9 = 23
    warm = np.select([EP < 10, EP < 15], [FS, 0.0], 0.5)
    write_run(root, method="oracle", seed=0, epochs=E, stat_window=5, dice=warm, penalty_warmup=10)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    from analysis.report import build_report

    return build_report(_experiment(tmp_path_factory.mktemp("escape") / "exp"), figures=False)


def _row(t: pd.DataFrame, seed: int, warmup: float) -> pd.Series:
    sel = (t["seed"] == seed) & (t["penalty_warmup"].fillna(0) == warmup)
    assert sel.sum() == 1, t
    return t.loc[sel].iloc[0]


@pytest.mark.parametrize(
    ("seed", "warmup", "collapsed", "last", "out_from", "paired", "caught_up"),
    [
        (0, 0, 5, 4, 5, True, 13),
        (1, 0, E, E - 1, None, True, None),
        (2, 0, 2, 21, 22, True, None),
        (3, 0, 0, None, 0, False, None),
        (0, 10, 5, 14, 15, True, 23),
    ],
)
def test_escape_table_by_hand(report, seed, warmup, collapsed, last, out_from, paired, caught_up) -> None:
    r = _row(report.analysis.escape, seed, warmup)
    assert r["n_epochs"] == E and r["collapsed_epochs"] == collapsed and bool(r["fs_paired"]) is paired
    for col, want in (("last_collapsed", last), ("out_from", out_from), ("caught_up", caught_up)):
        assert math.isnan(r[col]) if want is None else r[col] == want, (col, r[col])
    assert "fs" not in set(report.analysis.escape["method"])


def test_the_section_says_it_per_seed_with_its_file(report) -> None:
    md = report.markdown.read_text()
    sec = md[md.index("## Leaving the collapse, per seed") : md.index("## Runs")]
    assert (
        "at Dice < 5% in 5 of s0 (the last 4), 30 of s1 (the last 29), 2 of s2 (the last 21), 0 of s3; "
        "at or above it to the end in 3 of 4 seeds (from epoch 5 in s0, 22 in s2, 0 in s3); its 10-epoch "
        "mean reaches its FS's in 1 of 3 paired seeds (s0 at epoch 13; s1 never; s2 never)." in sec
    )
    assert "| oracle | 5 | 0.1 | 0.01 | 10 | 0 | 30 | 5 | 14 | 15 | 23 |" in sec
    assert "| oracle | 5 | 0.1 | 0.01 | 0 | 3 | 30 | 0 | – | 0 | no FS |" in sec
    csv = pd.read_csv(report.out_dir / "tables" / "escape.csv")
    assert len(csv) == 5


def test_without_another_method_there_is_no_section(tmp_path: Path) -> None:
    from analysis.report import build_report

    root = tmp_path / "fs-only"
    write_experiment(root, cohort="phantom")
    write_run(root, method="fs", seed=0, epochs=E, stat_window=5, dice=FS)
    out = build_report(root, figures=False)
    assert out.analysis.escape.empty and "## Leaving the collapse" not in out.markdown.read_text()
    assert not (out.out_dir / "tables" / "escape.csv").exists()


def test_warm_up_epochs_are_not_the_methods_collapse_and_percent_logs_are_read(tmp_path: Path) -> None:
    from analysis.load import load_experiment
    from analysis.stats import analyse

    root = tmp_path / "pct"
    write_experiment(root, cohort="phantom")
    # Dice logged in %: 44 for FS; the warm start's own FS epochs begin at 0 (epochs 0-1, before its
    # penalty starts at 10) and are not its collapse; its penalty epochs 12-13 at 1 % are
    write_run(root, method="fs", seed=0, epochs=E, stat_window=5, dice=FS * 100)
    warm = np.select([EP < 2, (EP >= 12) & (EP < 14)], [0.0, 1.0], 50.0)
    write_run(root, method="oracle", seed=0, epochs=E, stat_window=5, dice=warm, penalty_warmup=10)
    a = analyse(load_experiment(root))
    assert a.scale == 1.0
    r = a.escape.iloc[0]
    assert (r["collapsed_epochs"], r["last_collapsed"], r["out_from"]) == (2, 13, 14)
