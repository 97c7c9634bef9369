"""The report's held-out test set, validation/test gap and cost sections, against hand-computed values.

Synthetic experiment (suite.testing.synthetic_runs): n = 5, seeds 0-2, FS / Proposals / Proposed (at two λ
sharing one regressor) / Oracle. Test Dice of a run = base(method) + 0.05·seed (final), + 0.02 (best); its
validation Dice is 0.05 higher; every test patient has true volumes ED 150 ml / ES 60 ml and predicted
140 / 65 ml. Oracle seed 0 predicts nothing on patient103's ES frame (one empty: Dice 0, distances undefined).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from suite.metrics import ejection_fraction
from suite.testing.report_checks import report_section, three_seed_interval
from suite.testing.synthetic_runs import write_experiment, write_run, write_test_metrics


# the report's CSVs hold 6 decimals
def approx(x: float):
    return pytest.approx(x, abs=2e-6)


BASE = {"fs": 0.60, "proposals": 0.50, "proposed": 0.70, "oracle": 0.80}
# own cost per run: (cpu s, device s, device)
COST = {
    "regressor": (3600.0, 7200.0, "cuda:NVIDIA H200"),
    "fs": (720.0, 1440.0, "cpu"),
    "proposals": (360.0, 720.0, "cpu"),
    "proposed": (1800.0, 3600.0, "cuda:NVIDIA H200"),
    "oracle": (1800.0, 3600.0, "cuda:NVIDIA H200"),
}


def _cost(what: str) -> dict:
    cpu, dev, device = COST[what]
    return {
        "cpu_seconds": cpu,
        "device_seconds": dev,
        "wall_seconds": dev,
        "peak_rss_mb": 1000.0,
        "peak_device_mb": None if device == "cpu" else 500.0,
        "device": device,
        "world_size": 1,
        "segments": 1,
    }


def _experiment(root: Path, *, test: bool = True, cost: bool = True) -> Path:
    write_experiment(root, cohort="phantom")
    for s in (0, 1, 2):
        write_run(
            root, stage="regressor", n_labeled=5, seed=s, epochs=3, cost=_cost("regressor") if cost else None
        )
        for m in BASE:
            for lam in (1e-2, 1e-3) if m == "proposed" else (1e-2,):
                d = BASE[m] + 0.05 * s
                rp = write_run(
                    root,
                    method=m,
                    n_labeled=5,
                    seed=s,
                    lam=lam,
                    epochs=6,
                    stat_window=3,
                    dice=d + 0.05,
                    cost=_cost(m) if cost else None,
                )
                if test:
                    write_test_metrics(
                        rp,
                        dice=lambda ck, p, ph, k, d=d: d + (0.02 if ck == "best" else 0.0),
                        empty=(
                            (lambda ck, p, ph, k: (False, p == "patient103" and ph == "ES"))
                            if (m, s) == ("oracle", 0)
                            else None
                        ),
                    )
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    from analysis.report import build_report

    return build_report(_experiment(tmp_path_factory.mktemp("tc") / "exp"))


def test_ejection_fraction() -> None:
    assert ejection_fraction(150.0, 60.0) == pytest.approx(60.0)
    assert math.isnan(ejection_fraction(0.0, 10.0)) and math.isnan(ejection_fraction(-1.0, 0.0))
    ef = ejection_fraction([150.0, 140.0, 0.0], [60.0, 0.0, 0.0])
    assert ef[0] == pytest.approx(60.0) and ef[1] == pytest.approx(100.0) and math.isnan(ef[2])


def test_per_run_values_by_hand(report) -> None:
    x = pd.read_csv(report.out_dir / "tables" / "test_per_run.csv")
    runs = pd.read_csv(report.out_dir / "tables" / "runs.csv")[["run_id", "method", "seed"]]
    x = x.merge(runs, on="run_id")
    fs0 = x.loc[(x["method"] == "fs") & (x["seed"] == 0) & (x["checkpoint"] == "final")].iloc[0]
    ef_err = abs(ejection_fraction(140.0, 65.0) - 60.0)  # 6.43 EF points
    assert fs0["dice"] == approx(0.60)
    assert (fs0["hd95_mm"], fs0["assd_mm"]) == (approx(6.0), approx(1.5))
    assert (fs0["vol_err_ed_ml"], fs0["vol_err_es_ml"]) == (approx(10.0), approx(5.0))
    assert fs0["ef_err"] == approx(ef_err)
    assert (fs0["n_volumes"], fs0["n_undefined"]) == (6, 0)
    o0 = x.loc[(x["method"] == "oracle") & (x["seed"] == 0) & (x["checkpoint"] == "final")].iloc[0]
    # 5 volumes at 0.80 and the one-empty volume at 0; distances over the 5 defined volumes only
    assert o0["dice"] == approx(5 * 0.80 / 6)
    assert o0["hd95_mm"] == approx(6.0) and o0["n_undefined"] == 1
    # patient103's predicted ES volume is 0 ml: |ΔV| ES 60 ml, EF 100% (error 40) for that patient
    assert o0["vol_err_es_ml"] == approx((5 + 5 + 60) / 3)
    assert o0["ef_err"] == approx((2 * ef_err + 40.0) / 3)


def test_test_table_across_seeds_and_undefined_count(report) -> None:
    md = report.markdown.read_text()
    lines = report_section(md, "Held-out test set")
    row = next(ln for ln in lines if ln.startswith("| fs | 5 |"))
    mean, lo, hi = three_seed_interval([0.60, 0.65, 0.70])
    best_mean, best_lo, best_hi = three_seed_interval([0.62, 0.67, 0.72])
    assert f"| {100 * mean:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] |" in row  # 65.0 [52.6, 77.4]
    assert f"| {100 * best_mean:.1f} [{100 * best_lo:.1f}, {100 * best_hi:.1f}] |" in row
    assert "| 0 of 18 |" in row
    oracle = next(ln for ln in lines if ln.startswith("| oracle | 5 |"))
    assert "| 1 of 18 |" in oracle
    # Table 1's setting only (λ = 1e-2): one proposed row and statement in the Markdown, both λ in the CSVs
    assert len([ln for ln in lines if ln.startswith("| proposed | 5 |")]) == 1
    assert len([ln for ln in lines if ln.startswith("- proposed − fs at n=5: +10.0 points")]) == 1
    t = pd.read_csv(report.out_dir / "tables" / "test_set.csv")
    assert len(t.loc[(t["method"] == "proposed") & (t["checkpoint"] == "final")]) == 2


def test_paired_differences_and_gap(report) -> None:
    md = report.markdown.read_text()
    paired = pd.read_csv(report.out_dir / "tables" / "test_paired.csv")
    assert len(paired.loc[(paired["method_a"] == "proposed") & (paired["method_b"] == "fs")]) == 2  # two λ
    p = paired.loc[(paired["method_a"] == "oracle") & (paired["method_b"] == "fs")].iloc[0]
    diffs = [5 * 0.80 / 6 - 0.60, 0.85 - 0.65, 0.90 - 0.70]
    assert p["mean_diff"] == approx(sum(diffs) / 3) and p["n_pairs"] == 3
    gap = pd.read_csv(report.out_dir / "tables" / "val_test_gap.csv")
    fs = gap.loc[gap["method"] == "fs"].iloc[0]
    assert fs["gap_mean"] == approx(5.0) and fs["val_mean"] == approx(70.0)
    assert "## Validation/test gap" in md


def test_cost_table_attribution(report) -> None:
    md = report.markdown.read_text()
    cost = pd.read_csv(report.out_dir / "tables" / "cost.csv").set_index("stage / method")
    # own / attributed CPU-h and device-h: a proposed run carries half its regressor (two λ share it),
    # a proposals run the whole FS run it was built on
    assert tuple(cost.loc["proposed", ["CPU-h (own)", "CPU-h (attributed)"]]) == (0.5, 1.0)
    assert tuple(cost.loc["proposed", ["device-h (own)", "device-h (attributed)"]]) == (1.0, 2.0)
    assert tuple(cost.loc["proposals", ["CPU-h (own)", "CPU-h (attributed)"]]) == (0.1, 0.3)
    assert tuple(cost.loc["proposals", ["device-h (own)", "device-h (attributed)"]]) == (0.2, 0.6)
    assert tuple(cost.loc["fs", ["CPU-h (own)", "CPU-h (attributed)"]]) == (0.2, 0.2)
    assert tuple(cost.loc["regressor", ["runs", "CPU-h (own)"]]) == (3, 1.0)
    assert cost.loc["proposed", "shares"] == "regressor 1/2" and cost.loc["proposals", "shares"] == "fs 1/1"
    assert cost.loc["proposed", "runs"] == 6
    # totals: each run once: per seed 3600 + 2·1800 + 720 + 360 + 1800 CPU s
    assert re.search(
        r"Total over 18 runs \(each counted once\): 8\.4 CPU-hours, 16\.8 device-hours, of which 15 GPU", md
    )
    # the legend says how a trial packed on a GPU (--gpus-per-trial 0.25) is counted
    assert "device-hours (wall × world size × the share of a GPU a packed trial held" in md


def test_figures_written_and_embedded(report) -> None:
    md = report.markdown.read_text()
    for name in ("test_per_volume", "dice_vs_cost"):
        assert (report.out_dir / "figures" / f"{name}.png").stat().st_size > 5000
        assert f"](figures/{name}.png)" in md
    html = report.html.read_text()
    assert html.count("<img ") == html.count("src='data:image/png;base64,")
    listed = json.loads((report.out_dir / "analysis.json").read_text())["figures"]
    assert {"test_per_volume", "dice_vs_cost"} <= set(listed)


def test_report_of_runs_before_the_test_set_and_cost_record(tmp_path: Path, monkeypatch) -> None:
    """An experiment from before the test set and the cost record: no test section, and the Cost section
    (the one home of what runs cost) from each run's wall time alone, CPU and memory unknown and said so."""
    import analysis.report as report_mod
    from analysis.report import build_report

    root = _experiment(tmp_path / "old", test=False, cost=False)
    new = build_report(root, out=tmp_path / "new", figures=False)
    md = new.markdown.read_text()
    assert "## Held-out test set" not in md
    assert "Compute per stage" not in md  # the cost is reported once, in the Cost section
    cost = report_section(md, "Cost")
    assert any("predate the cost record: only their wall time is known" in ln for ln in cost)
    runs = pd.read_csv(tmp_path / "new" / "tables" / "cost_runs.csv")
    assert not runs["recorded"].any() and runs["cpu_seconds"].isna().all()
    assert (runs["device_seconds"] == runs["wall_seconds"] * runs["world_size"]).all()
    # nothing else of the report changes with the new sections
    monkeypatch.setattr(report_mod, "build_test_and_cost", lambda *a, **k: None)
    before = build_report(root, out=tmp_path / "before", figures=False)

    def text(p: Path) -> str:
        return re.sub(r"Generated .* in [0-9.]+ s\.", "", p.read_text())

    without_cost = re.sub(r"## Cost\n.*?(?=\n## )", "", text(new.markdown), flags=re.S)
    assert without_cost.replace("\n\n\n", "\n\n") == text(before.markdown).replace("\n\n\n", "\n\n")


