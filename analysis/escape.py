"""Per seed: does a run leave the start-up collapse, and when does it catch up with its FS?

A penalty method can empty the LV channel in its first epochs (validation Dice 0) and climb back, slowly or
never; whether it does can depend on the seed, and a mean over seeds (the dynamics section) hides which
seeds did. For every included run of a method other than FS:

* ``collapsed_epochs``: its epochs with a validation Dice below :data:`COLLAPSED` (its arg-max map has
  almost no LV left), ``last_collapsed`` the last of them, and ``out_from`` the epoch after it: the run
  stays at or above the threshold from there to its end (NaN when its last epoch is collapsed: it never
  left; 0 when it never collapsed). Every epoch from its first penalty epoch counts (``penalty_warmup``:
  the warm-up epochs are FS's own training), so a collapse that comes after an FS warm start is seen too;
* ``caught_up``: the first epoch at which the mean validation Dice of its last :data:`SPAN` epochs reaches
  that of its paired FS run (same n, seed and split seed; the same SPAN epochs), counted from the run's
  first penalty epoch (``penalty_warmup``: under a warm start the epochs before it are FS's own training);
  NaN when it never does or has no FS to pair with (``fs_paired`` False).

The per-epoch values are :func:`analysis.run_stats.epoch_means`' (complete epochs), the runs those
:func:`analysis.run_stats.run_statistics` includes: nothing is recomputed. Whether a run *ends* above FS is
the per-seed section's (the paper statistic), not this one's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.per_seed import seed_labels
from analysis.run_stats import condition_key, condition_text, is_missing, varying_columns

REFERENCE = "fs"
# validation Dice (fraction) under which a run counts as collapsed (its arg-max keeps almost no LV), here
# and on the demo's screen; a learning FS of the 64x64 phantom is at 0.2-0.5
COLLAPSED = 0.05
SPAN = 10  # epochs in the trailing means compared with FS (the 10-epoch means of BENCHMARKS.md's tables)
COLUMNS = (
    "seed",
    "unit",
    "run_id",
    "n_epochs",
    "collapsed_epochs",
    "last_collapsed",
    "out_from",
    "fs_paired",
    "caught_up",
)


def escape_table(
    per_epoch: pd.DataFrame, run_stats: pd.DataFrame, runs: pd.DataFrame, cond: list[str], scale: float
) -> pd.DataFrame:
    """One row per included run of a method other than FS: the condition columns but ``stage``, and
    :data:`COLUMNS` (see the module docstring). Empty when there is none. ``scale``: the analysis's (100
    when Dice is logged as a fraction, 1 when in %), which :data:`COLLAPSED` is converted by."""
    threshold = COLLAPSED * 100.0 / scale
    keys = [c for c in cond if c != "stage"]
    out_cols = [*keys, *COLUMNS]
    inc = run_stats.loc[run_stats["included"]] if len(run_stats) else run_stats
    if inc.empty or per_epoch.empty or not (inc["method"] != REFERENCE).any():
        return pd.DataFrame(columns=out_cols)
    pe = per_epoch.loc[per_epoch["complete"], ["run_id", "epoch", "value"]]
    series = {
        str(rid): g.sort_values("epoch").set_index("epoch")["value"].astype(float)
        for rid, g in pe.groupby("run_id", sort=False, observed=True)
    }
    # the epoch each run's penalty starts (runs written before the warm-up existed have no column: 0)
    starts = runs["penalty_warmup"] if "penalty_warmup" in runs.columns else pd.Series(0, index=runs.index)
    warmup = dict(zip(runs["run_id"].astype(str), starts, strict=True))
    fs = inc.loc[inc["method"] == REFERENCE].to_dict("records")
    rows = []
    for r in (
        inc.loc[inc["method"] != REFERENCE]
        .sort_values(["seed", "split_seed"], kind="stable")
        .to_dict("records")
    ):
        d = series.get(str(r["run_id"]))
        if d is None or d.empty:
            continue
        rec: dict[str, Any] = {c: r[c] for c in keys}
        rec.update(seed=int(r["seed"]), unit=r["unit"], run_id=r["run_id"], n_epochs=len(d))
        start = warmup.get(str(r["run_id"]), 0)
        start = 0 if is_missing(start) else int(start)
        low = d.index[(d.to_numpy() < threshold) & (d.index.to_numpy() >= start)]
        rec["collapsed_epochs"] = len(low)
        rec["last_collapsed"] = int(low[-1]) if len(low) else np.nan
        rec["out_from"] = 0 if not len(low) else (np.nan if low[-1] == d.index[-1] else int(low[-1]) + 1)
        partner = _paired_fs(r, fs, keys)
        rec["fs_paired"] = partner is not None
        rec["caught_up"] = (
            _caught_up(d, series.get(str(partner["run_id"])), start) if partner is not None else np.nan
        )
        rows.append(rec)
    return pd.DataFrame(rows, columns=out_cols)


def _paired_fs(run: dict[str, Any], fs: list[dict[str, Any]], keys: list[str]) -> dict[str, Any] | None:
    """The FS run of ``run``'s n and unit that agrees on every condition field both have (FS has no γ, λ,
    scheme...: those are blank on its row)."""
    shared = [c for c in keys if c != "method"]
    for f in fs:
        if f["unit"] != run["unit"]:
            continue
        both = [c for c in shared if not is_missing(f.get(c)) and not is_missing(run.get(c))]
        if condition_key(f, both) == condition_key(run, both):
            return f
    return None


def _caught_up(run: pd.Series, fs: pd.Series | None, start: int) -> float:
    if fs is None or fs.empty:
        return np.nan
    common = run.index.intersection(fs.index)
    a = run.loc[common].rolling(SPAN).mean()
    b = fs.loc[common].rolling(SPAN).mean()
    ok = common[(a >= b).to_numpy() & (common >= start + SPAN - 1)]
    return int(ok[0]) if len(ok) else np.nan


def escape_summaries(table: pd.DataFrame, cond: list[str]) -> list[tuple[str, str]]:
    """Per condition of :func:`escape_table`: (its name, the per-seed facts in words), e.g. "at Dice < 5% in
    9 of s0 (the last 8), 0 of s1; at or above it to the end in 2 of 2 seeds (from epoch 9 in s0, 0 in s1);
    its 10-epoch mean reaches its FS's in 1 of 2 paired seeds (s0 at epoch 41; s1 never)." Runs are named
    as the per-seed section names them (:func:`analysis.per_seed.seed_labels`)."""
    if table.empty:
        return []
    keys = [c for c in cond if c != "stage"]
    shown = varying_columns(table, [c for c in keys if c != "method"])
    t = table.assign(_k=[condition_key(r, keys) for r in table.to_dict("records")])
    out = []
    for _, rows in t.groupby("_k", sort=False):
        label = condition_text(rows.iloc[0].to_dict(), shown)
        m = len(rows)
        seeds = seed_labels(list(rows["seed"]), list(rows["unit"]))
        collapsed = [
            f"{int(n)} of {s}" + ("" if n == 0 else f" (the last {int(last)})")
            for s, n, last in zip(seeds, rows["collapsed_epochs"], rows["last_collapsed"], strict=True)
        ]
        left = rows["out_from"].notna()
        text = (
            f"at Dice < {COLLAPSED:.0%} in " + ", ".join(collapsed) + f"; at or above it to the end in "
            f"{int(left.sum())} of {m} seed{'s' if m > 1 else ''}"
        )
        if left.any():
            text += (
                " (from epoch "
                + ", ".join(
                    f"{int(e)} in {s}"
                    for s, e in zip(seeds, rows["out_from"], strict=True)
                    if not is_missing(e)
                )
                + ")"
            )
        is_paired = rows["fs_paired"].astype(bool).to_numpy()
        paired = rows.loc[is_paired]
        if len(paired):
            ps = [s for s, p in zip(seeds, is_paired, strict=True) if p]
            caught = [
                f"{s} {'never' if is_missing(e) else f'at epoch {int(e)}'}"
                for s, e in zip(ps, paired["caught_up"], strict=True)
            ]
            text += (
                f"; its {SPAN}-epoch mean reaches its FS's in {int(paired['caught_up'].notna().sum())} of "
                f"{len(paired)} paired seed{'s' if len(paired) > 1 else ''} (" + "; ".join(caught) + ")"
            )
        out.append((label, text + "."))
    return out
