"""The figures of the section "Training dynamics against the bounds" (:mod:`analysis.dynamics`), one panel
per condition (:func:`analysis.plotting.facet_grid`), lines = means over seeds:

* ``dynamics_soft_size``: the soft LV size of the unlabeled slices against the target R, and the soft size on
  the empty slices, over epochs (pixels, symmetric log axis: an early soft size of thousands of pixels and a
  target of a hundred are both readable, and 0 has a place);
* ``dynamics_bounds``: the shares of slices above their upper and below their lower bound over epochs.

Drawn only when runs logged the soft size; the section renders them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.plotting import Figure, facet_grid, save_figure, themed_pyplot
from analysis.run_stats import condition_keys, condition_text, varying_columns
from analysis.stats import Analysis

NAMES = ("dynamics_soft_size", "dynamics_bounds")
SIZE_SERIES = {
    "soft_size": "soft size",
    "target_size": "target R",
    "soft_size_empty": "soft size, empty slices",
}
BOUND_SERIES = {"above_bounds": "above the upper bound", "below_bounds": "below the lower bound"}


def _panels(a: Analysis, series: dict[str, str]) -> list[tuple[str, pd.DataFrame]]:
    """(condition label, its rows of ``series`` with a ``series`` column) per condition, in table order."""
    d = a.dynamics
    keys = [c for c in a.cond if c != "stage"]
    d = d.loc[d["metric"].isin(list(series))]
    d = d.assign(_k=condition_keys(d, keys), series=d["metric"].map(series))
    shown = varying_columns(d, [c for c in keys if c != "method"])
    groups = dict(tuple(d.groupby("_k", sort=False)))
    order = dict.fromkeys(condition_keys(a.dynamics_table, keys))  # the table's: the paper's method order
    return [(condition_text(groups[k].iloc[0].to_dict(), shown), groups[k]) for k in order if k in groups]


def _draw(a: Analysis, series: dict[str, str], ylabel: str, symlog: bool):
    plt, sns = themed_pyplot()
    from matplotlib.lines import Line2D  # after themed_pyplot: matplotlib loads only when figures are drawn

    panels = _panels(a, series)
    fig, axes = facet_grid(plt, len(panels), 3.2)
    palette = dict(zip(series.values(), sns.color_palette("colorblind", len(series)), strict=True))
    last = max(int(g["epoch"].max()) for _, g in panels)
    for ax, (label, g) in zip(axes.flat, panels, strict=False):
        sns.lineplot(
            data=g.sort_values("epoch"),
            x="epoch",
            y="mean",
            hue="series",
            hue_order=[s for s in series.values() if s in set(g["series"])],
            palette=palette,
            errorbar=None,
            ax=ax,
            legend=False,
        )
        if symlog:
            ax.set_yscale("symlog", linthresh=1.0)
        else:
            ax.set_ylim(-0.02, 1.02)
        # one epoch axis for all: a warm start's curves begin where its first unlabeled epoch was
        ax.set_xlim(0, last)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
    # every series in the legend, also those the first panel lacks (Proposed has no empty slices)
    present = [s for s in series.values() if any(s in set(g["series"]) for _, g in panels)]
    handles = [Line2D([], [], color=palette[s], label=s) for s in present]
    axes.flat[0].legend(handles=handles, fontsize=8)
    return fig


def fig_dynamics_size(a: Analysis, out_dir: Path, notes: list[str]) -> Figure | None:
    if a.dynamics.empty:
        return None  # older runs did not log the soft size: no section, nothing to say
    fig = _draw(a, SIZE_SERIES, "pixels (symmetric log)", symlog=True)
    cap = (
        "Soft LV size of the unlabeled slices against its target R, and on the empty slices (upper bound "
        "below one pixel), per epoch and condition; lines = means over seeds."
    )
    return save_figure(fig, out_dir, NAMES[0], cap)


def fig_dynamics_bounds(a: Analysis, out_dir: Path, notes: list[str]) -> Figure | None:
    if a.dynamics.empty:
        return None
    fig = _draw(a, BOUND_SERIES, "share of unlabeled slices", symlog=False)
    cap = (
        "Share of unlabeled slices whose soft LV size is above the upper or below the lower bound, per epoch "
        "and condition; lines = means over seeds."
    )
    return save_figure(fig, out_dir, NAMES[1], cap)
