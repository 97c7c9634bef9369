"""The report's "Semi-supervised baselines" table (the ``ssl`` space): each method × ``ssl`` term × n beside
FS and Proposed under one protocol.

An *arm* is a method with its term (``proposed+cps``; ``fs`` and ``proposed`` are the paper's runs, ``ssl``
none). Per arm and n, over the seeds (t-intervals, :func:`analysis.intervals.t_interval`): the held-out test
Dice and HD95 of the final checkpoint (LV; :mod:`analysis.test_metrics`), the paper statistic on validation
(:mod:`analysis.run_stats`), the paired differences against FS and against Proposed on the same n and seeds
(:func:`analysis.comparisons.paired_comparisons`, on the test Dice, or on the validation statistic where no
run was evaluated on a test set), and the mean cost per run with the prerequisites attributed
(:mod:`analysis.cost`). Only Table 1's γ, λ enter; the table is empty unless the experiment varied ``ssl``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.comparisons import paired_comparisons
from analysis.cost import arm, sig3
from analysis.intervals import t_interval
from analysis.paper import METHOD_LABELS
from analysis.plotting import main_setting
from analysis.run_stats import BASE_CONDITION
from analysis.stats import Analysis
from analysis.tables import Table1, df_markdown
from analysis.test_metrics import TestSet, final_main
from suite.config import METHODS, SSL_TERMS

SSL_LABELS = {"none": "–", "mean_teacher": "Mean Teacher", "entropy_min": "entropy min.", "cps": "CPS"}
REFERENCES = ("fs", "proposed")  # the arms every other is paired with


@dataclass
class SslBaselines:
    table: pd.DataFrame  # one row per arm x n (numbers; the Markdown formats them)
    paired: pd.DataFrame  # paired_comparisons rows, method_a / method_b being arms
    which: str  # the paired Dice: "test" or "validation"


def _runs(a: Analysis, t1: Table1) -> pd.DataFrame:
    """The included segmenter runs of Table 1's setting with their arm."""
    rs = a.run_stats
    runs = main_setting(rs.loc[rs["included"] & (rs["stage"] == "segmenter")], t1).copy()
    runs["ssl"] = runs["ssl"].fillna("none").astype(str)
    runs["arm"] = [arm(m, s) for m, s in zip(runs["method"], runs["ssl"], strict=True)]
    return runs


def _ci(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    ti = t_interval(values[np.isfinite(values)], confidence) if np.isfinite(values).any() else None
    return (ti.mean, ti.low, ti.high) if ti is not None else (math.nan, math.nan, math.nan)


def ssl_baselines(a: Analysis, t1: Table1, ts: TestSet, costs: pd.DataFrame) -> SslBaselines:
    """The table's numbers (see the module docstring); empty frames when ``ssl`` did not vary."""
    if "ssl" not in a.cond or a.run_stats.empty:
        return SslBaselines(pd.DataFrame(), pd.DataFrame(), "validation")
    runs = _runs(a, t1)
    extra = [c for c in a.cond if c not in BASE_CONDITION and c != "ssl"]
    test = final_main(ts.per_run)[["run_id", "dice", "hd95_mm"]] if not ts.empty else pd.DataFrame()
    which = "test" if len(test) else "validation"
    m = runs.merge(test, on="run_id", how="left") if len(test) else runs.assign(dice=np.nan, hd95_mm=np.nan)
    cost = costs[["run_id", "attributed_device_seconds", "attributed_cpu_seconds"]] if len(costs) else None
    m = m.merge(cost, on="run_id", how="left") if cost is not None else m
    # the paired Dice: the test set's where there is one (0..1), else the validation statistic (as logged)
    frame = m.assign(method=m["arm"], stat=m["dice"] if which == "test" else m["stat"])
    frame = frame.loc[frame["stat"].notna()]
    arms = list(dict.fromkeys(frame["method"]))
    pairs = tuple((x, ref) for ref in REFERENCES if ref in arms for x in arms if x != ref)
    scale = 100.0 if which == "test" else a.scale
    paired = paired_comparisons(
        frame, [*BASE_CONDITION, *extra], pairs=pairs, confidence=a.confidence, scale=scale
    )
    rows = []
    keys = ["n_labeled", "method", "ssl", *extra]
    for key, g in m.groupby(keys, sort=False, dropna=False):
        rec = dict(zip(keys, key, strict=True))
        rec["arm"] = g["arm"].iloc[0]
        rec["seeds"] = int(g["unit"].nunique())
        for col, values, k in (
            ("test_dice", g["dice"], 100.0),
            ("test_hd95_mm", g["hd95_mm"], 1.0),
            ("val_stat", g["stat"], a.scale),
        ):
            mean, low, high = _ci(values.to_numpy(dtype=np.float64) * k, a.confidence)
            rec.update({f"{col}_mean": mean, f"{col}_low": low, f"{col}_high": high})
        for ref in REFERENCES:
            p = paired.loc[(paired["method_a"] == rec["arm"]) & (paired["method_b"] == ref)]
            p = p.loc[p["n_labeled"] == rec["n_labeled"]]
            for s in ("mean_diff", "ci_low", "ci_high", "n_pairs"):
                rec[f"vs_{ref}_{s}"] = float(p[s].iloc[0]) if len(p) == 1 else math.nan
        for f, out in (("attributed_device_seconds", "device_h"), ("attributed_cpu_seconds", "cpu_h")):
            rec[out] = float(g[f].mean() / 3600) if f in g.columns and g[f].notna().any() else math.nan
        rows.append(rec)
    table = pd.DataFrame(rows)
    order = {(mm, s): (METHODS.index(mm), SSL_TERMS.index(s)) for mm in METHODS for s in SSL_TERMS}
    table["_o"] = [order.get((mm, s), (99, 99)) for mm, s in zip(table["method"], table["ssl"], strict=True)]
    table = table.sort_values(["n_labeled", "_o", *extra], kind="stable").drop(columns="_o")
    return SslBaselines(table.reset_index(drop=True), paired, which)


def _cell(mean: float, low: float, high: float, nd: int = 1) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{nd}f}" + (f" [{low:.{nd}f}, {high:.{nd}f}]" if math.isfinite(low) else "")


