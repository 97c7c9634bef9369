"""Training dynamics against the bounds: where the soft LV size of the unlabeled slices sits against its
target and bounds over the epochs, on the slices whose bounds allow no LV pixel, and what the validation Dice
does meanwhile.

The penalty methods log per epoch (split ``train``, ``suite.constraints.dynamics_metrics``): ``soft_size``
and ``target_size`` (mean over the epoch's unlabeled slices, pixels), ``above_bounds`` / ``below_bounds``
(fractions of slices above their upper / below their lower bound), ``empty_slices`` (fraction whose upper
bound allows no pixel) and ``soft_size_empty`` (their mean soft size; absent without such slices), and with
a ramp ``lam``. A warm-up epoch logs none of them (no unlabeled slice was seen). Runs written before these
metrics existed have none: then every table here is empty and the report has no such section.

Per condition, the mean over its included runs (seeds) at the epochs of :data:`EPOCHS` it logged, its first
and its last logged epoch, beside ``in_bounds`` (:func:`analysis.summaries.constraint_satisfaction`) and
the validation Dice (:func:`analysis.summaries.epoch_curves`): one home for each, read here, never
recomputed. :func:`dynamics_summaries` says in words what those numbers show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import Experiment
from analysis.run_stats import (
    BASE_CONDITION,
    condition_keys,
    condition_text,
    sort_conditions,
    varying_columns,
)
from analysis.summaries import train_curves

# the first epochs (where an early collapse shows) and then a few further out; the first and last logged
# epochs of each condition are added
EPOCHS = (0, 1, 2, 4, 9, 19)
# the names suite.constraints.DYNAMICS logs (not imported: that module loads torch, and `suite report`
# must not; tests/test_report_evidence.py checks that the two agree)
SIZE_METRICS = ("soft_size", "target_size", "above_bounds", "below_bounds", "empty_slices", "soft_size_empty")
LOGGED = (*SIZE_METRICS, "lam")
# the columns of the table at the chosen epochs: the logged ones (the λ of the epoch as ``lam_epoch``: ``lam``
# is the condition's λ), in_bounds, the validation Dice in %
COLUMN = {"lam": "lam_epoch"}
TABLE_METRICS = (*SIZE_METRICS, "lam_epoch", "in_bounds", "dice_pct")
EARLY = 4  # "by epoch 4": the last of the first epochs the summary describes


def dynamics_curves(exp: Experiment, run_stats: pd.DataFrame, cond: list[str]) -> pd.DataFrame:
    """Every epoch of :data:`LOGGED` per condition (:func:`analysis.summaries.train_curves`: ``<cond>,
    metric, epoch, mean, sd, n_units``); empty when no included run logged ``soft_size``."""
    c = train_curves(exp, run_stats, cond, LOGGED)
    if c.empty or not (c["metric"] == "soft_size").any():
        return pd.DataFrame()
    return c


def dynamics_table(
    curves: pd.DataFrame,
    constraint: pd.DataFrame,
    val_curves: pd.DataFrame,
    cond: list[str],
    scale: float,
) -> pd.DataFrame:
    """One row per condition that logged ``soft_size`` and chosen epoch: the condition columns but
    ``stage``, ``epoch``, ``seeds`` (runs that logged ``soft_size`` that epoch) and the mean over seeds of
    each of :data:`TABLE_METRICS` (NaN where not logged; ``dice_pct`` = validation Dice × ``scale``)."""
    if curves.empty:
        return pd.DataFrame()
    keys = [c for c in cond if c != "stage"]
    parts = [curves[[*keys, "metric", "epoch", "mean", "n_units"]].replace({"metric": COLUMN})]
    if len(constraint):
        parts.append(constraint.assign(metric="in_bounds")[parts[0].columns])
    if len(val_curves):
        parts.append(val_curves.assign(metric="dice_pct", mean=val_curves["mean"] * scale)[parts[0].columns])
    long = pd.concat(parts, ignore_index=True)
    long["_k"] = condition_keys(long, keys)
    size = long.loc[long["metric"] == "soft_size"]
    means = long.set_index(["_k", "metric", "epoch"])["mean"].to_dict()
    rows = []
    for k, g in size.groupby("_k", sort=False):
        logged = sorted(int(e) for e in g["epoch"])
        chosen = sorted({e for e in EPOCHS if e in set(logged)} | {logged[0], logged[-1]})
        seeds = dict(zip(g["epoch"].astype(int), g["n_units"].astype(int), strict=True))
        first = g.iloc[0]
        for e in chosen:
            rec: dict[str, Any] = {c: first[c] for c in keys}
            rec.update(epoch=e, seeds=seeds[e])
            rec.update({m: means.get((k, m, e), np.nan) for m in TABLE_METRICS})
            rows.append(rec)
    out = pd.DataFrame(rows, columns=[*keys, "epoch", "seeds", *TABLE_METRICS])
    # the paper's method order, as every other table (the grouping above sorted methods by name)
    return sort_conditions(out, [*(c for c in keys if c not in BASE_CONDITION), "epoch"])


# ---------------------------------------------------------------------------------------------- in words
def _px(v: float) -> str:
    return f"{v:.0f} px" if abs(v) >= 10 else f"{v:.1f} px"


def _pct(v: float) -> str:
    return f"{100 * v:.0f} %" if v == 0 or abs(v) >= 0.01 else f"{100 * v:.1f} %"


def _ranges(epochs: Sequence[int]) -> list[str]:
    """Consecutive epochs as ``0-3``, single ones as ``7``."""
    out: list[list[int]] = []
    for e in epochs:
        if out and e == out[-1][1] + 1:
            out[-1][1] = e
        else:
            out.append([e, e])
    return [f"{a}-{b}" if b > a else f"{a}" for a, b in out]


def _bounds_at(row: Mapping[str, Any]) -> str:
    return (
        f"soft size {_px(row['soft_size'])} (target {_px(row['target_size'])}), {_pct(row['above_bounds'])} "
        f"above, {_pct(row['below_bounds'])} below"
    )


def _summary(rows: pd.DataFrame, val: pd.DataFrame, empty: pd.DataFrame, scale: float) -> str:
    """What one condition's numbers show: the first logged epoch, the last of the first epochs, the last;
    the empty slices; in bounds; λ; the validation Dice (its epochs at 0.0 %, named)."""
    rows = rows.sort_values("epoch")
    r0, rl = rows.iloc[0], rows.iloc[-1]
    e0, el = int(r0["epoch"]), int(rl["epoch"])
    first = f"epoch {e0}" + (" (the first logged)" if e0 > 0 else "")
    out = [
        f"{first}: soft size {_px(r0['soft_size'])} against a target of {_px(r0['target_size'])}, "
        f"{_pct(r0['above_bounds'])} of slices above their upper bound and {_pct(r0['below_bounds'])} "
        "below their lower bound"
    ]
    early = rows.loc[(rows["epoch"] > e0) & (rows["epoch"] <= EARLY) & (rows["epoch"] < el)]
    if len(early):
        r = early.iloc[-1]
        out.append(f"by epoch {int(r['epoch'])}: {_bounds_at(r)}")
    if el > e0:
        out.append(f"at the last epoch ({el}): {_bounds_at(rl)}")
    text = "; ".join(out) + "."
    if len(empty):
        a, b = empty.iloc[0], empty.iloc[-1]
        verb = "falls" if b["mean"] < a["mean"] else "rises" if b["mean"] > a["mean"] else "stays"
        share = rows["empty_slices"].dropna()
        what = f" ({_pct(float(share.mean()))} of slices)" if len(share) else ""
        text += (
            f" On the empty slices{what}, whose bound allows no LV pixel, the soft size {verb} from "
            f"{_px(a['mean'])} at epoch {int(a['epoch'])} to {_px(b['mean'])} at epoch {int(b['epoch'])}."
        )
    ib = rows[["epoch", "in_bounds"]].dropna()
    if len(ib) > 1:
        text += (
            f" In bounds: {_pct(ib['in_bounds'].iloc[0])} of slices at epoch {int(ib['epoch'].iloc[0])}, "
            f"{_pct(ib['in_bounds'].iloc[-1])} at epoch {int(ib['epoch'].iloc[-1])}."
        )
    lam = rows[["epoch", "lam_epoch"]].dropna()
    if len(lam) > 1:
        text += (
            f" λ goes from {lam['lam_epoch'].iloc[0]:.3g} at epoch {int(lam['epoch'].iloc[0])} to "
            f"{lam['lam_epoch'].iloc[-1]:.3g} at epoch {int(lam['epoch'].iloc[-1])}."
        )
    if len(val):
        val = val.sort_values("epoch")
        d = val["mean"].to_numpy() * scale
        ep = val["epoch"].astype(int).to_numpy()
        zero = ep[np.round(d, 1) == 0]  # what the table prints as 0.0
        last = f"{d[-1]:.1f} % at the last epoch ({ep[-1]})"
        if len(zero) == len(ep):
            text += f" The validation Dice is 0.0 % in every epoch ({ep[0]}-{ep[-1]})."
        elif len(zero):
            text += f" The validation Dice is 0.0 % in epochs {', '.join(_ranges(list(zero)))}; it is {last}."
        else:
            text += f" The validation Dice goes from {d[0]:.1f} % at epoch {ep[0]} to {last}."
    return text


def dynamics_summaries(
    table: pd.DataFrame, curves: pd.DataFrame, val_curves: pd.DataFrame, cond: list[str], scale: float
) -> list[tuple[str, str]]:
    """Per condition of :func:`dynamics_table`: (its name, what its numbers show in plain words), e.g.
    "epoch 0: soft size 280 px against a target of 98 px, 80 % of slices above their upper bound ...; on
    the empty slices ... the soft size falls from 275 px at epoch 0 to 3.0 px at epoch 99 ... The validation
    Dice is 0.0 % in epochs 0-3; it is 61.2 % at the last epoch (99)." Generated from the numbers: nothing
    is said that they do not show."""
    if table.empty:
        return []
    keys = [c for c in cond if c != "stage"]
    shown = varying_columns(table, [c for c in keys if c != "method"])
    t = table.assign(_k=condition_keys(table, keys))
    v = val_curves.assign(_k=condition_keys(val_curves, keys)) if len(val_curves) else None
    e = curves.loc[curves["metric"] == "soft_size_empty"]
    e = e.assign(_k=condition_keys(e, keys)).sort_values("epoch")
    out = []
    for k, rows in t.groupby("_k", sort=False):
        label = condition_text(rows.iloc[0].to_dict(), shown)
        val = v.loc[v["_k"] == k] if v is not None else pd.DataFrame()
        out.append((label, _summary(rows, val, e.loc[e["_k"] == k], scale)))
    return out
