"""The report's sections beyond the paper: the held-out test set, the validation/test gap, the semi-supervised
baselines (:mod:`analysis.ssl_baselines`, where the experiment varied ``ssl``) and the cost.

:func:`build_test_and_cost` (called once by :mod:`analysis.report`) computes the tables
(:mod:`analysis.test_metrics`, :mod:`analysis.cost`), writes their CSVs and figures into the report folder
being staged; :func:`test_and_cost_markdown` (called once by :mod:`analysis.report_markdown`) renders them.
Each section appears only when its data exist: an experiment without ``test_metrics.csv`` or recorded costs
reports exactly as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.cost import attribute, cost_table, load_costs, sig3, totals
from analysis.plotting import Figure, figure_lines, main_setting
from analysis.ssl_baselines import SslBaselines, ssl_baselines, ssl_baselines_markdown
from analysis.stats import Analysis
from analysis.tables import Table1, df_markdown
from analysis.test_metrics import MAIN_CLASS, TestSet, analyse_test_set
from suite.atomic import write_text_atomic


@dataclass
class TestAndCost:
    """What the two sections show (empty frames when the experiment has no such data)."""

    test: TestSet
    costs: pd.DataFrame  # one row per finished run with a cost, attributed
    cost_table: pd.DataFrame
    table1: Table1
    confidence: float
    notes: list[str] = field(default_factory=list)
    # runs left out of the test tables (a damaged test_metrics.csv...): shown among the report's Warnings
    warnings: list[str] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    figure_notes: list[str] = field(default_factory=list)
    ssl: SslBaselines | None = None  # the semi-supervised baselines (None: ssl did not vary)
    val_scale: float = 100.0  # Analysis.scale: validation Dice as logged -> %


def build_test_and_cost(a: Analysis, t1: Table1, out_dir: Path, *, figures: bool = True) -> TestAndCost:
    """Compute the test-set and cost tables of ``a``'s experiment; write ``tables/test_*.csv``,
    ``tables/cost*.csv`` and (``figures``) ``figures/test_per_volume`` and ``figures/dice_vs_cost`` into
    ``out_dir``."""
    ts = analyse_test_set(a)
    raw, notes = load_costs(a.experiment)
    costs, more = attribute(raw)
    res = TestAndCost(
        ts, costs, cost_table(costs), t1, a.confidence, notes=[*notes, *more], warnings=list(ts.warnings)
    )
    res.ssl, res.val_scale = ssl_baselines(a, t1, ts, costs), a.scale
    files = {}
    if not ts.empty:
        files["test_per_run.csv"] = ts.per_run
        files["test_set.csv"] = ts.table
        files["test_paired.csv"] = ts.paired
        files["val_test_gap.csv"] = ts.gap
    if res.ssl is not None and len(res.ssl.table):
        files["ssl_baselines.csv"] = res.ssl.table
        files["ssl_paired.csv"] = res.ssl.paired
    if len(costs):
        files["cost_runs.csv"] = costs.drop(columns=["prerequisites"])
        files["cost.csv"] = res.cost_table
    for name, df in files.items():
        write_text_atomic(out_dir / "tables" / name, df.to_csv(index=False, float_format="%.6f"))
    if figures and (not ts.empty or len(costs)):
        from analysis.figures_test_cost import fig_dice_vs_cost, fig_test_per_volume

        fdir = out_dir / "figures"
        made = [
            fig_test_per_volume(a, t1, ts, fdir, res.figure_notes) if not ts.empty else None,
            fig_dice_vs_cost(a, t1, ts, costs, fdir, res.figure_notes) if len(costs) else None,
        ]
        res.figures = {f.name: f for f in made if f is not None}
    return res


def _cell(mean: float, low: float, high: float, scale: float = 1.0, nd: int = 1) -> str:
    if not math.isfinite(mean):
        return "–"
    s = f"{mean * scale:.{nd}f}"
    return s + (f" [{low * scale:.{nd}f}, {high * scale:.{nd}f}]" if math.isfinite(low) else "")


def _table1_setting(paired: pd.DataFrame, t1: Table1) -> pd.DataFrame:
    """Paired rows at Table 1's γ, λ (or without them); every setting is in ``tables/test_paired.csv``."""
    if paired.empty or t1.gamma is None or t1.lam is None:
        return paired
    g, lam = paired["gamma"].astype(float), paired["lam"].astype(float)
    keep = g.isna() | (np.isclose(g, t1.gamma) & np.isclose(lam, t1.lam))
    return paired.loc[keep]


def _figure(x: TestAndCost, name: str) -> list[str]:
    f = x.figures.get(name)
    return [] if f is None else figure_lines(f)