def test_test_section_without_cost_and_a_damaged_file_is_named(tmp_path: Path) -> None:
    from analysis.report import build_report

    root = _experiment(tmp_path / "exp", test=True, cost=False)
    bad = next((root / "runs").glob("seg-fs-n5-s1-*")) / "test_metrics.csv"
    bad.write_text("checkpoint,split\nfinal,test\n")
    md = build_report(root, figures=False).markdown.read_text()
    assert "## Held-out test set" in md
    assert f"{bad}: unreadable (columns ['checkpoint', 'split'], expected checkpoint,split,patient," in md
    row = next(ln for ln in report_section(md, "Held-out test set") if ln.startswith("| fs | 5 |"))
    assert "| 2 |" in row  # two seeds left for FS


# edits of the first data row of a valid file (final, test, patient101, ED, …, dice 0.8, hd95 6.0, …, False,
# False): spellings the evaluation never writes, cells missing or of the wrong kind
@pytest.mark.parametrize(
    ("old", "new"),
    [
        (None, None),  # the file as written
        (",False,False", ",false,False"),
        (",False,False", ",0,False"),
        (",False,False", ",,False"),
        (",False,False", ",False,"),
        (",6.0,", ",,"),
        (",6.0,", ",six,"),
        (",6.0,", ",nan,"),  # an undefined distance, as written
        ("final,test,", "last,test,"),
        ("final,test,patient101,ED,", "final,test,,ED,"),
    ],
)
def test_the_report_and_the_evaluation_read_test_metrics_alike(tmp_path: Path, old, new) -> None:
    from analysis.test_metrics import read_test_metrics
    from suite.errors import InputError
    from suite.evaluation import damage
    from suite.paths import RunPaths

    (tmp_path / "run").mkdir()
    path = write_test_metrics(RunPaths(tmp_path / "run"))
    header, first, rest = path.read_text().split("\n", 2)
    assert old is None or old in first, first
    path.write_text("\n".join([header, first if old is None else first.replace(old, new, 1), rest]))
    rows = len(path.read_text().splitlines()) - 1
    try:
        read_test_metrics(path)
        report_reads = True
    except InputError:
        report_reads = False
    evaluation_reads = damage(path, {"test": {"rows": rows}}, "test") is None
    valid = old is None or new == ",nan,"
    assert report_reads == evaluation_reads == valid, (report_reads, evaluation_reads)


