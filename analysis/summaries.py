"""Diagnostics beside the paper statistic: the regressor's size error, how often the size constraint holds
during training (and any other run-level training metric per epoch), and the validation Dice curves
(Fig. 3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from analysis.intervals import t_interval
from analysis.load import Experiment
from analysis.run_stats import BASE_CONDITION, cat_mask, condition_columns, identity_mask

LV_REG_METRICS = ("size_abs_err", "size_abs_err_pct", "bounds_ok")
# with constrained=all the regressor logs the RV's and myocardium's size error too (suffixed)
REG_METRICS = LV_REG_METRICS + tuple(f"{m}_{c}" for c in ("rv", "myo") for m in LV_REG_METRICS)
# with constraint=size+centroid: pixels, over the present classes, and with constrained=all per class too
REG_METRICS += ("centroid_abs_err", *(f"centroid_abs_err_{c}" for c in ("rv", "myo", "lv")))


def regressor_summary(
    exp: Experiment, *, include_partial: bool = False, confidence: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Regressor size error: per run (last logged epoch of split ``regval``) and per condition across seeds.

    A condition is n plus every regressor identity field that varies across the experiment's regressors
    (:func:`regressor_conditions`: e.g. ``constrained`` and ``constraint`` in the ``constraints`` space, whose
    regressors predict different targets and must not be pooled as seeds). Returns ``(per_run, per_n)``;
    per_n has those columns, ``n_units`` and ``<metric>_mean, _sd, _ci_low, _ci_high`` for each of
    :data:`REG_METRICS` that was logged (``size_abs_err`` pixels, ``size_abs_err_pct``, ``bounds_ok``; with a
    ``_rv`` / ``_myo`` suffix for the other constrained classes).
    """
    statuses = ("finished", "partial") if include_partial else ("finished",)
    regs = exp.runs.loc[(exp.runs["stage"] == "regressor") & exp.runs["status"].isin(statuses)]
    if regs.empty:
        return pd.DataFrame(), pd.DataFrame()
    m = exp.metrics
    sel = (
        cat_mask(m["split"], ["regval"])
        & cat_mask(m["metric"], REG_METRICS)
        & cat_mask(m["run_id"], regs["run_id"])
    )
    sub = m.loc[sel]
    if sub.empty:
        return pd.DataFrame(), pd.DataFrame()
    sub = sub.assign(run=sub["run_id"].astype(str), met=sub["metric"].astype(str))
    last_ep = sub.groupby("run")["epoch"].transform("max")
    last = sub.loc[sub["epoch"] == last_ep].drop_duplicates(["run", "met"], keep="last")
    wide = last.pivot(index="run", columns="met", values="value")
    wide["last_epoch"] = last.groupby("run")["epoch"].max()
    keys = ["n_labeled", *regressor_conditions(exp, regs)]
    masked = identity_mask(exp, regs)
    per_run = masked.set_index("run_id")[[*keys, "seed", "split_seed", "unit", "status"]].join(
        wide, how="inner"
    )
    per_run = per_run.reset_index().rename(columns={"index": "run_id"})
    rows = []
    for values, g in per_run.groupby(keys, sort=True, dropna=False):
        rec: dict[str, Any] = {**dict(zip(keys, values, strict=True)), "n_units": len(g)}
        for met in REG_METRICS:
            if met in g.columns:
                ti = t_interval(g[met].to_numpy(), confidence)
                rec.update(
                    {
                        f"{met}_mean": ti.mean,
                        f"{met}_sd": ti.sd,
                        f"{met}_ci_low": ti.low,
                        f"{met}_ci_high": ti.high,
                    }
                )
        rows.append(rec)
    return per_run, pd.DataFrame(rows)


def regressor_keys(per_n: pd.DataFrame) -> list[str]:
    """The condition columns of :func:`regressor_summary`'s ``per_n``: n and the fields that vary."""
    return [c for c in per_n.columns if c != "n_units" and not c.endswith(_STATS)]


_STATS = ("_mean", "_sd", "_ci_low", "_ci_high")


def regressor_conditions(exp: Experiment, regs: pd.DataFrame) -> list[str]:
    """The regressor identity fields besides n that vary across ``regs`` (the finished regressor runs)."""
    return [c for c in condition_columns(exp, regs) if c not in BASE_CONDITION]


# ---------------------------------------------------------------------------------------------- constraints
def constraint_satisfaction(exp: Experiment, run_stats: pd.DataFrame, cond: list[str]) -> pd.DataFrame:
    """``in_bounds`` (train, fraction of unlabeled slices inside their size bounds) per epoch, across the
    included runs of each condition: columns ``<cond>, epoch, mean, sd, n_units``."""
    out = train_curves(exp, run_stats, cond, ("in_bounds",))
    return out.drop(columns="metric") if len(out) else out


def train_curves(
    exp: Experiment, run_stats: pd.DataFrame, cond: list[str], metrics: Sequence[str]
) -> pd.DataFrame:
    """Run-level training ``metrics`` (split ``train``) per epoch, across the included runs of each
    condition: columns ``<cond>, metric, epoch, mean, sd`` (ddof 1; NaN for one run) and ``n_units`` (the
    runs that logged it that epoch: a warm-up epoch logs no unlabeled-term metric). Empty when none was
    logged."""
    inc = run_stats.loc[run_stats["included"]] if len(run_stats) else run_stats
    if inc.empty:
        return pd.DataFrame()
    m = exp.metrics
    sel = (
        cat_mask(m["split"], ["train"])
        & cat_mask(m["metric"], metrics)
        & cat_mask(m["run_id"], inc["run_id"])
    )
    sub = m.loc[sel, ["run_id", "metric", "epoch", "value"]]
    if sub.empty:
        return pd.DataFrame()
    sub = sub.assign(run_id=sub["run_id"].astype(str), metric=sub["metric"].astype(str))
    sub = sub.drop_duplicates(["run_id", "metric", "epoch"], keep="last")
    sub = sub.merge(inc[["run_id", *cond]], on="run_id")
    g = sub.groupby([*cond, "metric", "epoch"], dropna=False)["value"]
    return g.agg(mean="mean", sd="std", n_units="size").reset_index()


def epoch_curves(per_epoch: pd.DataFrame, run_stats: pd.DataFrame, cond: list[str]) -> pd.DataFrame:
    """Validation Dice per epoch across the included runs of each condition (Fig. 3): ``<cond>, epoch, mean,
    sd, n_units``."""
    inc = run_stats.loc[run_stats["included"]] if len(run_stats) else run_stats
    if inc.empty or per_epoch.empty:
        return pd.DataFrame()
    pe = per_epoch.loc[per_epoch["complete"], ["run_id", "epoch", "value"]]
    pe = pe.assign(run_id=pe["run_id"].astype(str))
    pe = pe.loc[pe["run_id"].isin(inc["run_id"])].merge(inc[["run_id", *cond]], on="run_id")
    g = pe.groupby([*cond, "epoch"], dropna=False)["value"]
    return g.agg(mean="mean", sd="std", n_units="size").reset_index()
