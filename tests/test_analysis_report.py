"""Table 1 files, figures, the report and ``suite report`` (exit codes) on synthetic experiments."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from suite.cli import main
from suite.config import METHODS
from suite.testing.synthetic_runs import write_experiment, write_run

DICE = {"fs": 0.40, "proposals": 0.30, "proposed": 0.60, "oracle": 0.75}


def _grid(root: Path, *, cohort: str, seeds=(0, 1), ns=(5, 10), examples: bool = True) -> Path:
    write_experiment(root, cohort=cohort)
    for n in ns:
        for s in seeds:
            write_run(root, stage="regressor", n_labeled=n, seed=s, epochs=4)
            for m in METHODS:
                # seed 1 is 0.02 better than seed 0; n=10 is 0.1 better than n=5
                write_run(
                    root,
                    method=m,
                    n_labeled=n,
                    seed=s,
                    epochs=6,
                    stat_window=3,
                    dice=DICE[m] + 0.1 * (n == 10) + 0.02 * s,
                    val_examples=examples,
                    wall_time_s=360.0,
                    device="cuda:0" if m == "oracle" else "cpu",
                )
    return root


@pytest.fixture(scope="module")
def phantom_report(tmp_path_factory: pytest.TempPathFactory):
    from analysis.report import build_report

    root = _grid(tmp_path_factory.mktemp("ph") / "exp", cohort="phantom")
    write_run(root, method="fs", n_labeled=5, seed=9, epochs=6, stat_window=3, dice=0.1, logged_epochs=2)
    return root, build_report(root, bootstrap=50)


def test_table1_files(phantom_report) -> None:
    root, res = phantom_report
    tdir = res.out_dir / "tables"
    t1 = pd.read_csv(tdir / "table1.csv")
    assert len(t1) == 8 and set(t1["method"]) == set(METHODS) and set(t1["n_labeled"]) == {5, 10}
    r = t1.loc[(t1["method"] == "proposed") & (t1["n_labeled"] == 10)].iloc[0]
    # seeds: 0.70 and 0.72 -> 71.0 %, epoch std 0, sd 1.414 %, CI 71 ± 12.706 * 1.0
    assert math.isclose(r["dice"], 71.0, abs_tol=1e-3) and math.isclose(r["epoch_std"], 0.0, abs_tol=1e-9)
    assert math.isclose(r["ci_high"] - r["dice"], 12.706, abs_tol=2e-3) and r["n_seeds"] == 2
    assert t1["paper_dice"].isna().all()  # phantom: no comparison
    tex = (tdir / "table1.tex").read_text()
    assert r"\begin{tabular}{lcccc}" in tex and r"\end{tabular}" in tex and "Proposed" in tex
    assert tex.count(r"\\") >= 5  # header + 2 rows per n
    md = (tdir / "table1.md").read_text()
    assert "| n labeled | FS | Proposals | Proposed | Oracle |" in md
    assert "| 10 | 51.0 (0.0) [" in md
    runs = pd.read_csv(tdir / "runs.csv")
    assert (runs["flag"] == "short").sum() == 1 and runs["included"].sum() == 16
    assert {"paired.csv", "conditions.csv", "bootstrap.csv", "regressor_by_n.csv", "per_volume.csv"} <= {
        p.name for p in tdir.iterdir()
    }


def test_figures_exist_and_are_images(phantom_report) -> None:
    import matplotlib.image as mpimg

    _, res = phantom_report
    fdir = res.out_dir / "figures"
    expected = {
        "fig2_dice_vs_n",
        "fig3_dice_over_epochs",
        "regressor_error_vs_n",
        "per_volume_dice",
        "constraint_in_bounds",
        "fig4_qualitative",
    }
    assert expected <= {p.stem for p in fdir.glob("*.png")}
    assert expected <= {p.stem for p in fdir.glob("*.svg")}
    for name in expected:
        img = mpimg.imread(fdir / f"{name}.png")
        assert img.ndim == 3 and img.shape[0] > 150 and img.shape[1] > 200, (name, img.shape)
        assert img[..., :3].std() > 0.02  # not a blank canvas
        assert "<svg" in (fdir / f"{name}.svg").read_text()[:2000]
    assert not (fdir / "sensitivity_gamma_lambda.png").exists()  # γ, λ not varied: no heatmap


def test_report_content_is_honest(phantom_report) -> None:
    root, res = phantom_report
    md = res.markdown.read_text()
    for s in (
        "## Warnings",
        "fewer than 5 seeds",
        "shorter than the window",
        "## How the numbers are made",
        "ddof 0",
        "W = 3 (config stat_window)",
        "## Table 1",
        "## Paired comparisons",
        "proposed − fs at n=5: +20.0 points",
        "## Provenance",
        "GPU-hours",
        "Excluded segmenter runs (1)",
        "not the real ACDC release",
        "## Cluster bootstrap",
        "## Size regressor",
    ):
        assert s in md, s
    # oracle ran on cuda: 4 runs x 360 s = 0.4 GPU-hours (wall time only: the runs predate the cost record)
    assert "of which 0.4 GPU-hours" in md and "only their wall time is known" in md
    assert "| oracle | 5 | 2 | – | – | 0.1 | 0.1 | 6 | – | – | cuda:0 |" in md
    assert "Compute per stage" not in md  # one home for cost: the Cost section
    html = res.html.read_text()
    assert html.count("<img ") == html.count("src='data:image/png;base64,") >= 6  # every figure embedded
    assert "<table>" in html and "<h2>Table 1</h2>" in html
    meta = json.loads((res.out_dir / "analysis.json").read_text())
    assert meta["included_segmenter_runs"] == 16 and meta["cohort"] == "phantom"
    assert not [p for p in root.iterdir() if p.name.startswith(".report")]  # no temp dir left behind


def test_acdc_cohort_shows_paper_values(tmp_path: Path) -> None:
    from analysis.report import build_report

    root = _grid(tmp_path / "exp", cohort="acdc", seeds=(0,), ns=(5,), examples=False)
    res = build_report(root, figures=False)
    t1 = pd.read_csv(res.out_dir / "tables" / "table1.csv")
    fs = t1.loc[t1["method"] == "fs"].iloc[0]
    assert fs["paper_dice"] == 24.8 and fs["paper_std"] == 4.9
    assert math.isclose(fs["diff_vs_paper"], 40.0 - 24.8, abs_tol=1e-6)
    assert "paper 24.8 (4.9) · Δ +15.2" in res.table1_text
    assert "[1 seed]" in res.table1_text
    assert r"\textit{paper}" in (res.out_dir / "tables" / "table1.tex").read_text()


def test_qualitative_figure_skipped_with_note(tmp_path: Path) -> None:
    from analysis.figures import fig_qualitative
    from analysis.load import load_experiment
    from analysis.stats import analyse
    from analysis.tables import table1

    root = tmp_path / "exp"
    write_experiment(root)
    write_run(root, method="fs", seed=0, epochs=4, stat_window=2, dice=0.5)
    a = analyse(load_experiment(root))
    notes: list[str] = []
    assert fig_qualitative(a, table1(a, "phantom"), tmp_path / "f", notes) is None
    assert any("val_examples.npz" in n for n in notes)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_prints_path_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "exp"
    write_experiment(root)
    for s in (0, 1):
        write_run(root, method="fs", seed=s, epochs=4, stat_window=2, dice=0.5)
    out = tmp_path / "rep"
    assert main(["report", str(root), "--no-figures", "--out", str(out), "--window", "3"]) == 0
    text = capsys.readouterr().out
    assert f"report: {out / 'report.md'}" in text and "| 5 | 50.0 (0.0) [50.0, 50.0] |" in text
    assert (out / "report.html").exists()
    assert "W = 3 for every run (set with --window)" in (out / "report.md").read_text()
    # a second report replaces the first
    assert main(["report", str(root), "--no-figures", "--out", str(out)]) == 0


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, lines  # one line naming the problem (log lines aside)
    return lines[0]


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a directory" in _err(capsys)
    (tmp_path / "notexp").mkdir()
    assert main(["report", str(tmp_path / "notexp")]) == 2
    assert "not an experiment folder" in _err(capsys)
    root = tmp_path / "exp"
    write_experiment(root)
    assert main(["report", str(root)]) == 2
    assert "no run directories" in _err(capsys)
    rp = write_run(root, method="fs", seed=0, epochs=4, stat_window=2, dice=0.5)
    assert main(["report", str(root), "--window", "0"]) == 2
    assert "--window 0" in _err(capsys)
    assert main(["report", str(root), "--bootstrap", "-1"]) == 2
    _err(capsys)
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    # a folder holding the user's own file: the report goes beside it and the file is never touched
    assert main(["report", str(root), "--no-figures", "--out", str(other)]) == 0
    assert (other / "thesis.tex").read_text() == "x" and (other / "report.md").exists()
    assert main(["report", str(root), "--no-figures", "--out", str(other)]) == 0  # again: replaces its own
    assert (other / "thesis.tex").read_text() == "x"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my notes")  # not the suite's: refused, not overwritten
    assert main(["report", str(root), "--no-figures", "--out", str(mine)]) == 2
    assert "was not written by the suite" in _err(capsys) and (mine / "report.md").read_text() == "my notes"
    assert main(["report", str(root), "--no-figures", "--out", str(other / "thesis.tex")]) == 2
    assert "is not a folder" in _err(capsys)
    good = rp.metrics.read_text()
    rp.metrics.write_text(good.replace("0.5\n", "zero\n", 1))
    assert main(["report", str(root)]) == 2
    assert str(rp.metrics) in _err(capsys)
    rp.metrics.write_text(good)
    rp.config.write_text("[1, 2]")
    assert main(["report", str(root)]) == 2
    assert str(rp.config) in _err(capsys)
    assert not (root / "report").exists()  # nothing half-written


@pytest.mark.parametrize("damage", ["metrics-line", "metrics-truncated-field", "config", "summary"])
def test_one_damaged_run_is_excluded_and_named_and_the_report_still_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    root = _grid(tmp_path / "exp", cohort="phantom", seeds=(0, 1, 2), ns=(5,), examples=False)
    victim = next(p for p in (root / "runs").iterdir() if p.name.startswith("seg-proposed"))
    metrics = victim / "metrics.csv"
    if damage == "metrics-line":
        lines = metrics.read_text().splitlines(keepends=True)
        lines[3] = lines[3].rsplit(",", 1)[0] + ",zero\n"
        metrics.write_text("".join(lines))
        why = [str(metrics), "line 4"]
    elif damage == "metrics-truncated-field":
        lines = metrics.read_text().splitlines(keepends=True)
        lines[5] = "3,val\n"  # a line cut short in the middle of the file
        metrics.write_text("".join(lines))
        why = [str(metrics), "line 6"]
    elif damage == "config":
        (victim / "config.json").write_text("{not json")
        why = [str(victim / "config.json")]
    else:
        (victim / "summary.json").write_text("\x00\x01")
        why = [str(victim / "summary.json")]
    assert main(["report", str(root), "--no-figures"]) == 0
    md = (root / "report" / "report.md").read_text()
    assert f"run {victim.name} excluded (damaged)" in md
    line = next(x for x in md.splitlines() if victim.name in x and "excluded" in x)
    assert all(w in line for w in why), line
    t1 = pd.read_csv(root / "report" / "tables" / "table1.csv")
    assert len(t1)  # the other runs still make Table 1


def test_report_states_effective_counts_missing_paper_cells_and_caveats(tmp_path: Path) -> None:
    """n is a paper-scale count: the table says how many patients it meant in this cohort; beside the paper's
    numbers a small-preset, low-resolution experiment carries a caveat and the cells it lacks are named."""
    from analysis.load import load_experiment
    from analysis.stats import analyse
    from analysis.tables import table1, table1_markdown

    root = _grid(tmp_path / "exp", cohort="acdc", seeds=(0, 1), ns=(5, 10), examples=False)
    for cfg_path in (root / "runs").glob("seg-*/config.json"):
        summary = cfg_path.parent / "summary.json"
        doc = json.loads(summary.read_text())
        n = json.loads(cfg_path.read_text())["n_labeled"]
        summary.write_text(json.dumps({**doc, "n_labeled_effective": {5: 2, 10: 3}[n]}))
    t1 = table1(analyse(load_experiment(root)), "acdc")
    md = table1_markdown(t1)
    assert "| 10 (3 patients) |" in md and "| 5 (2 patients) |" in md
    notes = " ".join(t1.notes)
    assert "n=10 -> 3 patients" in notes
    assert "FS n=75 (not run in this experiment)" in notes and "Oracle n=40" in notes
    assert "CAVEAT" in notes


def test_a_varied_axis_names_every_line_it_splits(tmp_path: Path) -> None:
    """With two segmenters in one experiment, paired statements and the per-volume table name the segmenter
    (they read alike otherwise), and a small λ prints as given, not rounded to 0.00."""
    from analysis.load import load_experiment
    from analysis.stats import analyse
    from analysis.tables import per_volume_summary

    root = tmp_path / "exp"
    write_experiment(root, cohort="phantom")
    for arch, channels in (("enet", 2), ("enet-authors", 4)):
        for s in (0, 1):
            for m in ("fs", "proposed"):
                write_run(
                    root, method=m, seed=s, lam=1e-4, dice=0.3 + 0.1 * (m == "proposed") + 0.01 * s,
                    seg_arch=arch, seg_out_channels=channels, seg_width=1.0,
                )  # fmt: skip
    a = analyse(load_experiment(root))
    lines = list(a.paired["statement"])
    # seg_out_channels=2 is its default (a when_set field) and still names the setting
    assert any("seg_arch=enet, seg_out_channels=2:" in x for x in lines)
    assert any("seg_arch=enet-authors, seg_out_channels=4:" in x for x in lines)
    assert set(per_volume_summary(a)["seg_arch"]) == {"enet", "enet-authors"}
    assert main(["report", str(root), "--no-figures"]) == 0
    assert "| 0.0001 |" in (root / "report" / "report.md").read_text()


def test_sensitivity_shows_lambda_under_each_update_scheme(tmp_path: Path) -> None:
    """A varied ``update`` splits the sensitivity table and the heat map (never averaged over the schemes)."""
    from analysis.load import load_experiment
    from analysis.stats import analyse
    from analysis.tables import sensitivity_table

    root = tmp_path / "exp"
    write_experiment(root)
    for lam in (1e-3, 1e-2):
        for update, base in (("alternating", 0.4), ("joint", 0.6)):
            for s in (0, 1):
                write_run(
                    root,
                    method="oracle",
                    seed=s,
                    lam=lam,
                    epochs=4,
                    stat_window=2,
                    update=update,
                    dice=base + s / 10,
                )
    a = analyse(load_experiment(root))
    t = sensitivity_table(a)
    assert "update" in t.columns and len(t) == 4
    joint = t.loc[t["update"] == "joint", "dice"]
    assert joint.tolist() == pytest.approx([65.0, 65.0])
    from analysis.figures import fig_sensitivity

    fig = fig_sensitivity(a, tmp_path / "figs", [])
    assert (
        fig is not None and "update=joint" in (tmp_path / "figs" / "sensitivity_gamma_lambda.svg").read_text()
    )
