"""What every report figure shares: seaborn on the matplotlib Agg backend themed once, PNG + SVG saving, the
method colours, facets by n, and which rows a figure of Table 1's setting shows.

:mod:`analysis.figures` (the paper's figures and the diagnostics) and :mod:`analysis.figures_test_cost` (the
test-set and cost figures) draw with these, so every figure of a report looks and is saved alike.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.run_stats import condition_text
from analysis.tables import Table1
from suite.config import METHODS, SEG_METHODS_WITH_PENALTY

DPI = 110


@dataclass
class Figure:
    name: str
    png: Path
    svg: Path
    caption: str


def figure_lines(f: Figure) -> list[str]:
    """A figure in the report's Markdown: the PNG (its caption as alt text), the caption, the SVG's name."""
    return [f"![{f.caption}](figures/{f.png.name})", "", f"*{f.caption}* (SVG: `figures/{f.svg.name}`)", ""]


_THEMED = False


def facet_grid(plt, panels: int, height: float):
    """``panels`` panels, up to 3 per row, shared y (so that panels compare at a glance), the unused cells of
    the last row hidden: (figure, axes grid)."""
    ncol = min(3, panels)
    nrow = math.ceil(panels / ncol)
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(4.6 * ncol, height * nrow), squeeze=False, sharey=True, layout="constrained"
    )
    for ax in list(axes.flat)[panels:]:
        ax.set_visible(False)
    return fig, axes


def facets_by_n(plt, df, height: float):
    """One panel per labeled count n (:func:`facet_grid`): (sorted n values, figure, axes grid)."""
    ns = sorted(df["n_labeled"].unique())
    fig, axes = facet_grid(plt, len(ns), height)
    return ns, fig, axes


def themed_pyplot():
    """pyplot and seaborn on the Agg backend, themed once per process."""
    global _THEMED
    import matplotlib

    if not _THEMED:
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import seaborn as sns

    if not _THEMED:
        sns.set_theme(style="whitegrid", context="notebook")
        _THEMED = True
    return plt, sns


def save_figure(fig, out_dir: Path, name: str, caption: str) -> Figure:
    plt, _ = themed_pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.savefig(png, dpi=DPI, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    plt.close(fig)
    return Figure(name, png, svg, caption)


def method_palette(methods: list[str]) -> dict[str, tuple]:
    _, sns = themed_pyplot()
    base = sns.color_palette("colorblind", max(len(METHODS), len(methods)))
    known = {m: base[i] for i, m in enumerate(METHODS)}
    extra = [m for m in methods if m not in known]
    for i, m in enumerate(extra):
        known[m] = base[(len(METHODS) + i) % len(base)]
    return known


def main_setting(df: pd.DataFrame, t1: Table1) -> pd.DataFrame:
    """Rows of Table 1's setting: proposed/oracle only at Table 1's γ, λ."""
    if df.empty or t1.gamma is None or t1.lam is None or "gamma" not in df.columns:
        return df
    pen = df["method"].isin(SEG_METHODS_WITH_PENALTY)
    ok = np.isclose(df["gamma"].astype(float), t1.gamma) & np.isclose(df["lam"].astype(float), t1.lam)
    return df.loc[~pen | ok]


def condition_label(df: pd.DataFrame, extra: list[str]) -> pd.Series:
    """Each row's condition in words (:func:`analysis.run_stats.condition_text`): FS beside Oracle variants
    reads "FS", not "FS, scheme=None"."""
    cols = [c for c in extra if c in df.columns]
    recs = df[["method", *cols]].to_dict("records")
    return pd.Series([condition_text(r, cols) for r in recs], index=df.index, dtype=object)


def methods_in(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df["method"]))
    return [m for m in METHODS if m in present] + [m for m in present if m not in METHODS]


def label_order_and_palette(df: pd.DataFrame) -> tuple[list[str], dict[str, Any]]:
    """The condition labels of ``df`` (``label``, ``method`` columns) in the paper's method order, and each
    label's colour: its method's."""
    rank = df["method"].map(lambda m: METHODS.index(m) if m in METHODS else len(METHODS))
    order = list(dict.fromkeys(df.assign(_r=rank).sort_values("_r", kind="stable")["label"]))
    colours = method_palette(methods_in(df))
    pairs = df[["label", "method"]].drop_duplicates()
    return order, {lab: colours.get(m) for lab, m in zip(pairs["label"], pairs["method"], strict=True)}


def boxplot_by_n(ax: Any, df: pd.DataFrame, y: str, ylabel: str, order: list[str], palette: dict) -> None:
    """Boxes of ``y`` per labeled count n, one per condition label (``label``), in ``order``."""
    _, sns = themed_pyplot()
    with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated ``vert``
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*vert.*")
        sns.boxplot(
            data=df,
            x="n_labeled",
            y=y,
            hue="label",
            hue_order=order,
            ax=ax,
            palette=palette,
            fliersize=2,
            linewidth=0.8,
        )
    ax.set_xlabel("labeled patients n")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, title=None)
