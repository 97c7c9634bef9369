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
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import Experiment
from suite.config import METHODS, SEG_METHODS_WITH_PENALTY
from suite.seeding import numpy_rng

log = logging.getLogger("analysis.stats")

DEFAULT_WINDOW = 50  # the paper's, when a run config does not record stat_window
MIN_SEEDS = 5
DEFAULT_PAIRS = (
    ("proposed", "fs"),
    ("proposed", "proposals"),
    ("oracle", "proposed"),
    ("proposals", "fs"),
    ("oracle", "fs"),
)
# run columns that never define a condition: units, bookkeeping, analysis-only and non-identity fields
NOT_CONDITION = {
    "run_id",
    "status",
    "path",
    "seed",
    "split_seed",
    "unit",
    "data",
    "device",
    "stat_window",
    "checkpoint_every",
    "preset",
    "epochs",
    "n_epochs",
    "last_epoch",
    "failed_error",
}
BASE_CONDITION = ["stage", "method", "n_labeled", "gamma", "lam"]


# ---------------------------------------------------------------------------------------------- intervals
@dataclass(frozen=True)
class TInterval:
    """``mean ± t·sd/√n`` of ``n`` independent values (NaN bounds when n < 2)."""

    n: int
    mean: float
    sd: float
    half_width: float
    low: float
    high: float
    t_crit: float


def t_quantile(q: float | np.ndarray, df: float | np.ndarray) -> Any:
    """Student-t quantile, ``scipy.stats.t.ppf(q, df)``, via ``scipy.special.stdtrit`` (the same function,
    without importing ``scipy.stats``, which costs seconds on a loaded machine)."""
    from scipy.special import stdtrit

    out = stdtrit(df, q)
    return float(out) if np.ndim(out) == 0 else out


def t_interval(values: Any, confidence: float = 0.95) -> TInterval:
    """Student-t confidence interval of the mean of ``values`` (NaNs dropped), the values being the units."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return TInterval(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n < 2:
        return TInterval(n, mean, math.nan, math.nan, math.nan, math.nan, math.nan)
    sd = float(x.std(ddof=1))
    t = t_quantile(0.5 + confidence / 2.0, n - 1)
    half = t * sd / math.sqrt(n)
    return TInterval(n, mean, sd, half, mean - half, mean + half, t)


def cohens_dz(diffs: Any) -> float:
    """Cohen's d_z of paired differences: mean / sd (ddof 1); ±inf when all differences are equal and
    non-zero."""
    d = np.asarray(diffs, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size < 2:
        return math.nan
    sd = float(d.std(ddof=1))
    m = float(d.mean())
    if sd == 0.0:
        return math.nan if m == 0.0 else math.copysign(math.inf, m)
    return m / sd


# ---------------------------------------------------------------------------------------------- conditions
def method_mask(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``runs`` with config fields that do not affect a run's method blanked (NaN), mirroring
    ``RunConfig.identity``: γ, λ, size_units only for proposed/oracle, regressor fields only for proposed (and
    regressors), unl_batch not for FS. So FS runs are not split by a γ they never used."""
    out = runs.copy()
    seg = out["stage"] == "segmenter"
    no_pen = seg & ~out["method"].isin(SEG_METHODS_WITH_PENALTY)
    for c in ("gamma", "lam", "size_units"):
        if c in out.columns:
            out[c] = (
                out[c].astype(object).where(~no_pen, None) if c == "size_units" else out[c].where(~no_pen)
            )
    reg_cols = [c for c in out.columns if c.startswith("reg_")]
    not_prop = seg & (out["method"] != "proposed")
    for c in reg_cols:
        out[c] = out[c].astype(object).where(~not_prop, None)
    if "unl_batch" in out.columns:
        out["unl_batch"] = out["unl_batch"].astype(object).where(~(seg & (out["method"] == "fs")), None)
    return out


