"""The paper statistic of every run: conditions, per-epoch means of the validation Dice, the last-W window.

Definitions: see :mod:`analysis.stats`. A run's *condition* is its config fields that the experiment varied,
restricted to the fields that make up the run's identity (``config.json``'s ``identity_keys``), so that FS
runs are never split by a γ they never used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import Experiment
from analysis.paper import METHOD_LABELS
from suite.config import METHODS, when_set_fields_in_scope

DEFAULT_WINDOW = 50  # the paper's, when a run config does not record stat_window
# identity fields that are the statistical unit, never a condition (fields outside a run's identity are
# blanked by identity_mask, so they never define one either)
NOT_CONDITION = {"seed", "split_seed"}
BASE_CONDITION = ["stage", "method", "n_labeled", "gamma", "lam"]


# ---------------------------------------------------------------------------------------------- conditions
def identity_mask(exp: Experiment, runs: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``runs`` with every config field outside the run's identity blanked (NaN in float columns,
    None elsewhere): a field that does not change a run's results (γ of an FS run, the regressor's fields of
    an Oracle run) never splits its condition. Runs without recorded identity keys are left as they are.
    A ``when_set`` field left at its default is not in the identity keys but does apply to the run when its
    scope does (``scheme=penalty`` of a Proposed run beside a ``logbarrier`` one): it keeps its value."""
    out = runs.copy()
    keys = [exp.identity_keys.get(r) for r in out["run_id"]]
    # runs written before the ssl field have none
    ssl = out["ssl"].fillna("none") if "ssl" in out.columns else pd.Series("none", index=out.index)
    kinds = list(zip(out["stage"], out["method"], ssl, strict=True))
    in_scope = {k: when_set_fields_in_scope(*k) for k in set(kinds)}
    keys = [k if k is None else k | in_scope[kind] for k, kind in zip(keys, kinds, strict=True)]
    for c in exp.config_columns:
        if c not in out.columns:
            continue
        keep = np.fromiter((k is None or c in k for k in keys), dtype=bool, count=len(keys))
        if keep.all():
            continue
        col = out[c]
        out[c] = col.where(keep) if pd.api.types.is_float_dtype(col) else col.astype(object).where(keep, None)
    return out


def condition_columns(exp: Experiment, runs: pd.DataFrame | None = None) -> list[str]:
    """BASE_CONDITION plus every other config field whose (method-masked) value varies across the runs."""
    runs = identity_mask(exp, exp.runs if runs is None else runs)
    extra = []
    for c in exp.config_columns:
        if c in NOT_CONDITION or c in BASE_CONDITION or c not in runs.columns:
            continue
        vals = runs[c].dropna().astype(str)  # blanked (irrelevant to the method) values do not count
        if vals.nunique() > 1:
            extra.append(c)
    return BASE_CONDITION + extra


def sort_conditions(df: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    """Rows in the paper's method order, then by n, γ, λ and the ``extra`` condition columns (e.g. the
    constraint family's ``constraint``, ``scheme``, ``constrained``); ties keep their order."""
    if df.empty or "method" not in df.columns:
        return df
    order = {m: i for i, m in enumerate(METHODS)}
    key = df["method"].map(lambda m: order.get(m, len(order)))
    cols = [c for c in ("n_labeled", "gamma", "lam", *extra) if c in df.columns]
    return (
        df.assign(_k=key)
        .sort_values(["_k", *cols], kind="stable", na_position="first")
        .drop(columns="_k")
        .reset_index(drop=True)
    )


_SHORT_NAMES = {"n_labeled": "n", "gamma": "γ", "lam": "λ"}


def setting_text(value: Any) -> str:
    """A condition value as the report prints it: a whole number without ``.0`` (a field that only some
    methods have is a float column, NaN for the others: ``lam_rampup=40``, not ``40.0``), other numbers as
    given (``1e-04``), anything else as text."""
    if isinstance(value, bool | np.bool_):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else f"{float(value):g}"
    return str(value)


def is_missing(value: Any) -> bool:
    """True for the blank of a field outside a run's identity (None or NaN; see :func:`identity_mask`)."""
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def condition_text(rec: Mapping[str, Any], columns: Sequence[str]) -> str:
    """One condition in words: its method's label, then ``column=value`` for each of ``columns`` the
    condition has (blanked fields are left out: FS names no λ), e.g. ``Oracle, n=5, lam_rampup=40``."""
    parts = [METHOD_LABELS.get(str(rec["method"]), str(rec["method"]))]
    for c in columns:
        v = rec.get(c)
        if not is_missing(v):
            parts.append(f"{_SHORT_NAMES.get(c, c)}={setting_text(v)}")
    return ", ".join(parts)


def condition_key(rec: Mapping[str, Any], columns: Sequence[str]) -> tuple[str, ...]:
    """A hashable key of a condition on which blanks match (NaN != NaN) and 5 matches 5.0 (a field that is
    a float column in one table, with NaN for the methods without it, and an int column in another)."""
    out = []
    for c in columns:
        v = rec.get(c)
        if is_missing(v):
            out.append("")
        elif isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_):
            out.append(f"{float(v):.12g}")
        else:
            out.append(str(v))
    return tuple(out)


def condition_keys(df: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Each row's :func:`condition_key` as one string, to group rows of different tables by condition."""
    recs = df[list(columns)].to_dict("records")
    return pd.Series(["\x1f".join(condition_key(r, columns)) for r in recs], index=df.index, dtype=object)


def varying_columns(df: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The ``columns`` of ``df`` whose set values differ between its rows (blanks do not count): what a
    label must name to tell the rows apart."""
    present = [c for c in columns if c in df.columns]
    return [c for c in present if len({setting_text(v) for v in df[c] if not is_missing(v)}) > 1]


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
    parts: list[pd.DataFrame] = []
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
    masked = identity_mask(exp, runs)
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
    return sort_conditions(out)
