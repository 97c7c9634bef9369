"""The paper statistic per run, across-seed statistics, paired comparisons and the patient bootstrap.

Definitions (stated in the report exactly like this):

* **Per-run statistic (the paper's Table 1 value).** For each epoch, the mean 3-D Dice over the validation
  volumes (metric ``dice``, split ``val``: one value per patient x frame). The run's value is the mean of
  those per-epoch means over its last ``W`` epochs; its ``±`` is their standard deviation with ddof 0
  (spread over epochs, not over patients or seeds). ``W`` is the run config's ``stat_window`` unless
  overridden. A run that logged fewer than ``W`` complete epochs is flagged ``short`` and excluded: it is
  never averaged over fewer epochs. Runs in progress are excluded unless ``include_partial`` (then flagged
  ``partial``); failed runs are always excluded.
* **Across seeds (the suite's addition).** Runs are grouped by condition (stage, method, n_labeled, γ, λ and
  any other config field the experiment varied; γ, λ only count for proposed/oracle). The unit is the run's
  seed and split seed. Per condition: mean, standard deviation (ddof 1) and a t-interval
  ``mean ± t_{1-α/2, k-1} · sd/√k`` of the k per-run statistics (Student t quantile, ``scipy.special.stdtrit``
  = ``scipy.stats.t.ppf``). Fewer than 5 units get a visible warning; one unit gets no interval.
* **Paired comparisons.** Methods A and B at the same n (and the same γ, λ when both use them) are paired by
  unit; the paired differences A−B get the same t-interval and the effect size Cohen's
  ``d_z = mean(diff) / sd(diff, ddof 1)``.
* **Patient bootstrap (on request).** Validation patients are resampled with replacement (both frames of a
  patient together), the per-run statistics recomputed with the resampled volumes (the same draw for all runs
  that share the validation set), the condition mean taken per replicate; percentile interval. It measures
  how much the condition mean depends on which validation patients were drawn, for the seeds at hand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.comparisons import (
    MIN_SEEDS,
    across_seeds,
    bootstrap_patients,
    paired_comparisons,
    per_volume_window,
)
from analysis.dynamics import dynamics_curves, dynamics_table
from analysis.escape import escape_table
from analysis.load import Experiment
from analysis.per_seed import per_seed_table
from analysis.power import ALPHA, POWER, power_table
from analysis.run_stats import BASE_CONDITION, condition_columns, epoch_means, run_statistics
from analysis.summaries import constraint_satisfaction, epoch_curves, regressor_summary

log = logging.getLogger("analysis.stats")


@dataclass
class Analysis:
    """Every table the report needs, computed once by :func:`analyse`."""

    experiment: Experiment
    cond: list[str]
    per_epoch: pd.DataFrame
    run_stats: pd.DataFrame
    conditions: pd.DataFrame
    paired: pd.DataFrame
    per_volume: pd.DataFrame
    bootstrap: pd.DataFrame
    regressor_runs: pd.DataFrame
    regressor_by_n: pd.DataFrame
    constraint: pd.DataFrame
    curves: pd.DataFrame
    window: int | None
    include_partial: bool
    confidence: float
    scale: float  # 100 when Dice is logged as a fraction (tables in %), 1 when already in %
    warnings: list[str] = field(default_factory=list)
    power: pd.DataFrame = field(default_factory=pd.DataFrame)  # analysis.power.power_table of ``paired``
    # each seed and the paired difference against FS per condition (analysis.per_seed)
    per_seed: pd.DataFrame = field(default_factory=pd.DataFrame)
    # the soft size against the bounds, every epoch (long) and at the chosen epochs (analysis.dynamics);
    # empty for runs that did not log it
    dynamics: pd.DataFrame = field(default_factory=pd.DataFrame)
    dynamics_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    escape: pd.DataFrame = field(default_factory=pd.DataFrame)  # analysis.escape.escape_table


def analyse(
    exp: Experiment,
    *,
    window: int | None = None,
    include_partial: bool = False,
    bootstrap: int = 0,
    confidence: float = 0.95,
    bootstrap_seed: int = 0,
    alpha: float = ALPHA,
    power: float = POWER,
) -> Analysis:
    """Compute every statistic of the report (see the module docstring for the definitions)."""
    per_epoch = epoch_means(exp)
    rs = run_statistics(exp, window=window, include_partial=include_partial, per_epoch=per_epoch)
    seg = exp.runs.loc[exp.runs["stage"] == "segmenter"]
    cond = condition_columns(exp, seg) if len(seg) else list(BASE_CONDITION)
    conditions = across_seeds(rs, cond, confidence=confidence)
    finite = per_epoch["value"].to_numpy(dtype=np.float64, na_value=np.nan)
    finite = finite[np.isfinite(finite)]
    scale = 1.0 if finite.size and finite.max() > 1.0 + 1e-9 else 100.0
    paired = paired_comparisons(rs, cond, confidence=confidence, scale=scale)
    pv = per_volume_window(exp, rs)
    boot = (
        bootstrap_patients(rs, pv, cond, n_boot=bootstrap, seed=bootstrap_seed, confidence=confidence)
        if bootstrap > 0 and not pv.empty
        else pd.DataFrame()
    )
    reg_runs, reg_n = regressor_summary(exp, include_partial=include_partial, confidence=confidence)
    cons = constraint_satisfaction(exp, rs, cond)
    curves = epoch_curves(per_epoch, rs, cond)
    dyn = dynamics_curves(exp, rs, cond)
    a = Analysis(
        experiment=exp,
        cond=cond,
        per_epoch=per_epoch,
        run_stats=rs,
        conditions=conditions,
        paired=paired,
        per_volume=pv,
        bootstrap=boot,
        regressor_runs=reg_runs,
        regressor_by_n=reg_n,
        constraint=cons,
        curves=curves,
        window=window,
        include_partial=include_partial,
        confidence=confidence,
        scale=scale,
        per_seed=per_seed_table(rs, conditions, paired, cond, scale),
        dynamics=dyn,
        dynamics_table=dynamics_table(dyn, cons, curves, cond, scale),
        escape=escape_table(per_epoch, rs, exp.runs, cond, scale),
    )
    a.power = power_table(paired, alpha, power)
    a.warnings = collect_warnings(a)
    for w in a.warnings:
        log.warning("%s", w)
    return a


def collect_warnings(a: Analysis) -> list[str]:
    """Plain-language warnings: exclusions, few seeds, mixed provenance."""
    out = list(a.experiment.warnings)
    rs = a.run_stats
    if len(rs):
        for flag, what in (
            ("short", "shorter than the window (not averaged, excluded)"),
            ("partial", "in progress"),
            ("failed", "failed"),
            ("no-metric", "without Dice rows"),
            ("nan", "with non-finite Dice"),
        ):
            sel = rs.loc[rs["flag"] == flag]
            if flag == "partial":
                exc = sel.loc[~sel["included"]]
                inc = sel.loc[sel["included"]]
                if len(exc):
                    out.append(
                        f"{len(exc)} segmenter run(s) in progress excluded (use --include-partial): "
                        + ", ".join(exc["run_id"].head(8))
                        + (" …" if len(exc) > 8 else "")
                    )
                if len(inc):
                    out.append(
                        f"{len(inc)} run(s) still in progress INCLUDED on request: their values may change"
                    )
                continue
            if len(sel):
                out.append(
                    f"{len(sel)} segmenter run(s) {what}: "
                    + ", ".join(sel["run_id"].head(8))
                    + (" …" if len(sel) > 8 else "")
                )
        odd = rs.loc[rs["included"] & (rs["note"] != "") & (rs["flag"] == "ok")]
        for _, r in odd.head(10).iterrows():
            out.append(f"run {r['run_id']}: {r['note']}")
    c = a.conditions
    if len(c):
        few = c.loc[c["few_seeds"]]
        if len(few):
            ks = sorted(set(int(k) for k in few["n_units"]))
            out.append(
                f"{len(few)} of {len(c)} conditions have fewer than {MIN_SEEDS} seeds (units: "
                f"{', '.join(map(str, ks))}): their intervals are wide or undefined; run more seeds"
            )
        mixed = c.loc[c["windows"].str.contains(",")]
        if len(mixed):
            out.append(f"{len(mixed)} conditions mix runs with different windows")
    runs = a.experiment.runs
    for col, what in (("data_hash", "prepared datasets"), ("env_git_sha", "code versions (git sha)")):
        if col in runs.columns:
            vals = runs[col].dropna().astype(str).unique()
            if len(vals) > 1:
                out.append(f"runs come from {len(vals)} different {what}: {', '.join(vals[:4])}")
    if a.regressor_runs is not None and len(a.regressor_runs) == 0:
        regs = runs.loc[runs["stage"] == "regressor"]
        if len(regs):
            out.append(f"{len(regs)} regressor run(s) but none finished with regval metrics")
    return out
