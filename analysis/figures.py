"""The report's figures (seaborn on the matplotlib Agg backend), each saved as PNG and SVG.

* ``fig2_dice_vs_n``: Dice vs number of labeled patients per method, across-seed 95% t-interval error bars
  (paper Fig. 2); the published values dashed when the cohort is ACDC.
* ``fig3_dice_over_epochs``: validation Dice (mean over volumes) per epoch, one panel per n, a line per
  method with a 95% t-band over seeds (paper Fig. 3); the statistic's window shaded.
* ``sensitivity_gamma_lambda``: γ x λ heatmap of the across-seed mean Dice (only when the experiment varied
  them).
* ``regressor_error_vs_n``: the size regressor's validation error (% of the true size) and bound coverage vs
  n.
* ``per_volume_dice``: distribution of per-volume Dice (window means) per n and method.
* ``constraint_in_bounds``: fraction of unlabeled slices inside their size bounds over epochs.
* ``fig4_qualitative``: one validation slice per method and n (image, ground truth, predictions) from each
  segmenter run's ``predictions/val_examples.npz``; skipped with a note when no run wrote one.
* ``dynamics_soft_size``, ``dynamics_bounds``: :mod:`analysis.figures_dynamics` (runs that logged the soft
  size only).

Every function takes the :class:`~analysis.stats.Analysis` (and the Table 1 choice of γ, λ) and returns a
:class:`Figure` (paths + caption) or ``None`` with the reason in ``notes``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.constraint_family import bounded_by_condition
from analysis.figures_dynamics import fig_dynamics_bounds, fig_dynamics_size
from analysis.intervals import t_quantile
from analysis.paper import METHOD_LABELS, paper_frame
from analysis.plotting import (
    Figure,
    boxplot_by_n,
    condition_label,
    facets_by_n,
    label_order_and_palette,
    main_setting,
    method_palette,
    methods_in,
    save_figure,
    themed_pyplot,
)
from analysis.run_stats import BASE_CONDITION
from analysis.stats import Analysis
from analysis.summaries import regressor_keys
from analysis.tables import Table1
from suite.config import METHODS, SEG_METHODS_WITH_PENALTY

log = logging.getLogger("analysis.figures")


# ---------------------------------------------------------------------------------------------- Fig. 2
def fig_dice_vs_n(a: Analysis, t1: Table1, out_dir: Path, notes: list[str]) -> Figure | None:
    df = t1.long
    if df.empty:
        notes.append("Fig. 2 skipped: no finished segmenter run passed the checks")
        return None
    plt, sns = themed_pyplot()
    pal = method_palette(methods_in(df))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    df = df.assign(label=condition_label(df, t1.extra))
    for lab, g in df.groupby("label", sort=False):
        g = g.sort_values("n_labeled")
        m = g["method"].iloc[0]
        yerr = np.vstack([g["dice"] - g["ci_low"], g["ci_high"] - g["dice"]])
        yerr = np.where(np.isfinite(yerr), yerr, 0.0)
        ax.errorbar(g["n_labeled"], g["dice"], yerr=yerr, marker="o", capsize=3, color=pal.get(m), label=lab)
    if t1.compare_paper:
        p = paper_frame()
        for m, g in p.groupby("method", sort=False):
            if m in set(df["method"]):
                ax.plot(
                    g["n_labeled"],
                    g["paper_dice"],
                    ls="--",
                    marker="x",
                    color=pal.get(m),
                    alpha=0.6,
                    label=f"{METHOD_LABELS.get(m, m)} (paper)",
                )
    ax.set_xlabel("labeled patients n")
    ax.set_ylabel("Dice (%)")
    # the Dice axis starts at 0: a zoomed axis makes a 2-point difference look like a large one
    ax.set_ylim(bottom=0)
    ax.set_xticks(sorted(df["n_labeled"].unique()))
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("Mean Dice per method and n (error bars: 95% CI over seeds)")
    cap = (
        "Dice vs number of labeled patients (paper Fig. 2): across-seed mean of the per-run statistic, error "
        "bars the 95% t-interval over seeds (none for one seed)"
        + ("; dashed: the paper's Table 1." if t1.compare_paper else ".")
    )
    return save_figure(fig, out_dir, "fig2_dice_vs_n", cap)


# ---------------------------------------------------------------------------------------------- Fig. 3
def _t_band(mean: pd.Series, sd: pd.Series, n: pd.Series, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    nn = n.to_numpy().astype(float)
    t = np.where(nn > 1, t_quantile(0.5 + confidence / 2, np.maximum(nn - 1, 1)), np.nan)
    half = t * sd.to_numpy() / np.sqrt(nn)
    half = np.where(np.isfinite(half), half, 0.0)
    return mean.to_numpy() - half, mean.to_numpy() + half


def _banded_curves_by_n(
    plt,
    df: pd.DataFrame,
    height: float,
    scale: float,
    confidence: float,
    ylabel: str,
    decorate: Callable[[Any, int], object],
):
    """One panel per n (:func:`facets_by_n`), a line per label over epochs: ``mean`` × ``scale`` with its
    t-band over seeds (``sd``, ``n_units``); ``decorate(ax, n)`` adds what one figure shows besides."""
    ns, fig, axes = facets_by_n(plt, df, height)
    pal = method_palette(methods_in(df))
    for ax, n in zip(axes.flat, ns, strict=False):
        for lab, gl in df.loc[df["n_labeled"] == n].groupby("label", sort=False):
            gl = gl.sort_values("epoch")
            color = pal.get(gl["method"].iloc[0])
            y = gl["mean"] * scale
            lo, hi = _t_band(y, gl["sd"] * scale, gl["n_units"], confidence)
            ax.plot(gl["epoch"], y, color=color, label=lab, lw=1.4)
            ax.fill_between(gl["epoch"], lo, hi, color=color, alpha=0.2, lw=0)
        decorate(ax, n)
        ax.set_title(f"n = {n}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(ns) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    return fig


def fig_dice_over_epochs(a: Analysis, t1: Table1, out_dir: Path, notes: list[str]) -> Figure | None:
    cur = main_setting(a.curves, t1)
    if cur.empty:
        notes.append("Fig. 3 skipped: no per-epoch validation Dice of included runs")
        return None
    plt, sns = themed_pyplot()
    cur = cur.assign(label=condition_label(cur, t1.extra))
    rs = a.run_stats.loc[a.run_stats["included"]]

    def shade_window(ax, n: int) -> None:
        w = rs.loc[rs["n_labeled"] == n]
        if len(w):
            first, last = int(w["window_first_epoch"].min()), int(w["window_last_epoch"].max())
            ax.axvspan(first, last, color="0.85", alpha=0.4, zorder=0)

    fig = _banded_curves_by_n(plt, cur, 3.4, a.scale, a.confidence, "validation Dice (%)", shade_window)
    cap = (
        "Validation Dice over epochs (paper Fig. 3): mean over volumes per epoch, line = mean over seeds, "
        "band = 95% t-interval over seeds; grey = the statistic's window."
    )
    return save_figure(fig, out_dir, "fig3_dice_over_epochs", cap)


# ---------------------------------------------------------------------------------------------- sensitivity
def fig_sensitivity(a: Analysis, out_dir: Path, notes: list[str]) -> Figure | None:
    c = a.conditions
    pen = c.loc[c["method"].isin(SEG_METHODS_WITH_PENALTY)] if len(c) else c
    if pen.empty or (pen["gamma"].nunique() < 2 and pen["lam"].nunique() < 2):
        return None  # the experiment did not vary γ, λ: nothing to show (not an omission)
    plt, sns = themed_pyplot()
    # one row per method and setting of the other varied axes (e.g. update): averaging over them would mix
    extra = [k for k in a.cond if k not in BASE_CONDITION and k in pen.columns]
    rows = [
        (m, dict(zip(extra, vals, strict=True)))
        for m in methods_in(pen)
        for vals in sorted(
            {tuple(r) for r in pen.loc[pen["method"] == m, extra].astype(str).itertuples(index=False)}
        )
    ]
    ns = sorted(pen["n_labeled"].unique())
    fig, axes = plt.subplots(len(rows), len(ns), figsize=(3.6 * len(ns), 3.0 * len(rows)), squeeze=False)
    for i, (m, setting) in enumerate(rows):
        sel = pen["method"] == m
        for k, v in setting.items():
            sel &= pen[k].astype(str) == v
        for j, n in enumerate(ns):
            ax = axes[i, j]
            g = pen.loc[sel & (pen["n_labeled"] == n)]
            if g.empty:
                ax.set_visible(False)
                continue
            piv = g.pivot_table(index="gamma", columns="lam", values="mean", aggfunc="mean") * a.scale
            sns.heatmap(
                piv,
                annot=True,
                fmt=".1f",
                cmap="viridis",
                ax=ax,
                cbar=False,
                vmin=0,
                vmax=100 if a.scale == 100 else None,
            )
            label = "".join(f", {k}={v}" for k, v in setting.items())
            ax.set_title(f"{METHOD_LABELS.get(m, m)}{label}, n = {n}", fontsize=10)
            ax.set_xlabel("λ")
            ax.set_ylabel("γ")
    cap = "Sensitivity: across-seed mean Dice (%) for each γ (rows) and λ (columns)."
    return save_figure(fig, out_dir, "sensitivity_gamma_lambda", cap)


# ---------------------------------------------------------------------------------------------- regressor
def fig_regressor(a: Analysis, out_dir: Path, notes: list[str]) -> Figure | None:
    rr = a.regressor_runs
    if rr is None or rr.empty or "size_abs_err_pct" not in rr.columns:
        notes.append("regressor figure skipped: no finished regressor run with regval metrics")
        return None
    plt, sns = themed_pyplot()
    panels = [c for c in ("size_abs_err_pct", "bounds_ok") if c in rr.columns]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.8 * len(panels), 3.6), squeeze=False, layout="constrained"
    )
    labels = {
        "size_abs_err_pct": "size error (% of true size)",
        "bounds_ok": "true size inside bounds (fraction)",
    }
    ns = sorted(rr["n_labeled"].unique())
    span = (max(ns) - min(ns)) if len(ns) > 1 else 1.0
    jit = np.random.default_rng(0).uniform(-0.015, 0.015, len(rr)) * span  # display only
    by = a.regressor_by_n.sort_values("n_labeled")
    # regressors that predict different targets (the constraints space) are separate lines, never pooled
    keys = [c for c in regressor_keys(by) if c != "n_labeled"]

    def variant(df: pd.DataFrame) -> pd.Series:
        if not keys:
            return pd.Series("", index=df.index)
        return df[keys].astype(str).apply(lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1)

    rr, by = rr.assign(_v=variant(rr).to_numpy()), by.assign(_v=variant(by).to_numpy())
    for ax, col in zip(axes.flat, panels, strict=True):
        for i, (name, g) in enumerate(by.groupby("_v", sort=True)):
            runs = rr["_v"] == name
            color = "C3" if not keys else f"C{i}"
            ax.scatter(
                rr.loc[runs, "n_labeled"].to_numpy() + jit[runs.to_numpy()],
                rr.loc[runs, col],
                color="0.45" if not keys else color,
                alpha=0.6,
                s=14,
                label="runs" if not keys else None,
            )
            mean = g[f"{col}_mean"].to_numpy()
            yerr = np.vstack([mean - g[f"{col}_ci_low"].to_numpy(), g[f"{col}_ci_high"].to_numpy() - mean])
            yerr = np.where(np.isfinite(yerr), yerr, 0.0)
            label = "mean, 95% CI" if not keys else name
            ax.errorbar(g["n_labeled"], mean, yerr=yerr, fmt="D-", color=color, capsize=4, label=label)
        ax.set_xticks(ns)
        ax.set_xlabel("labeled patients n")
        ax.set_ylabel(labels[col])
    axes.flat[0].legend(fontsize=8)
    cap = (
        "Size regressor on its validation patients (split regval), last epoch: points = runs (seeds), "
        "diamonds = mean with 95% t-interval over seeds"
        + ("; one line per regressor variant (they predict different targets)." if keys else ".")
    )
    return save_figure(fig, out_dir, "regressor_error_vs_n", cap)


# ---------------------------------------------------------------------------------------------- per volume
def fig_per_volume(a: Analysis, t1: Table1, out_dir: Path, notes: list[str]) -> Figure | None:
    pv = a.per_volume
    if pv.empty:
        notes.append("per-volume figure skipped: no per-volume Dice of included runs")
        return None
    plt, _ = themed_pyplot()
    cols = ["run_id", "method", "n_labeled", "gamma", "lam", *t1.extra]
    m = pv.merge(a.run_stats[[c for c in cols if c in a.run_stats.columns]], on="run_id")
    m = main_setting(m, t1)
    m = m.assign(dice_pct=m["dice"] * a.scale, label=condition_label(m, t1.extra))
    order, pal = label_order_and_palette(m)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * m["n_labeled"].nunique() * len(order) / 2), 4.0))
    boxplot_by_n(ax, m, "dice_pct", "per-volume Dice (%)", order, pal)
    cap = (
        "Per-volume Dice: each point of a box is one validation volume of one run (its mean over the "
        "window epochs), pooled over seeds."
    )
    return save_figure(fig, out_dir, "per_volume_dice", cap)


# ---------------------------------------------------------------------------------------------- in bounds
def fig_in_bounds(a: Analysis, t1: Table1, out_dir: Path, notes: list[str]) -> Figure | None:
    c = main_setting(a.constraint, t1) if len(a.constraint) else a.constraint
    if c.empty:
        notes.append("constraint figure skipped: no 'in_bounds' rows logged by included runs")
        return None
    plt, sns = themed_pyplot()
    c = c.assign(label=condition_label(c, t1.extra))
    fig = _banded_curves_by_n(
        plt, c, 3.2, 1.0, a.confidence, "unlabeled slices in bounds", lambda ax, n: ax.set_ylim(-0.02, 1.02)
    )
    keys = [k for k in a.cond if k in c.columns and k != "stage"]
    settings = sorted(set(bounded_by_condition(a, keys)["bounded"]))
    what = settings[0] if len(settings) == 1 else "each condition's: the Constraint satisfaction table"
    cap = (
        "Constraint satisfaction: fraction of unlabeled training slices that satisfy every constraint of "
        f"their run ({what}), per epoch (mean over seeds, 95% t-band)."
    )
    return save_figure(fig, out_dir, "constraint_in_bounds", cap)


# ---------------------------------------------------------------------------------------------- Fig. 4
def _load_examples(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in ("image", "label", "pred") if k in z.files}
            for k in ("volume", "slice_index", "lv_channel"):
                if k in z.files:
                    d[k] = z[k]
    except (OSError, ValueError):
        return None
    if (
        {"image", "label", "pred"} - set(d)
        or d["image"].ndim != 3
        or d["pred"].shape != d["image"].shape
        or d["label"].shape != d["image"].shape
        or len(d["image"]) == 0
    ):
        return None
    return d


def fig_qualitative(a: Analysis, t1: Table1, out_dir: Path, notes: list[str]) -> Figure | None:
    rs = main_setting(a.run_stats.loc[a.run_stats["included"]], t1) if len(a.run_stats) else a.run_stats
    if rs.empty:
        notes.append("Fig. 4 skipped: no included segmenter run")
        return None
    runs = a.experiment.runs.set_index("run_id")
    chosen: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    bad = 0
    for (n, m), g in rs.sort_values(["seed", "split_seed"]).groupby(["n_labeled", "method"], sort=True):
        for rid in g["run_id"]:
            p = Path(runs.at[rid, "path"]) / "predictions" / "val_examples.npz"
            if p.exists():
                d = _load_examples(p)
                if d is None:
                    bad += 1
                    continue
                # the run records which output channel is the LV (4-channel heads: 3); older runs: classes
                recorded = d.pop("lv_channel", None)
                multi = "classes" in runs.columns and str(runs.at[rid, "classes"]) == "multi"
                d["lv"] = recorded if recorded is not None else np.array(3 if multi else 1)
                d["seed"] = np.array(int(runs.at[rid, "seed"]))
                chosen[(int(n), str(m))] = d
                break
    if bad:
        notes.append(f"{bad} val_examples.npz file(s) unreadable or malformed, ignored")
    if not chosen:
        notes.append("Fig. 4 (qualitative) skipped: no segmenter run wrote predictions/val_examples.npz")
        return None
    plt, _ = themed_pyplot()
    first = next(iter(chosen.values()))
    lvc = int(first["lv"])
    # the example slice: the one with the largest ground-truth LV among the fixed set (same for every run)
    k = int(np.argmax([(lab == lvc).sum() for lab in first["label"]]))
    ns = sorted({n for n, _ in chosen})
    methods = [m for m in METHODS if any(mm == m for _, mm in chosen)]
    methods += sorted({m for _, m in chosen} - set(methods))
    ncol = 2 + len(methods)
    fig, axes = plt.subplots(len(ns), ncol, figsize=(2.0 * ncol, 2.1 * len(ns)), squeeze=False)
    cmap_overlay = plt.get_cmap("autumn")
    for i, n in enumerate(ns):
        ref = next(chosen[(n, m)] for m in methods if (n, m) in chosen)
        img = ref["image"][k % len(ref["image"])]
        gt = ref["label"][k % len(ref["label"])] == lvc
        panels = [("image", None), ("ground truth", gt)] + [
            (
                METHOD_LABELS.get(m, m),
                chosen[(n, m)]["pred"][k % len(chosen[(n, m)]["pred"])] == lvc
                if (n, m) in chosen
                else "missing",
            )
            for m in methods
        ]
        for j, (title, mask) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, cmap="gray", interpolation="nearest")
            if isinstance(mask, np.ndarray):
                ax.imshow(
                    np.ma.masked_where(~mask, mask.astype(float)),
                    cmap=cmap_overlay,
                    alpha=0.55,
                    vmin=0,
                    vmax=1,
                    interpolation="nearest",
                )
            elif mask == "missing":
                ax.text(0.5, 0.5, "no run", transform=ax.transAxes, ha="center", va="center", color="w")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"n = {n}", fontsize=9)
    vol = str(first["volume"][k]) if "volume" in first else "?"
    sl = int(first["slice_index"][k]) if "slice_index" in first else -1
    cap = (
        f"One validation slice ({vol}, slice {sl}) per method and n (paper Fig. 4): LV of the ground truth "
        "and of each method's final model, from the lowest seed of each condition."
    )
    return save_figure(fig, out_dir, "fig4_qualitative", cap)


def make_figures(a: Analysis, t1: Table1, out_dir: Path) -> tuple[list[Figure], list[str]]:
    """All figures that the data allow; returns them and notes on the ones skipped."""
    notes: list[str] = []
    figs = []
    for fn in (
        lambda: fig_dice_vs_n(a, t1, out_dir, notes),
        lambda: fig_dice_over_epochs(a, t1, out_dir, notes),
        lambda: fig_sensitivity(a, out_dir, notes),
        lambda: fig_regressor(a, out_dir, notes),
        lambda: fig_per_volume(a, t1, out_dir, notes),
        lambda: fig_in_bounds(a, t1, out_dir, notes),
        lambda: fig_qualitative(a, t1, out_dir, notes),
        lambda: fig_dynamics_size(a, out_dir, notes),
        lambda: fig_dynamics_bounds(a, out_dir, notes),
    ):
        f = fn()
        if f is not None:
            figs.append(f)
    return figs, notes
