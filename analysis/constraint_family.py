"""The constraint family table (the ``constraints`` space): Dice per class for every constraint × scheme ×
constrained classes, per method, with FS beside them.

A cell is the across-seed mean ± sd (ddof 1; no sd for one seed) of the per-run paper statistic (the mean of
the per-epoch mean 3-D Dice over the last W epochs, ``analysis.stats``) of that class: ``dice`` for the LV,
``dice_rv`` / ``dice_myo`` for the RV and myocardium (logged when the run trains or constrains them). Runs
that leave a field at its default do not record it in their identity; the table shows the default (the
paper: LV, size, penalty), and "–" where a method has no constraint (FS, Proposals).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.run_stats import epoch_means, run_statistics
from analysis.stats import Analysis
from analysis.tables import df_markdown
from suite.config import SEG_METHODS_WITH_PENALTY, RunConfig

AXES = ("constraint", "scheme", "constrained")  # the rows: constraint x scheme x classes
CLASSES = {"lv": "LV", "all": "RV+Myo+LV"}  # the values of `constrained`, as the report names them
SCHEMES = {"penalty": "quadratic penalty", "logbarrier": "log-barrier"}
CLASS_METRICS = (("LV", "dice"), ("RV", "dice_rv"), ("Myo", "dice_myo"))


def _default(name: str) -> str:
    return str(RunConfig.__dataclass_fields__[name].default)


def _class_stats(a: Analysis, metric: str) -> pd.Series:
    """run_id → the paper statistic of ``metric`` (NaN where the run did not log it or is excluded)."""
    if metric == "dice":
        rs = a.run_stats
    else:
        pe = epoch_means(a.experiment, metric=metric, fallback_metric=f"dice_mean{metric[len('dice') :]}")
        if pe.empty:
            return pd.Series(dtype=float)
        rs = run_statistics(a.experiment, window=a.window, include_partial=a.include_partial, per_epoch=pe)
    if rs.empty:
        return pd.Series(dtype=float)
    return rs.set_index("run_id")["stat"].where(rs.set_index("run_id")["included"])


def constraint_family_table(a: Analysis) -> pd.DataFrame:
    """One row per method × n × (constraint, scheme, constrained): seeds and Dice % of each class.

    Empty when the experiment did not vary any of the three axes."""
    runs = a.experiment.runs
    if not any(c in a.cond for c in AXES) or a.run_stats.empty:
        return pd.DataFrame()
    seg = runs.loc[runs["stage"] == "segmenter"].set_index("run_id")
    inc = a.run_stats.loc[a.run_stats["included"], ["run_id", "method", "n_labeled"]].copy()
    for ax in AXES:
        raw = seg[ax] if ax in seg.columns else pd.Series(index=seg.index, dtype=object)
        vals = raw.reindex(inc["run_id"]).fillna(_default(ax)).astype(str).to_numpy()
        inc[ax] = np.where(inc["method"].isin(SEG_METHODS_WITH_PENALTY), vals, "–")
    names = []
    for name, metric in CLASS_METRICS:
        inc[name] = inc["run_id"].map(_class_stats(a, metric)).astype(float) * a.scale
        names.append(name)
    keys = ["method", "n_labeled", *AXES]
    rows = []
    for key, g in inc.groupby(keys, sort=True):
        row = dict(zip(keys, key, strict=True))
        row["seeds"] = len(g)
        for name in names:
            v = g[name].dropna().to_numpy()
            row[f"{name} %"] = _cell(v)
        rows.append(row)
    out = pd.DataFrame(rows)
    out["constrained"] = out["constrained"].replace(CLASSES)
    order = {m: i for i, m in enumerate(("fs", "proposals", "proposed", "oracle"))}
    out = out.sort_values(
        ["n_labeled", "method", *AXES], key=lambda s: s.map(order) if s.name == "method" else s, kind="stable"
    )
    return out.rename(columns={"constrained": "classes"}).reset_index(drop=True)


def bounded(config: Mapping[str, Any]) -> str:
    """What a Proposed or Oracle run's unlabeled term bounds, in words, from its config fields (the defaults
    where a run did not record one): ``LV size (quadratic penalty)``, ``RV+Myo+LV size+centroid
    (log-barrier)``."""
    v: dict[str, str] = {}
    for ax in AXES:
        value = config.get(ax)
        v[ax] = value if isinstance(value, str) else _default(ax)
    scheme = SCHEMES.get(v["scheme"], v["scheme"])
    return f"{CLASSES.get(v['constrained'], v['constrained'])} {v['constraint']} ({scheme})"


def bounded_by_condition(a: Analysis, keys: list[str]) -> pd.DataFrame:
    """``keys`` (condition columns) and ``bounded`` (:func:`bounded`) of the included Proposed and Oracle
    runs, one row per condition: the constraint fields either vary (then they are condition columns) or
    are the same for every run, so a condition has one."""
    rs = a.run_stats
    if rs.empty:
        return pd.DataFrame(columns=[*keys, "bounded"])
    inc = rs.loc[rs["included"] & rs["method"].isin(SEG_METHODS_WITH_PENALTY), [*keys, "run_id"]]
    runs = a.experiment.runs.set_index("run_id")
    inc = inc.assign(bounded=[bounded(runs.loc[r]) for r in inc["run_id"]])
    return inc.drop(columns="run_id").drop_duplicates(keys)


def _cell(v: np.ndarray) -> str:
    if not len(v):
        return "–"
    if len(v) == 1:
        return f"{v[0]:.2f}"
    sd = float(np.std(v, ddof=1))
    return f"{float(np.mean(v)):.2f} ± {sd:.2f}" if math.isfinite(sd) else f"{float(np.mean(v)):.2f}"


def constraint_family_section(a: Analysis) -> list[str]:
    """The report's "Constraint family" section as Markdown lines (none when the table is empty)."""
    t = constraint_family_table(a)
    if t.empty:
        return []
    return [
        "## Constraint family",
        "",
        "Validation Dice per class (%, the paper statistic of each class: mean 3-D Dice over the last W "
        "epochs), across-seed mean ± sd, for each constraint (size, size+centroid) × scheme (quadratic "
        "penalty, log-barrier extension) × constrained classes (LV, or RV+Myo+LV); FS trains the same "
        "network without the unlabeled images. RV/Myo are '–' where a run neither trains nor constrains "
        "them.",
        "",
        df_markdown(t, max_rows=200),
    ]
