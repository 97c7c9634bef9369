"""The report's "Semi-supervised baselines" table against hand-computed values.

Synthetic experiment (suite.testing.synthetic_runs): n = 5, seeds 0-2, FS / Proposed / Oracle each without a
term and with Mean Teacher; Proposed also with CPS. Final test Dice of a run = BASE[method] + GAIN[ssl] +
0.05·seed, except Proposed + CPS: + 0.01·seed² (so its paired differences vary); its validation Dice is 0.1
higher; HD95 = 10 − 10·Dice mm. Own cost per run: 1 device-hour for a segmenter, 3 for a regressor (shared by
the Proposed runs of its seed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.testing.report_checks import report_section, three_seed_interval
from suite.testing.synthetic_runs import write_experiment, write_run, write_test_metrics

BASE = {"fs": 0.50, "proposed": 0.60, "oracle": 0.70}
GAIN = {"none": 0.0, "mean_teacher": 0.04, "cps": 0.02}
ARMS = [(m, s) for m in BASE for s in ("none", "mean_teacher")] + [("proposed", "cps")]


def _dice(method: str, ssl: str, seed: int) -> float:
    extra = 0.01 * seed * seed if (method, ssl) == ("proposed", "cps") else 0.05 * seed
    return BASE[method] + GAIN[ssl] + extra


def _cost(hours: float) -> dict:
    s = hours * 3600
    return {"cpu_seconds": s, "device_seconds": s, "wall_seconds": s, "peak_rss_mb": 100.0, "device": "cpu"}


def _experiment(root: Path, arms=ARMS) -> Path:
    write_experiment(root, cohort="phantom")
    for seed in (0, 1, 2):
        write_run(root, stage="regressor", n_labeled=5, seed=seed, epochs=3, cost=_cost(3.0))
        for method, ssl in arms:
            d = _dice(method, ssl, seed)
            rp = write_run(
                root,
                method=method,
                ssl=ssl,
                seed=seed,
                epochs=6,
                stat_window=3,
                dice=d + 0.1,
                cost=_cost(1.0),
            )
            write_test_metrics(rp, dice=d, hd95_mm=10 - 10 * d)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    from analysis.report import build_report

    return build_report(_experiment(tmp_path_factory.mktemp("ssl") / "exp"))


def _row(lines: list[str], method: str, ssl: str) -> list[str]:
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| 5 ")]
    (row,) = [r for r in rows if r[1] == method and r[2] == ssl]
    return row


def test_table_rows_numbers_and_paired_differences(report) -> None:
    md = report.markdown.read_text()
    lines = report_section(md, "Semi-supervised baselines")
    head = [c.strip() for c in next(x for x in lines if x.startswith("| n ")).strip("|").split("|")]
    assert head == [
        "n",
        "method",
        "ssl",
        "seeds",
        "test Dice %",
        "test HD95 mm",
        "val Dice % (last W)",
        "Δ vs FS",
        "Δ vs Proposed",
        "device-h/run",
        "CPU-h/run",
    ]
    assert len([x for x in lines if x.startswith("| 5 ")]) == len(ARMS)
    # Proposed + Mean Teacher: test Dice 64, 69, 74 % -> 69 [56.6, 81.4]; HD95 = 10 − 10·Dice
    mt = _row(lines, "Proposed", "Mean Teacher")
    m, lo, hi = three_seed_interval([64.0, 69.0, 74.0])
    assert mt[3] == "3" and mt[4] == f"{m:.1f} [{lo:.1f}, {hi:.1f}]"
    m, lo, hi = three_seed_interval([10 - 10 * _dice("proposed", "mean_teacher", s) for s in (0, 1, 2)])
    assert mt[5] == f"{m:.1f} [{lo:.1f}, {hi:.1f}]"
    m, lo, hi = three_seed_interval([74.0, 79.0, 84.0])  # validation: 0.1 above the test Dice
    assert mt[6] == f"{m:.1f} [{lo:.1f}, {hi:.1f}]"
    # paired: a constant +14 points over FS and +4 over Proposed (3 pairs each); cost 1 + 3/3 device-hours
    assert mt[7] == "+14.0 [+14.0, +14.0] (3)" and mt[8] == "+4.0 [+4.0, +4.0] (3)"
    assert mt[9] == "2" and mt[10] == "2"
    # Proposed + CPS − Proposed: 2 − 5·s + s² points for s = 0, 1, 2 -> 2, −2, −4
    cps = _row(lines, "Proposed", "CPS")
    m, lo, hi = three_seed_interval([2.0, -2.0, -4.0])
    assert cps[8] == f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}] (3)"
    assert cps[9] == "2"  # the regressor shared by three Proposed runs of a seed: a third each
    assert _row(lines, "FS", "–")[7] == "–" and _row(lines, "FS", "Mean Teacher")[9] == "1"
    assert _row(lines, "Oracle", "Mean Teacher")[7] == "+24.0 [+24.0, +24.0] (3)"
    # the first screen orders the methods without a term (validation: 0.1 above the test Dice)
    assert "**Ordering found at n = 5** without a semi-supervised term" in md
    assert "Oracle 85.0 > Proposed 75.0 > FS 65.0" in md


def test_csv_and_the_dice_versus_cost_figure_show_every_arm(report) -> None:
    import pandas as pd

    from analysis.figures_test_cost import dice_cost_points
    from analysis.report_test_cost import build_test_and_cost

    tables = report.out_dir / "tables"
    t = pd.read_csv(tables / "ssl_baselines.csv")
    assert sorted(zip(t["method"], t["ssl"], strict=True)) == sorted(ARMS)
    assert t.loc[t["arm"] == "oracle+mean_teacher", "test_dice_mean"].item() == pytest.approx(79.0, abs=1e-6)
    paired = pd.read_csv(tables / "ssl_paired.csv")
    assert set(paired["method_b"]) == {"fs", "proposed"} and "proposed+cps" in set(paired["method_a"])
    assert (report.out_dir / "figures" / "dice_vs_cost.png").exists()
    x = build_test_and_cost(report.analysis, report.table1, report.out_dir, figures=False)
    pts, which = dice_cost_points(report.analysis, report.table1, x.test, x.costs)
    assert which == "test" and sorted(zip(pts["method"], pts["ssl"], strict=True)) == sorted(ARMS)


def test_no_table_when_the_experiment_did_not_vary_ssl(tmp_path: Path) -> None:
    from analysis.report import build_report

    res = build_report(_experiment(tmp_path / "exp", arms=[(m, "none") for m in BASE]), figures=False)
    md = res.markdown.read_text()
    assert "## Held-out test set" in md and "Semi-supervised baselines" not in md
    assert not (res.out_dir / "tables" / "ssl_baselines.csv").exists()


def test_cost_section_keeps_each_term_apart(report) -> None:
    lines = report_section(report.markdown.read_text(), "Cost")
    rows = [[c.strip() for c in x.strip("|").split("|")] for x in lines if x.startswith("| ")][1:]
    assert [r[0] for r in rows] == [
        "regressor",
        "fs",
        "fs+mean_teacher",
        "proposed",
        "proposed+mean_teacher",
        "proposed+cps",
        "oracle",
        "oracle+mean_teacher",
    ]
    assert {r[2] for r in rows} == {"3"}  # seeds per row
