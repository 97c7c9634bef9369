"""Across seeds: condition means with t-intervals, paired method comparisons, the patient bootstrap.

Definitions: see :mod:`analysis.stats`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.intervals import cohens_dz, t_interval
from analysis.load import Experiment
from analysis.run_stats import BASE_CONDITION, cat_mask, setting_text, sort_conditions
from suite.seeding import numpy_rng

MIN_SEEDS = 5
DEFAULT_PAIRS = (
    ("proposed", "fs"),
    ("proposed", "proposals"),
    ("oracle", "proposed"),
    ("proposals", "fs"),
    ("oracle", "fs"),
)


def across_seeds(run_stats: pd.DataFrame, cond: list[str], *, confidence: float = 0.95) -> pd.DataFrame:
    """Per condition: ``n_units, mean, sd`` (ddof 1), ``ci_low, ci_high, t_crit``, ``epoch_std_mean`` (the
    mean of the runs' ±), ``windows`` (the windows used), ``units`` and ``few_seeds`` (n_units < 5)."""
    inc = run_stats.loc[run_stats["included"]] if len(run_stats) else run_stats
    rows = []
    if len(inc):
        for key, g in inc.groupby(cond, dropna=False, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            ti = t_interval(g["stat"].to_numpy(), confidence)
            rows.append(
                {
                    **dict(zip(cond, key, strict=True)),
                    "n_units": ti.n,
                    "mean": ti.mean,
                    "sd": ti.sd,
                    "ci_low": ti.low,
                    "ci_high": ti.high,
                    "t_crit": ti.t_crit,
                    "epoch_std_mean": float(g["stat_std"].mean()),
                    "windows": ",".join(str(w) for w in sorted(g["window"].unique())),
                    "units": ",".join(sorted(g["unit"].astype(str))),
                    "few_seeds": ti.n < MIN_SEEDS,
                }
            )
    cols = [
        *cond,
        "n_units",
        "mean",
        "sd",
        "ci_low",
        "ci_high",
        "t_crit",
        "epoch_std_mean",
        "windows",
        "units",
        "few_seeds",
    ]
    return sort_conditions(pd.DataFrame(rows, columns=cols), [c for c in cond if c not in BASE_CONDITION])


def paired_comparisons(
    run_stats: pd.DataFrame,
    cond: list[str],
    *,
    pairs: tuple[tuple[str, str], ...] = DEFAULT_PAIRS,
    confidence: float = 0.95,
    scale: float = 100.0,
) -> pd.DataFrame:
    """Paired differences A − B of the per-run statistic on the same n and unit (seed, split seed).

    γ, λ: when both methods use them they must match; otherwise the penalty method's values label the row.
    Columns: ``method_a, method_b, n_labeled, gamma, lam, <extra>, n_pairs, mean_diff, sd_diff, ci_low,
    ci_high, d_z, a_better`` (count of pairs with A > B) and ``statement`` (plain words, in points × scale).
    """
    inc = run_stats.loc[run_stats["included"]] if len(run_stats) else run_stats
    extra = [c for c in cond if c not in BASE_CONDITION]
    rows = []
    for a, b in pairs:
        A = inc.loc[(inc["method"] == a) & (inc["stage"] == "segmenter")]
        B = inc.loc[(inc["method"] == b) & (inc["stage"] == "segmenter")]
        if A.empty or B.empty:
            continue
        # join on the axes both methods have; an axis only one of them uses labels the row
        shared = [c for c in ["gamma", "lam", *extra] if A[c].notna().any() and B[c].notna().any()]
        label = [c for c in ["gamma", "lam", *extra] if c not in shared]
        on = ["n_labeled", "unit", *shared]
        j = A[[*on, *label, "stat"]].merge(B[[*on, *label, "stat"]], on=on, suffixes=("_a", "_b"))
        if j.empty:
            continue
        for c in label:
            j[c] = j[f"{c}_a"].where(j[f"{c}_a"].notna(), j[f"{c}_b"])
        j["diff"] = j["stat_a"] - j["stat_b"]
        for key, g in j.groupby(["n_labeled", "gamma", "lam", *extra], dropna=False, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            ti = t_interval(g["diff"].to_numpy(), confidence)
            dz = cohens_dz(g["diff"].to_numpy())
            rec = {
                "method_a": a,
                "method_b": b,
                **dict(zip(["n_labeled", "gamma", "lam", *extra], key, strict=True)),
                "n_pairs": ti.n,
                "mean_diff": ti.mean,
                "sd_diff": ti.sd,
                "ci_low": ti.low,
                "ci_high": ti.high,
                "d_z": dz,
                "a_better": int((g["diff"] > 0).sum()),
            }
            rec["statement"] = _paired_statement(rec, confidence, scale, extra)
            rows.append(rec)
    cols = [
        "method_a",
        "method_b",
        "n_labeled",
        "gamma",
        "lam",
        *extra,
        "n_pairs",
        "mean_diff",
        "sd_diff",
        "ci_low",
        "ci_high",
        "d_z",
        "a_better",
        "statement",
    ]
    return pd.DataFrame(rows, columns=cols)


def _paired_statement(
    r: dict[str, Any], confidence: float, scale: float, extra: list[str] | None = None
) -> str:
    a, b, n = r["method_a"], r["method_b"], r["n_labeled"]
    pts = "points" if scale == 100.0 else "units"
    # the other varied axes name the setting: two segmenters' lines must not read alike
    setting = "".join(f", {c}={setting_text(r[c])}" for c in extra or () if c in r and pd.notna(r[c]))
    head = f"{a} − {b} at n={n}{setting}: {r['mean_diff'] * scale:+.1f} {pts}"
    if r["n_pairs"] < 2:
        return f"{head} on a single paired seed: no interval, no effect size; run more seeds."
    ci = f"{int(round(confidence * 100))}% CI {r['ci_low'] * scale:+.1f} to {r['ci_high'] * scale:+.1f}"
    dz = r["d_z"]
    dz_s = "d_z undefined (identical differences)" if not np.isfinite(dz) else f"d_z = {dz:.2f}"
    if r["ci_low"] > 0:
        verdict = f"{a} is better; the interval excludes 0"
    elif r["ci_high"] < 0:
        verdict = f"{b} is better; the interval excludes 0"
    else:
        verdict = "the interval includes 0: no clear difference"
    few = f", fewer than {MIN_SEEDS}" if r["n_pairs"] < MIN_SEEDS else ""
    return (
        f"{head} ({ci}, {r['n_pairs']} paired seeds{few}, {dz_s}, {a} higher in {r['a_better']} of "
        f"{r['n_pairs']}); {verdict}."
    )


# ---------------------------------------------------------------------------------------------- per volume
def per_volume_window(exp: Experiment, run_stats: pd.DataFrame, *, metric: str = "dice") -> pd.DataFrame:
    """Mean Dice of every (included run, validation volume) over the run's window epochs.

    Columns: ``run_id, volume, patient, dice``. The mean over a run's volumes equals its statistic.
    """
    if run_stats.empty or "source" not in run_stats.columns:
        return pd.DataFrame(columns=["run_id", "volume", "patient", "dice"])
    inc = run_stats.loc[run_stats["included"] & (run_stats["source"] == "per-volume")]
    if inc.empty:
        return pd.DataFrame(columns=["run_id", "volume", "patient", "dice"])
    m = exp.metrics
    sel = (
        cat_mask(m["split"], ["val"]) & cat_mask(m["metric"], [metric]) & cat_mask(m["run_id"], inc["run_id"])
    )
    sub = m.loc[sel, ["run_id", "epoch", "volume", "value"]]
    cats = m["run_id"].cat.categories
    pos = pd.Index(cats).get_indexer(inc["run_id"])
    first = np.full(len(cats), np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(len(cats), -1, dtype=np.int64)
    first[pos] = inc["window_first_epoch"].to_numpy()
    last[pos] = inc["window_last_epoch"].to_numpy()
    rc = sub["run_id"].cat.codes.to_numpy().astype(np.int64)
    ep = sub["epoch"].to_numpy().astype(np.int64)
    vol = sub["volume"].cat.codes.to_numpy().astype(np.int64)
    val = sub["value"].to_numpy()
    keep = (ep >= first[rc]) & (ep <= last[rc])
    rc, ep, vol, val = rc[keep], ep[keep], vol[keep], val[keep]
    if not len(rc):
        return pd.DataFrame(columns=["run_id", "volume", "patient", "dice"])
    n_e, n_v = int(ep.max()) + 1, len(sub["volume"].cat.categories)
    dup = pd.Series((rc * n_e + ep) * n_v + vol).duplicated(keep="last").to_numpy()
    if dup.any():
        rc, vol, val = rc[~dup], vol[~dup], val[~dup]
    key = rc * n_v + vol
    size = int(key.max()) + 1
    sums = np.bincount(key, weights=val, minlength=size)
    counts = np.bincount(key, minlength=size)
    idx = np.flatnonzero(counts)
    vcats = np.asarray(sub["volume"].cat.categories, dtype=object)
    g = pd.DataFrame(
        {
            "run_id": np.asarray(cats, dtype=object)[idx // n_v],
            "volume": vcats[idx % n_v],
            "dice": sums[idx] / counts[idx],
        }
    )
    g["patient"] = g["volume"].str.rsplit("_", n=1).str[0]
    return g[["run_id", "volume", "patient", "dice"]]


def bootstrap_patients(
    run_stats: pd.DataFrame,
    per_volume: pd.DataFrame,
    cond: list[str],
    *,
    n_boot: int,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Cluster bootstrap over validation patients of each condition's across-seed mean (see module doc).

    Deterministic: the draws of a condition derive from
    ``derive_seed(seed, "bootstrap", condition, volume set)``.
    Columns: the condition columns, ``n_boot, boot_mean, boot_low, boot_high, n_patients``.
    """
    inc = run_stats.loc[run_stats["included"]]
    per_run = {
        rid: (tuple(g["volume"]), g["dice"].to_numpy())
        for rid, g in per_volume.sort_values(["run_id", "volume"]).groupby("run_id", sort=False)
    }
    rows = []
    lo_q, hi_q = 50 * (1 - confidence), 100 - 50 * (1 - confidence)
    for key, g in inc.groupby(cond, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        ids = [r for r in g["run_id"] if r in per_run]
        if not ids:
            continue
        # runs sharing a validation set share the patient draw
        groups: dict[tuple[str, ...], list[str]] = {}
        for r in ids:
            groups.setdefault(per_run[r][0], []).append(r)
        reps = []
        n_pat = 0
        for vols, rids in groups.items():
            patients = sorted({v.rsplit("_", 1)[0] for v in vols})
            n_pat = max(n_pat, len(patients))
            pidx = np.array([patients.index(v.rsplit("_", 1)[0]) for v in vols])
            V = np.stack([per_run[r][1] for r in rids])
            rng = numpy_rng(seed, "bootstrap", *[str(k) for k in key], "|".join(vols))
            counts = rng.multinomial(len(patients), np.full(len(patients), 1.0 / len(patients)), size=n_boot)
            wv = counts[:, pidx].astype(np.float64)  # (B, V)
            reps.append((wv @ V.T) / wv.sum(axis=1, keepdims=True))  # (B, R)
        allrep = np.concatenate(reps, axis=1).mean(axis=1)
        rows.append(
            {
                **dict(zip(cond, key, strict=True)),
                "n_boot": n_boot,
                "boot_mean": float(allrep.mean()),
                "boot_low": float(np.percentile(allrep, lo_q)),
                "boot_high": float(np.percentile(allrep, hi_q)),
                "n_patients": n_pat,
            }
        )
    return pd.DataFrame(rows, columns=[*cond, "n_boot", "boot_mean", "boot_low", "boot_high", "n_patients"])