def _delta(r: pd.Series, ref: str, scale: float) -> str:
    mean = r[f"vs_{ref}_mean_diff"]
    if not math.isfinite(mean):
        return "–"
    lo, hi = r[f"vs_{ref}_ci_low"], r[f"vs_{ref}_ci_high"]
    ci = f" [{lo * scale:+.1f}, {hi * scale:+.1f}]" if math.isfinite(lo) else ""
    return f"{mean * scale:+.1f}{ci} ({int(r[f'vs_{ref}_n_pairs'])})"


def ssl_baselines_frame(x: SslBaselines, scale: float) -> pd.DataFrame:
    """The table as shown (and written to ``tables/ssl_baselines.csv`` as numbers)."""
    rows = []
    for _, r in x.table.iterrows():
        rec = {
            "n": int(r["n_labeled"]),
            "method": METHOD_LABELS.get(r["method"], r["method"]),
            "ssl": SSL_LABELS.get(r["ssl"], r["ssl"]),
            "seeds": int(r["seeds"]),
            "test Dice %": _cell(r["test_dice_mean"], r["test_dice_low"], r["test_dice_high"]),
            "test HD95 mm": _cell(r["test_hd95_mm_mean"], r["test_hd95_mm_low"], r["test_hd95_mm_high"]),
            "val Dice % (last W)": _cell(r["val_stat_mean"], r["val_stat_low"], r["val_stat_high"]),
        }
        for ref in REFERENCES:
            rec[f"Δ vs {METHOD_LABELS[ref]}"] = _delta(r, ref, scale)
        rec["device-h/run"] = sig3(r["device_h"])
        rec["CPU-h/run"] = sig3(r["cpu_h"])
        rows.append(rec)
    return pd.DataFrame(rows)


def ssl_baselines_markdown(x: SslBaselines, confidence: float, val_scale: float) -> list[str]:
    """The report's section (no lines when the table is empty)."""
    if x.table.empty:
        return []
    conf = int(round(confidence * 100))
    scale = 100.0 if x.which == "test" else val_scale
    lines = [
        "## Semi-supervised baselines",
        "",
        "Each method alone and with a semi-supervised term (`ssl`: Mean Teacher, entropy minimisation, cross "
        "pseudo supervision; sources and departures: `docs/ssl.md`) under one protocol: the same splits, "
        "seeds, test patients and cost accounting. FS with a term is the plain baseline; Proposed and Oracle "
        "with one add it to the size constraint. Cells: mean over seeds "
        f"[{conf}% t-interval]. Test: the final checkpoint on the held-out test set (LV; HD95 over the "
        "volumes where it is defined). Val: the paper statistic (mean validation Dice over the last W "
        f"epochs). Δ: paired differences of the {x.which} Dice in points against FS and against Proposed "
        "(no term), same n and seeds (pairs in parentheses). Cost: mean per run, its share of the regressor "
        "attributed (device-hours: GPU-hours on GPU).",
        "",
        df_markdown(ssl_baselines_frame(x, scale), max_rows=200),
        "Files: `tables/ssl_baselines.csv`, `tables/ssl_paired.csv`.",
        "",
    ]
    return lines
