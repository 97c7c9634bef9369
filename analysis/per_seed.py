"""Each seed against FS: per condition, every seed's paper statistic, the across-seed mean with its
t-interval, in how many paired seeds the condition ends above FS and the paired difference with its interval.

Nothing is computed twice: the per-seed values are :func:`analysis.run_stats.run_statistics`' ``stat``, the
mean and interval :func:`analysis.comparisons.across_seeds`' row of the condition, the count and the
paired interval :func:`analysis.comparisons.paired_comparisons`' ``a_better`` / ``n_pairs`` and
``mean_diff``, ``ci_low``, ``ci_high`` of its ``<method> − fs`` row (FS has none of the fields only the
other methods use, γ, λ, ``scheme``...: those label the row, and the pairing is by n, unit and the fields
both have). A seed whose condition ties FS exactly does not count as above it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from analysis.run_stats import condition_key, is_missing

REFERENCE = "fs"
# the table's columns besides the condition's (values in Dice %: the logged values times the scale)
COLUMNS = (
    "per_seed",
    "n_units",
    "mean_pct",
    "ci_low_pct",
    "ci_high_pct",
    "n_pairs",
    "above_fs",
    "diff_pct",
    "diff_low_pct",
    "diff_high_pct",
)


def seed_labels(seeds: Sequence[int], units: Sequence[str]) -> list[str]:
    """``s<seed>`` per run; the full unit (seed and split seed) where one seed occurs twice in a condition."""
    short = [f"s{int(s)}" for s in seeds]
    return short if len(set(short)) == len(short) else [str(u) for u in units]


def per_seed_table(
    run_stats: pd.DataFrame,
    conditions: pd.DataFrame,
    paired: pd.DataFrame,
    cond: list[str],
    scale: float,
) -> pd.DataFrame:
    """One row per condition at every n where FS and another method ran (FS first, then the paper's method
    order): the condition columns but ``stage``, and :data:`COLUMNS`. ``per_seed`` reads ``s0 12.3, s1 45.6``
    (Dice %, seeds in order); the FS rows have no pair (NaN, ``n_pairs`` 0). Empty when no n has FS and
    another method."""
    keys = [c for c in cond if c != "stage"]
    out_cols = [*keys, *COLUMNS]
    if conditions.empty or run_stats.empty:
        return pd.DataFrame(columns=out_cols)
    ns_fs = set(conditions.loc[conditions["method"] == REFERENCE, "n_labeled"])
    ns_other = set(conditions.loc[conditions["method"] != REFERENCE, "n_labeled"])
    ns = ns_fs & ns_other
    if not ns:
        return pd.DataFrame(columns=out_cols)
    inc = run_stats.loc[run_stats["included"]].sort_values(["seed", "split_seed"], kind="stable")
    runs: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for run in inc.to_dict("records"):
        runs.setdefault(condition_key(run, keys), []).append(run)
    # the paired rows against FS; paired_comparisons names the method `method_a` and keeps the other keys
    vs_fs = paired.loc[paired["method_b"] == REFERENCE] if len(paired) else paired
    pairs = {
        condition_key({**r, "method": r["method_a"]}, keys): r
        for r in (vs_fs.to_dict("records") if len(vs_fs) else [])
    }
    rows = []
    for c in conditions.loc[conditions["n_labeled"].isin(ns)].to_dict("records"):
        k = condition_key(c, keys)
        g = runs.get(k, [])
        labels = seed_labels([r["seed"] for r in g], [r["unit"] for r in g])
        rec: dict[str, Any] = {col: c[col] for col in keys}
        values = (f"{lab} {r['stat'] * scale:.1f}" for lab, r in zip(labels, g, strict=True))
        rec["per_seed"] = ", ".join(values)
        rec["n_units"] = int(c["n_units"])
        rec["mean_pct"] = c["mean"] * scale
        rec["ci_low_pct"] = c["ci_low"] * scale
        rec["ci_high_pct"] = c["ci_high"] * scale
        p = pairs.get(k) if c["method"] != REFERENCE else None
        rec["n_pairs"] = int(p["n_pairs"]) if p is not None else 0
        rec["above_fs"] = int(p["a_better"]) if p is not None else 0
        for col, src in (("diff_pct", "mean_diff"), ("diff_low_pct", "ci_low"), ("diff_high_pct", "ci_high")):
            rec[col] = p[src] * scale if p is not None else float("nan")
        rows.append(rec)
    df = pd.DataFrame(rows, columns=out_cols)
    # FS, the reference, opens each n's block
    df = df.assign(_ref=df["method"] != REFERENCE).sort_values(["n_labeled", "_ref"], kind="stable")
    return df.drop(columns="_ref").reset_index(drop=True)


def above_text(row: Mapping[str, Any]) -> str:
    """``above FS in k of m seeds`` (paired seeds), or ``no seed paired with FS``."""
    m = int(row["n_pairs"])
    if m == 0:
        return "no seed paired with FS"
    return f"above FS in {int(row['above_fs'])} of {m} seed{'s' if m > 1 else ''}"


def interval_text(mean: float, low: float, high: float, *, signed: bool = False) -> str:
    """``12.3 [10.1, 14.5]`` (``+`` signs for a difference); ``12.3 (one seed: no interval)``."""
    f = "{:+.1f}" if signed else "{:.1f}"
    if is_missing(mean):
        return "–"
    if is_missing(low):
        return f.format(mean) + " (one seed: no interval)"
    return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"
