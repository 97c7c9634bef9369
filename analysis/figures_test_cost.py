"""The figures of the test-set and cost sections (seaborn, PNG + SVG, like :mod:`analysis.figures`).

* ``test_per_volume``: per-volume 3-D Dice and HD95 on the held-out test set (final checkpoint, LV), a box
  per method and n, pooled over seeds; volumes with an undefined HD95 are left out of that panel (counted
  in the test table).
* ``dice_vs_cost``: each method and n as a point: mean attributed device-hours per run (GPU-hours on GPU)
  against the across-seed mean Dice with its 95% interval (the test Dice when the runs were evaluated on
  the test set, else the validation statistic). Conditions of one method (its ``ssl`` terms, its other
  varied settings) share its colour and differ by marker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.plotting import (
    Figure,
    boxplot_by_n,
    condition_label,
    label_order_and_palette,
    main_setting,
    method_palette,
    methods_in,
    save_figure,
    themed_pyplot,
)
from analysis.stats import Analysis
from analysis.tables import Table1
from analysis.test_metrics import MAIN_CLASS, TestSet

MARKERS = "osD^vP"  # per condition of a method in the Dice-versus-cost figure


def _run_conditions(a: Analysis, extra: list[str]) -> pd.DataFrame:
    cols = ["run_id", "method", "n_labeled", "gamma", "lam", *extra]
    rs = a.run_stats
    return rs.loc[rs["included"], [c for c in cols if c in rs.columns]]


def fig_test_per_volume(
    a: Analysis, t1: Table1, ts: TestSet, out_dir: Path, notes: list[str]
) -> Figure | None:
    r = ts.rows
    sel = r.loc[(r["split"] == "test") & (r["checkpoint"] == "final") & (r["class"] == MAIN_CLASS)]
    if sel.empty:
        notes.append("test per-volume figure skipped: no final-checkpoint LV rows on the test split")
        return None
    m = main_setting(sel.merge(_run_conditions(a, t1.extra), on="run_id"), t1)
    m = m.assign(dice_pct=m["dice"] * 100.0, label=condition_label(m, t1.extra))
    plt, _ = themed_pyplot()
    order, pal = label_order_and_palette(m)
    width = max(6.0, 1.2 * m["n_labeled"].nunique() * len(order) / 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * width, 4.0), layout="constrained")
    for ax, y, ylabel in ((axes[0], "dice_pct", "test Dice (%)"), (axes[1], "hd95_mm", "test HD95 (mm)")):
        boxplot_by_n(ax, m.dropna(subset=[y]), y, ylabel, order, pal)
    for ax in axes:  # Dice and distances from 0: a zoomed axis inflates small differences
        ax.set_ylim(bottom=0)
    cap = (
        "Held-out test set, final checkpoint, LV: per-volume 3-D Dice (left) and HD95 in mm (right), one "
        "point per test volume and run, pooled over seeds; volumes with an undefined HD95 (one of prediction "
        "and truth empty) are not drawn on the right (their count is in the test table)."
    )
    return save_figure(fig, out_dir, "test_per_volume", cap)


def dice_cost_points(a: Analysis, t1: Table1, ts: TestSet, costs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per method and n (Table 1's γ, λ): mean attributed device-hours per run and the Dice mean with its
    interval; and which Dice it is (``test`` or ``validation``)."""
    runs = main_setting(_run_conditions(a, t1.extra), t1)
    c = costs[["run_id", "attributed_device_seconds"]].merge(runs, on="run_id")
    keys = ["method", "n_labeled", *t1.extra]
    hours = c.groupby(keys, dropna=False)["attributed_device_seconds"].mean().div(3600).rename("device_h")
    if not ts.empty:
        tab = ts.table.loc[(ts.table["checkpoint"] == "final") & (ts.table["class"] == MAIN_CLASS)]
        tab = main_setting(tab, t1)
        d = tab[keys].assign(
            dice=tab["dice_mean"] * 100, low=tab["dice_low"] * 100, high=tab["dice_high"] * 100
        )
        which = "test"
    else:
        tab = main_setting(a.conditions, t1) if len(a.conditions) else a.conditions
        if tab.empty:
            return pd.DataFrame(), "validation"
        tab = tab.loc[tab["stage"] == "segmenter"]
        d = tab[keys].assign(
            dice=tab["mean"] * a.scale, low=tab["ci_low"] * a.scale, high=tab["ci_high"] * a.scale
        )
        which = "validation"
    return d.merge(hours.reset_index(), on=keys), which


def fig_dice_vs_cost(
    a: Analysis, t1: Table1, ts: TestSet, costs: pd.DataFrame, out_dir: Path, notes: list[str]
) -> Figure | None:
    pts, which = dice_cost_points(a, t1, ts, costs) if len(costs) else (pd.DataFrame(), "")
    if pts.empty:
        notes.append("Dice-versus-cost figure skipped: no segmenter run with both a cost and a Dice")
        return None
    plt, _ = themed_pyplot()
    pal = method_palette(methods_in(pts))
    pts = pts.assign(label=condition_label(pts, t1.extra))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rank = pts.groupby("method", sort=False)["label"].transform(lambda s: pd.factorize(s)[0])
    marker = dict(zip(pts["label"], (MARKERS[int(k) % len(MARKERS)] for k in rank), strict=True))
    for lab, g in pts.groupby("label", sort=False):
        yerr = np.vstack([g["dice"] - g["low"], g["high"] - g["dice"]])
        yerr = np.where(np.isfinite(yerr), yerr, 0.0)
        ax.errorbar(
            g["device_h"],
            g["dice"],
            yerr=yerr,
            fmt=marker[lab],
            capsize=3,
            color=pal.get(g["method"].iloc[0]),
            label=lab,
        )
        for x, y, n in zip(g["device_h"], g["dice"], g["n_labeled"], strict=True):
            ax.annotate(f"n={int(n)}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    pos = pts["device_h"][pts["device_h"] > 0]
    if len(pos) and pos.max() > 10 * pos.min():
        ax.set_xscale("log")
    ax.set_xlabel("device-hours per run, prerequisites attributed (GPU-hours on GPU)")
    ax.set_ylabel(f"{which} Dice (%)")
    ax.set_ylim(bottom=0)
    if pts["label"].nunique() > 6:  # many conditions (the ssl space's 12): beside the axes, not over points
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        ax.legend(fontsize=8)
    cap = (
        f"Dice versus cost: per method and n, the across-seed mean {which} Dice (error bars: 95% CI over "
        "seeds) against the mean device-hours of a run, its share of the regressor (Proposed) or of the FS "
        "model (Proposals) included."
    )
    return save_figure(fig, out_dir, "dice_vs_cost", cap)