def test_test_metrics_read_back_as_written(tmp_path: Path) -> None:
    from suite.paths import format_test_metrics, parse_test_metrics

    row = {
        "checkpoint": "best", "split": "val", "patient": "patient007", "phase": "ES",
        "volume": "patient007_frame12", "class": "Myo", "dice": 1 / 3, "hd95_mm": float("nan"),
        "assd_mm": 0.1 + 0.2, "volume_true_ml": 0.0, "volume_pred_ml": 12.5, "empty_true": True,
        "empty_pred": False,
    }  # fmt: skip
    path = tmp_path / "test_metrics.csv"
    path.write_text(format_test_metrics([row]))
    (got,) = parse_test_metrics(path)
    assert math.isnan(got.pop("hd95_mm")) and {**row, "hd95_mm": None} == {**got, "hd95_mm": None}


def test_real_runs_with_a_test_split_give_the_test_table_and_the_cost_figure(tmp_path: Path) -> None:
    """From a phantom with test patients: two small real runs, their test_metrics.csv and cost, the report."""
    from analysis.report import build_report
    from suite.data.phantom.cohort import write_cohort
    from suite.data.prepare import prepare
    from suite.stages.runner import execute
    from suite.testing.small_runs import small_run_config

    write_cohort(tmp_path / "phantom", patients=30, seed=0, workers=2, test_patients=2)
    prepare(tmp_path / "phantom", tmp_path / "prepared", size=64)
    exp = tmp_path / "exp"
    write_experiment(exp, cohort="phantom")
    for method in ("fs", "oracle"):
        rp = execute(small_run_config(tmp_path / "prepared", method=method, seg_epochs=2), exp)
        assert rp.test_metrics.exists()
    res = build_report(exp)
    md = res.markdown.read_text()
    lines = report_section(md, "Held-out test set")
    for m in ("fs", "oracle"):
        row = next(ln for ln in lines if ln.startswith(f"| {m} | 5 | 1 |"))
        assert re.search(r"\| [0-4] of 4 \|$", row)  # final checkpoint, LV: 2 test patients x ED, ES
    cost = pd.read_csv(res.out_dir / "tables" / "cost.csv")
    assert set(cost["stage / method"]) == {"fs", "oracle"} and set(cost["devices"]) == {"cpu"}
    assert (res.out_dir / "figures" / "dice_vs_cost.png").exists()
    assert (res.out_dir / "figures" / "test_per_volume.png").exists()