def condition_columns(exp: Experiment, runs: pd.DataFrame | None = None) -> list[str]:
    """BASE_CONDITION plus every other config field whose (method-masked) value varies across the runs."""
    runs = method_mask(exp.runs if runs is None else runs)
    extra = []
    for c in exp.config_columns:
        if c in NOT_CONDITION or c in BASE_CONDITION or c not in runs.columns:
            continue
        vals = runs[c].dropna().astype(str)  # blanked (irrelevant to the method) values do not count
        if vals.nunique() > 1:
            extra.append(c)
    return BASE_CONDITION + extra


def _sort_conditions(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty or "method" not in df.columns:
        return df
    order = {m: i for i, m in enumerate(METHODS)}
    key = df["method"].map(lambda m: order.get(m, len(order)))
    cols = [c for c in ("n_labeled", "gamma", "lam") if c in df.columns]
    return (
        df.assign(_k=key)
        .sort_values(["_k", *cols], kind="stable", na_position="first")
        .drop(columns="_k")
        .reset_index(drop=True)
    )


# ---------------------------------------------------------------------------------------------- per epoch
def cat_mask(col: pd.Series, values: Any) -> np.ndarray:
    """``col.isin(values)`` for a categorical column through a lookup table on its codes (O(rows), no hashing
    of the 17M-row metrics table)."""
    cats = col.cat.categories
    lut = np.zeros(len(cats) + 1, dtype=bool)  # the extra slot is code -1 (missing)
    idx = cats.get_indexer(pd.Index(list(values), dtype=object))
    lut[idx[idx >= 0]] = True
    return lut[col.cat.codes.to_numpy()]


def epoch_means(
    exp: Experiment, *, metric: str = "dice", split: str = "val", fallback_metric: str | None = "dice_mean"
) -> pd.DataFrame:
    """Per (run, epoch) mean of ``metric`` over the volumes logged that epoch.

    Columns: ``run_id, epoch, value, n_volumes, expected_volumes, complete, source``. ``complete`` is False
    for an epoch with fewer volumes than the run logs elsewhere (an epoch caught mid-write). Duplicated rows
    (same run, epoch, volume; a resume that did not cut metrics.csv back) keep the last one and are counted in
    the column ``duplicates`` of :func:`run_statistics`.
    """
    m = exp.metrics
    seg_ids = exp.runs.loc[exp.runs["stage"] == "segmenter", "run_id"]
    base = cat_mask(m["split"], [split]) & cat_mask(m["run_id"], seg_ids)
    parts = []
    for name, src in ((metric, "per-volume"), (fallback_metric, "run-level")):
        if name is None:
            continue
        sub = m.loc[base & cat_mask(m["metric"], [name])]
        if src == "run-level" and len(parts) and len(sub):
            have = set(parts[0]["run_id"].unique())
            sub = sub.loc[~sub["run_id"].isin(have)]
        if not len(sub):
            continue
        parts.append(_aggregate_epochs(sub, src))
    if not parts:
        return pd.DataFrame(
            columns=[
                "run_id",
                "epoch",
                "value",
                "n_volumes",
                "expected_volumes",
                "complete",
                "source",
                "duplicates",
            ]
        )
    return pd.concat(parts, ignore_index=True)


def _aggregate_epochs(sub: pd.DataFrame, source: str) -> pd.DataFrame:
    rc = sub["run_id"].cat.codes.to_numpy().astype(np.int64)
    ep = sub["epoch"].to_numpy().astype(np.int64)
    vol = sub["volume"].cat.codes.to_numpy().astype(np.int64)
    val = sub["value"].to_numpy()
    n_e = int(ep.max()) + 1
    n_v = int(vol.max()) + 1
    n_r = int(rc.max()) + 1
    # distinct volumes per run, from a (run, volume) occupancy table
    occupied = np.flatnonzero(np.bincount(rc * n_v + vol, minlength=n_r * n_v))
    expected = np.bincount(occupied // n_v, minlength=n_r)
    key2 = rc * n_e + ep
    size = int(key2.max()) + 1
    counts = np.bincount(key2, minlength=size)
    # duplicated (run, epoch, volume) rows can only hide in (run, epoch) cells with too many rows
    suspect = counts[key2] > expected[rc]
    n_dup_per_run = None
    if suspect.any():
        key3 = (rc * n_e + ep) * n_v + vol
        dup = np.zeros(len(rc), dtype=bool)
        dup[suspect] = pd.Series(key3[suspect]).duplicated(keep="last").to_numpy()
        if dup.any():
            n_dup_per_run = np.bincount(rc[dup], minlength=n_r)
            rc, ep, vol, val, key2 = rc[~dup], ep[~dup], vol[~dup], val[~dup], key2[~dup]
            counts = np.bincount(key2, minlength=size)
    sums = np.bincount(key2, weights=val, minlength=size)
    idx = np.flatnonzero(counts)
    runs_idx = idx // n_e
    cats = sub["run_id"].cat.categories
    out = pd.DataFrame(
        {
            "run_id": pd.Categorical.from_codes(runs_idx, categories=cats),
            "epoch": (idx % n_e).astype(np.int32),
            "value": sums[idx] / counts[idx],
            "n_volumes": counts[idx].astype(np.int32),
            "expected_volumes": expected[runs_idx].astype(np.int32),
        }
    )
    out["complete"] = out["n_volumes"] == out["expected_volumes"]
    out["source"] = source
    out["duplicates"] = 0 if n_dup_per_run is None else n_dup_per_run[runs_idx]
    return out


# ---------------------------------------------------------------------------------------------- per run
def run_statistics(
    exp: Experiment,
    *,
    window: int | None = None,
    include_partial: bool = False,
    metric: str = "dice",
    per_epoch: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The paper statistic of every segmenter run, with why a run is excluded.

    Columns: the condition columns, ``run_id, status, seed, split_seed, unit, window, window_source,
    n_epochs`` (complete epochs logged), ``epochs_planned, n_volumes, stat`` (mean of the last ``window``
    per-epoch means), ``stat_std`` (their ddof-0 std), ``window_first_epoch, window_last_epoch, included,
    flag`` (short | partial | failed | no-metric | ok) and ``note`` (plain words).
    """
    runs = exp.runs.loc[exp.runs["stage"] == "segmenter"].copy()
    cond = condition_columns(exp, runs) if len(runs) else list(BASE_CONDITION)
    masked = method_mask(runs)
    if per_epoch is None:
        per_epoch = epoch_means(exp, metric=metric)
    pe = per_epoch.loc[per_epoch["complete"]]
    # window per run
    if window is not None:
        if window < 1:
            raise ValueError("window must be >= 1")
        runs["window"] = int(window)
        runs["window_source"] = "--window"
    else:
        sw = runs["stat_window"] if "stat_window" in runs.columns else pd.Series(np.nan, index=runs.index)
        runs["window"] = sw.fillna(DEFAULT_WINDOW).astype(int)
        runs["window_source"] = np.where(sw.isna(), f"default {DEFAULT_WINDOW}", "config stat_window")
    # complete-epoch counts and the last-W window per run
    pe = pe.sort_values(["run_id", "epoch"], kind="stable")
    rid = pe["run_id"].astype(str)
    rank_from_end = pe.groupby(rid, sort=False, observed=True).cumcount(ascending=False).to_numpy()
    win_map = dict(zip(runs["run_id"], runs["window"], strict=True))
    w = rid.map(win_map).to_numpy()
    in_win = rank_from_end < w
    agg_all = pe.groupby(rid, observed=True).agg(
        n_epochs=("epoch", "size"),
        last_epoch=("epoch", "max"),
        source=("source", "first"),
        n_volumes=("expected_volumes", "max"),
        duplicates=("duplicates", "max"),
    )
    win = pe.loc[in_win]
    wv = win["value"].to_numpy()
    wr = rid.loc[in_win]
    wdf = pd.DataFrame({"value": wv, "run": wr.to_numpy(), "epoch": win["epoch"].to_numpy()})
    agg_win = wdf.groupby("run").agg(
        stat=("value", "mean"), window_first_epoch=("epoch", "min"), window_last_epoch=("epoch", "max")
    )
    # ddof-0 std without a Python call per run: two-pass on the (small) window values for accuracy
    dev = wdf["value"].to_numpy() - wdf["run"].map(agg_win["stat"]).to_numpy()
    agg_win["stat_std"] = np.sqrt(pd.Series(dev * dev).groupby(wdf["run"].to_numpy()).mean())
    incomplete = (
        per_epoch.loc[~per_epoch["complete"]]
        .groupby(per_epoch.loc[~per_epoch["complete"], "run_id"].astype(str))
        .size()
        .to_dict()
    )
    all_rec = agg_all.to_dict("index")
    win_rec = agg_win.to_dict("index")
    masked_rec = masked[[c for c in cond if c in masked.columns]].to_dict("records")
    rows = []
    for r, mrec in zip(runs.to_dict("records"), masked_rec, strict=True):
        run_id = r["run_id"]
        a = all_rec.get(run_id)
        wrow = win_rec.get(run_id)
        n_ep = int(a["n_epochs"]) if a is not None else 0
        W = int(r["window"])
        rec: dict[str, Any] = dict(mrec)
        rec.update(
            run_id=run_id,
            status=r["status"],
            seed=int(r["seed"]),
            split_seed=int(r["split_seed"]),
            unit=r["unit"],
            window=W,
            window_source=r["window_source"],
            n_epochs=n_ep,
            epochs_planned=int(r["epochs"]),
            n_volumes=int(a["n_volumes"]) if a is not None else 0,
            source=a["source"] if a is not None else "",
            duplicates=int(a["duplicates"]) if a is not None else 0,
            incomplete_epochs=int(incomplete.get(run_id, 0)),
            stat=math.nan,
            stat_std=math.nan,
            window_first_epoch=-1,
            window_last_epoch=-1,
        )
        notes = []
        if r["status"] == "failed":
            flag, included = "failed", False
            err = r.get("failed_error")
            notes.append("the run failed" + (f" ({err})" if isinstance(err, str) and err else ""))
        elif a is None and r["status"] == "partial":
            flag, included = "partial", False
            notes.append("run in progress, no complete validation epoch logged yet")
        elif a is None:
            flag, included = "no-metric", False
            notes.append(f"no validation '{metric}' rows in metrics.csv")
        elif n_ep < W:
            flag, included = "short", False
            notes.append(f"{n_ep} complete epochs < window {W}: not averaged")
            if r["status"] == "partial":
                notes.append("run in progress")
        elif r["status"] == "partial" and not include_partial:
            flag, included = "partial", False
            notes.append(f"run in progress ({n_ep} of {int(r['epochs'])} epochs); use --include-partial")
        else:
            flag, included = ("partial", True) if r["status"] == "partial" else ("ok", True)
            if r["status"] == "partial":
                notes.append(f"run in progress, included on request ({n_ep} of {int(r['epochs'])} epochs)")
        if wrow is not None and n_ep >= W:
            rec.update(
                stat=float(wrow["stat"]),
                stat_std=float(wrow["stat_std"]),
                window_first_epoch=int(wrow["window_first_epoch"]),
                window_last_epoch=int(wrow["window_last_epoch"]),
            )
            if int(wrow["window_last_epoch"]) - int(wrow["window_first_epoch"]) + 1 != W:
                notes.append("epochs missing inside the window")
        if r["status"] == "finished" and n_ep < int(r["epochs"]) and flag == "ok":
            notes.append(f"finished with {n_ep} of {int(r['epochs'])} planned epochs logged")
        if rec["duplicates"]:
            notes.append(f"{rec['duplicates']} duplicated rows (kept the last)")
        if rec["incomplete_epochs"] and r["status"] == "finished":
            notes.append(f"{rec['incomplete_epochs']} epochs with missing volumes ignored")
        if rec["source"] == "run-level":
            notes.append("no per-volume Dice; used the logged dice_mean")
        if included and not np.isfinite(rec["stat"]):
            flag, included = "nan", False
            notes.append("non-finite Dice inside the window")
        rec["included"] = included
        rec["flag"] = flag
        rec["note"] = "; ".join(notes)
        rows.append(rec)
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(
            columns=[
                *cond,
                "run_id",
                "status",
                "unit",
                "stat",
                "stat_std",
                "included",
                "flag",
                "note",
                "window",
                "seed",
                "split_seed",
            ]
        )
    return _sort_conditions(out)


# ---------------------------------------------------------------------------------------------- across seeds
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
    return _sort_conditions(pd.DataFrame(rows, columns=cols))


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
            rec["statement"] = _paired_statement(rec, confidence, scale)
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


def _paired_statement(r: dict[str, Any], confidence: float, scale: float) -> str:
    a, b, n = r["method_a"], r["method_b"], r["n_labeled"]
    pts = "points" if scale == 100.0 else "units"
    head = f"{a} − {b} at n={n}: {r['mean_diff'] * scale:+.1f} {pts}"
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

    Deterministic: the draws of a condition derive from ``derive_seed(seed, "bootstrap", condition, volume
    set)``. Columns: the condition columns, ``n_boot, boot_mean, boot_low, boot_high, n_patients``.
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


# ---------------------------------------------------------------------------------------------- regressor
REG_METRICS = ("size_abs_err", "size_abs_err_pct", "bounds_ok")


def regressor_summary(
    exp: Experiment, *, include_partial: bool = False, confidence: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Regressor size error: per run (last logged epoch of split ``regval``) and per n across seeds.

    Returns ``(per_run, per_n)``; per_n has ``<metric>_mean, <metric>_ci_low, <metric>_ci_high`` for
    ``size_abs_err`` (pixels), ``size_abs_err_pct`` and ``bounds_ok`` plus ``n_units``.
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
    per_run = regs.set_index("run_id")[["n_labeled", "seed", "split_seed", "unit", "status"]].join(
        wide, how="inner"
    )
    per_run = per_run.reset_index().rename(columns={"index": "run_id"})
    rows = []
    for n, g in per_run.groupby("n_labeled"):
        rec: dict[str, Any] = {"n_labeled": n, "n_units": len(g)}
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


# ---------------------------------------------------------------------------------------------- constraints
def constraint_satisfaction(exp: Experiment, run_stats: pd.DataFrame, cond: list[str]) -> pd.DataFrame:
    """``in_bounds`` (train, fraction of unlabeled slices inside their size bounds) per epoch, across the
    included runs of each condition: columns ``<cond>, epoch, mean, sd, n_units``."""
    inc = run_stats.loc[run_stats["included"]] if len(run_stats) else run_stats
    if inc.empty:
        return pd.DataFrame()
    m = exp.metrics
    sel = (
        cat_mask(m["split"], ["train"])
        & cat_mask(m["metric"], ["in_bounds"])
        & cat_mask(m["run_id"], inc["run_id"])
    )
    sub = m.loc[sel, ["run_id", "epoch", "value"]]
    if sub.empty:
        return pd.DataFrame()
    sub = sub.assign(run_id=sub["run_id"].astype(str)).drop_duplicates(["run_id", "epoch"], keep="last")
    sub = sub.merge(inc[["run_id", *cond]], on="run_id")
    g = sub.groupby([*cond, "epoch"], dropna=False)["value"]
    out = g.agg(
        mean="mean",
        sd=lambda x: float(np.std(x.to_numpy(), ddof=1)) if len(x) > 1 else math.nan,
        n_units="size",
    ).reset_index()
    return out


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


# ---------------------------------------------------------------------------------------------- all of it
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


def analyse(
    exp: Experiment,
    *,
    window: int | None = None,
    include_partial: bool = False,
    bootstrap: int = 0,
    confidence: float = 0.95,
    bootstrap_seed: int = 0,
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
    )
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


__all__ = [
    "TInterval",
    "t_interval",
    "cohens_dz",
    "epoch_means",
    "run_statistics",
    "across_seeds",
    "paired_comparisons",
    "per_volume_window",
    "bootstrap_patients",
    "regressor_summary",
    "constraint_satisfaction",
    "epoch_curves",
    "condition_columns",
    "method_mask",
    "analyse",
    "Analysis",
    "MIN_SEEDS",
]