def test_table_markdown(x: TestAndCost) -> pd.DataFrame:
    """The test table as shown: Table 1's setting, one row per method x n (x class when several)."""
    t, t1 = x.test.table, x.table1
    keys = [c for c in t.columns[: t.columns.get_loc("n_units")] if c != "checkpoint"]
    best = t.loc[t["checkpoint"] == "best", [*keys, "dice_mean", "dice_low", "dice_high"]]
    fin = t.loc[t["checkpoint"] == "final"].merge(best, on=keys, how="left", suffixes=("", "_best"))
    fin = main_setting(fin, t1)
    several = fin["class"].nunique() > 1
    rows = []
    for _, r in fin.iterrows():
        rec = {c: r[c] for c in t1.extra}
        rec.update({"method": r["method"], "n": int(r["n_labeled"])})
        if several:
            rec["class"] = r["class"]
        rec["seeds"] = int(r["n_units"])
        rec["Dice % (final)"] = _cell(r["dice_mean"], r["dice_low"], r["dice_high"], 100.0)
        rec["Dice % (best, extra)"] = _cell(
            r["dice_mean_best"], r["dice_low_best"], r["dice_high_best"], 100.0
        )
        for col, v, nd in (
            ("HD95 mm", "hd95_mm", 1),
            ("ASSD mm", "assd_mm", 2),
            ("abs ΔV ED ml", "vol_err_ed_ml", 1),
            ("abs ΔV ES ml", "vol_err_es_ml", 1),
            ("abs ΔEF points", "ef_err", 1),
        ):
            rec[col] = _cell(r[f"{v}_mean"], r[f"{v}_low"], r[f"{v}_high"], 1.0, nd)
        rec["undefined HD/ASSD"] = f"{int(r['n_undefined'])} of {int(r['n_volumes'])}"
        rows.append(rec)
    return pd.DataFrame(rows)


def _test_sections(x: TestAndCost) -> list[str]:
    ts = x.test
    conf = int(round(x.confidence * 100))
    parts = [
        "## Held-out test set",
        "",
        "Each run's **final** checkpoint evaluated once after training on the test patients, which never "
        "chose an epoch, a checkpoint or an lr step; the best-on-validation checkpoint is shown as a "
        "labelled extra. Per run: 3-D Dice, HD95 and ASSD in mm (the volume's own spacing) averaged over "
        "the test volumes; abs ΔV = mean absolute cavity volume error (ml) at ED and at ES; abs ΔEF = "
        "mean absolute ejection-fraction error (EF points, from each patient's ED and ES volumes). Cell: "
        f"mean over seeds [{conf}% t-interval]. Empty cases (Metrics Reloaded): both empty → Dice 1, "
        "distances 0; exactly one empty → Dice 0 and the distances **undefined**: left out of the "
        "HD95/ASSD means and counted in the last column (volumes × runs).",
        "",
        df_markdown(test_table_markdown(x), max_rows=200),
    ]
    paired = _table1_setting(ts.paired, x.table1)
    if len(paired):
        parts += [f"Paired differences on the final test Dice ({MAIN_CLASS}), same n and seeds:", ""]
        parts += [f"- {s}" for s in paired["statement"]] + [""]
    parts += _figure(x, "test_per_volume")
    parts.append("Files: `tables/test_set.csv`, `tables/test_per_run.csv`, `tables/test_paired.csv`.\n")
    gap = main_setting(ts.gap, x.table1) if len(ts.gap) else ts.gap
    if len(gap):
        g = gap[["method", "n_labeled", *x.table1.extra]].rename(columns={"n_labeled": "n"}).copy()
        g["seeds"] = gap["n_units"]
        g["validation Dice % (last W)"] = gap["val_mean"]
        g["test Dice % (final)"] = gap["test_mean"]
        g["gap (val − test)"] = [
            _cell(m, lo, hi)
            for m, lo, hi in zip(gap["gap_mean"], gap["gap_low"], gap["gap_high"], strict=True)
        ]
        parts += [
            "## Validation/test gap",
            "",
            "Per method and n: the paper statistic (mean validation Dice over the last W epochs) beside the "
            f"final checkpoint's test Dice ({MAIN_CLASS}); the gap is their difference per run, mean over "
            f"seeds [{conf}% t-interval]. A positive gap is validation optimism (the validation patients "
            "chose the lr steps and the best checkpoint) or a harder test set.",
            "",
            df_markdown(g, nd=1, max_rows=200),
        ]
    return parts


def _cost_sections(x: TestAndCost) -> list[str]:
    tot = totals(x.costs)
    parts = [
        "## Cost",
        "",
        "Measured by every run (`summary.json` `cost`): CPU-hours (process and children, user + system, "
        "summed over DDP ranks), device-hours (wall × world size × the share of a GPU a packed trial held: "
        "GPU-hours on GPU), wall minutes, peak "
        "memory (resident set; `torch.cuda.max_memory_allocated` on GPU), summed over resumed sessions. Mean "
        "per run. **Attributed** adds the prerequisites: a regressor's cost is split equally among the "
        "Proposed runs that use it, the FS model's among the Proposals runs built on it (`shares`); FS and "
        "the regressor are still listed at their own cost.",
        "",
        df_markdown(x.cost_table, max_rows=200),
        f"Total over {int(tot['runs'])} runs (each counted once): {sig3(tot['cpu_h'])} CPU-hours, "
        f"{tot['device_h']:.3g} device-hours, of which {tot['gpu_h']:.3g} GPU-hours. Files: "
        "`tables/cost.csv`, `tables/cost_runs.csv`.",
        "",
    ]
    return parts + _figure(x, "dice_vs_cost")


def test_and_cost_markdown(x: TestAndCost | None) -> list[str]:
    """The lines of the held-out test set, validation/test gap and cost sections (none without data)."""
    if x is None:
        return []
    parts: list[str] = []
    if not x.test.empty:
        parts += _test_sections(x)
    if x.ssl is not None:
        parts += ssl_baselines_markdown(x.ssl, x.confidence, x.val_scale)
    if len(x.costs):
        parts += _cost_sections(x)
    notes = [*x.notes, *x.figure_notes]
    if notes and not parts:  # e.g. every test_metrics.csv unreadable: say so rather than stay silent
        parts = ["## Held-out test set", ""]
    return parts + [f"- {n}" for n in notes] + ([""] if notes else [])
