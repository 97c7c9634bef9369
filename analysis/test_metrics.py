"""The held-out test set: each run's ``test_metrics.csv`` as one tidy table, and its statistics.

Reads ``RUN/test_metrics.csv`` (columns :data:`suite.paths.TEST_METRICS_COLUMNS`: one row per checkpoint x
split x volume x class; 3-D Dice in 0..1, HD95 and ASSD in mm with NaN where undefined, volumes in ml).

Definitions (the report states them):

* **Per run** (split ``test``, per checkpoint and class): Dice = mean over the test volumes (both-empty
  volumes count 1, one-empty volumes 0: the Metrics Reloaded rule the evaluation applies); HD95 and ASSD =
  mean over the volumes where they are defined; ``n_undefined`` = volumes where they are not (exactly one of
  prediction and truth empty: never averaged as 0 or as a maximum, counted instead); the volume error = mean
  |predicted − true| cavity volume in ml over the test patients, separately at ED and at ES; the EF error =
  mean |EF(predicted) − EF(true)| in EF points over the test patients, EF from that patient's ED and ES
  volumes through :func:`suite.metrics.ejection_fraction` (cavities only: LV and RV).
* **Across seeds**: per condition (the validation analysis's conditions), the mean and the Student-t
  interval of the per-run values (:func:`analysis.intervals.t_interval`), units = (seed, split seed).
* **Paired differences** against FS on the final checkpoint's LV Dice, by :func:`analysis.comparisons.
  paired_comparisons` (the same machinery as the validation statistic).
* **Validation/test gap**: per run, its paper statistic (last-W validation Dice) minus its final test Dice.

Only runs that enter the validation statistics (included in ``run_stats``) enter the test tables, so both
describe the same runs; the test split is read here only after training and never chooses anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.comparisons import paired_comparisons
from analysis.intervals import t_interval
from analysis.load import Experiment
from analysis.run_stats import BASE_CONDITION, sort_conditions
from analysis.stats import Analysis
from suite.errors import InputError
from suite.metrics import ejection_fraction
from suite.paths import (
    TEST_METRICS_COLUMNS,
    TEST_METRICS_FLAGS,
    TEST_METRICS_NUMBERS,
    TEST_METRICS_SPLITS,
    RunPaths,
)
from suite.paths import read_test_metrics as read_rows

CAVITIES = ("LV", "RV")  # the classes with an ejection fraction
MAIN_CLASS = "LV"  # the paper's target: paired differences and the val/test gap
# per-run values summarised across seeds (final checkpoint; Dice also for best)
RUN_VALUES = ("dice", "hd95_mm", "assd_mm", "vol_err_ed_ml", "vol_err_es_ml", "ef_err")


@dataclass
class TestSet:
    """The test-set tables of one experiment (empty frames when no run has ``test_metrics.csv``)."""

    rows: pd.DataFrame  # tidy rows of every included run, with run_id
    per_run: pd.DataFrame  # run x checkpoint x class (split test)
    table: pd.DataFrame  # condition x checkpoint x class, mean and interval of RUN_VALUES
    paired: pd.DataFrame  # paired_comparisons columns, on the final checkpoint's LV Dice
    gap: pd.DataFrame  # condition: validation statistic vs final test Dice
    warnings: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.per_run.empty


def _reevaluate(path: Path) -> str:
    """The fix for a damaged ``test_metrics.csv``: ``suite evaluate`` on its run re-evaluates a file that does
    not read back with the rows ``evaluation.json`` records."""
    return f"run `suite evaluate {path.parent}`"


def read_test_metrics(path: Path) -> pd.DataFrame:
    """One ``test_metrics.csv`` as a frame, through the suite's one reader (:func:`suite.paths.
    read_test_metrics`: the rows the evaluation accepts, an InputError naming the file and the fix else)."""
    df = pd.DataFrame(read_rows(path), columns=list(TEST_METRICS_COLUMNS))
    return df.astype(
        {**dict.fromkeys(TEST_METRICS_NUMBERS, np.float64), **dict.fromkeys(TEST_METRICS_FLAGS, bool)}
    )


def _check_recorded_rows(path: Path, df: pd.DataFrame) -> None:
    """An InputError when ``test_metrics.csv`` holds another number of rows of a split than the run's
    ``evaluation.json`` records (a file cut at a row's end reads back cleanly); no record, no check."""
    try:
        record = json.loads((path.parent / "evaluation.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return
    for split in TEST_METRICS_SPLITS:
        entry = record.get(split) if isinstance(record, dict) else None
        want = entry.get("rows") if isinstance(entry, dict) else None
        have = int((df["split"] == split).sum())
        if isinstance(want, int) and have != want:
            raise InputError(
                f"{path}: {have} {split} rows, evaluation.json records {want} (the file was cut short or "
                f"edited); {_reevaluate(path)}"
            )


def load_test_rows(exp: Experiment, run_ids: pd.Series) -> tuple[pd.DataFrame, list[str]]:
    """The ``test_metrics.csv`` rows of the given runs that have one, and a warning per unreadable file
    (that run is left out of the test tables; the rest of the report is unaffected)."""
    paths = exp.runs.set_index("run_id")["path"]
    parts, warns = [], []
    for rid in run_ids:
        tm = RunPaths(Path(str(paths[rid]))).test_metrics
        if not tm.exists():
            continue
        try:
            df = read_test_metrics(tm)
            _check_recorded_rows(tm, df)
            parts.append(df.assign(run_id=rid))
        except InputError as e:
            warns.append(f"test set: run {rid} left out: {e}")
    if not parts:
        return pd.DataFrame(columns=["run_id", *TEST_METRICS_COLUMNS]), warns
    return pd.concat(parts, ignore_index=True), warns


def ef_errors(rows: pd.DataFrame) -> pd.DataFrame:
    """|EF(pred) − EF(true)| per run x checkpoint x split x patient x cavity class, from its ED and ES rows.

    Columns: ``run_id, checkpoint, split, patient, class, ef_true, ef_pred, ef_err`` (EF points; NaN where an
    EDV is 0, e.g. an empty ED prediction)."""
    keys = ["run_id", "checkpoint", "split", "patient", "class"]
    cav = rows.loc[rows["class"].isin(CAVITIES)]
    if cav.empty:
        return pd.DataFrame(columns=[*keys, "ef_true", "ef_pred", "ef_err"])
    wide = cav.pivot_table(
        index=keys, columns="phase", values=["volume_true_ml", "volume_pred_ml"], aggfunc="first"
    )
    if ("volume_true_ml", "ED") not in wide.columns or ("volume_true_ml", "ES") not in wide.columns:
        return pd.DataFrame(columns=[*keys, "ef_true", "ef_pred", "ef_err"])
    out = wide.index.to_frame(index=False)
    out["ef_true"] = ejection_fraction(wide[("volume_true_ml", "ED")], wide[("volume_true_ml", "ES")])
    out["ef_pred"] = ejection_fraction(wide[("volume_pred_ml", "ED")], wide[("volume_pred_ml", "ES")])
    out["ef_err"] = (out["ef_pred"] - out["ef_true"]).abs()
    return out


def per_run_values(rows: pd.DataFrame) -> pd.DataFrame:
    """Split ``test``: one row per run x checkpoint x class with :data:`RUN_VALUES`, ``n_volumes`` and
    ``n_undefined`` (volumes whose surface distances are undefined)."""
    keys = ["run_id", "checkpoint", "class"]
    t = rows.loc[rows["split"] == "test"].copy()
    cols = [*keys, *RUN_VALUES, "n_volumes", "n_undefined"]
    if t.empty:
        return pd.DataFrame(columns=cols)
    t["vol_err"] = (t["volume_pred_ml"] - t["volume_true_ml"]).abs()
    t["undefined"] = t["hd95_mm"].isna() | t["assd_mm"].isna()
    g = t.groupby(keys, sort=True)
    out = g.agg(
        dice=("dice", "mean"),
        hd95_mm=("hd95_mm", "mean"),  # pandas' mean skips NaN: the defined volumes only
        assd_mm=("assd_mm", "mean"),
        n_volumes=("volume", "size"),
        n_undefined=("undefined", "sum"),
    )
    for phase in ("ED", "ES"):
        sub = t.loc[t["phase"] == phase].groupby(keys)["vol_err"].mean()
        out[f"vol_err_{phase.lower()}_ml"] = sub
    ef = ef_errors(t)
    out["ef_err"] = ef.groupby(keys)["ef_err"].mean() if len(ef) else np.nan
    return out.reset_index()[cols]


def _conditions(a: Analysis) -> pd.DataFrame:
    """The included segmenter runs with their condition columns, unit and validation statistic."""
    rs = a.run_stats
    if rs.empty:
        return rs
    keep = [*a.cond, "run_id", "unit", "stat", "included"]
    return rs.loc[rs["included"], [c for c in keep if c in rs.columns]]


def across_seed_table(
    per_run: pd.DataFrame, runs: pd.DataFrame, cond: list[str], confidence: float
) -> pd.DataFrame:
    """Per condition x checkpoint x class: ``n_units``, ``<value>_mean/_low/_high`` for :data:`RUN_VALUES`
    and the summed ``n_volumes``, ``n_undefined``."""
    m = per_run.merge(runs, on="run_id")
    keys = [*cond, "checkpoint", "class"]
    rows = []
    for key, g in m.groupby(keys, dropna=False, sort=False):
        rec = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        rec["n_units"] = int(g["unit"].nunique())
        for v in RUN_VALUES:
            ti = t_interval(g[v].to_numpy(dtype=np.float64), confidence)
            rec.update({f"{v}_mean": ti.mean, f"{v}_low": ti.low, f"{v}_high": ti.high})
        rec["n_volumes"] = int(g["n_volumes"].sum())
        rec["n_undefined"] = int(g["n_undefined"].sum())
        rows.append(rec)
    cols = [*keys, "n_units", *[f"{v}_{s}" for v in RUN_VALUES for s in ("mean", "low", "high")]]
    extra = [c for c in cond if c not in BASE_CONDITION]
    return sort_conditions(pd.DataFrame(rows, columns=[*cols, "n_volumes", "n_undefined"]), extra)


def final_main(per_run: pd.DataFrame) -> pd.DataFrame:
    """The final checkpoint's values of the paper's class (LV), or of the first class when there is none."""
    fin = per_run.loc[per_run["checkpoint"] == "final"]
    cls = (
        MAIN_CLASS if (fin["class"] == MAIN_CLASS).any() else (fin["class"].min() if len(fin) else MAIN_CLASS)
    )
    return fin.loc[fin["class"] == cls]


def paired_vs_fs(a: Analysis, per_run: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Each method − FS on the final test Dice (LV), paired by unit: :func:`paired_comparisons`."""
    m = final_main(per_run)[["run_id", "dice"]].merge(runs.drop(columns=["stat"]), on="run_id")
    methods = [x for x in dict.fromkeys(m["method"]) if x != "fs"]
    if m.empty or "fs" not in set(m["method"]) or not methods:
        return pd.DataFrame()
    frame = m.rename(columns={"dice": "stat"})
    return paired_comparisons(
        frame, a.cond, pairs=tuple((x, "fs") for x in methods), confidence=a.confidence, scale=100.0
    )


def val_test_gap(a: Analysis, per_run: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per condition: validation statistic, final test Dice and their gap (val − test), in Dice %, with the
    interval of the gap over seeds."""
    m = final_main(per_run)[["run_id", "dice"]].merge(runs, on="run_id")
    cols = [*a.cond, "n_units", "val_mean", "test_mean", "gap_mean", "gap_low", "gap_high"]
    if m.empty:
        return pd.DataFrame(columns=cols)
    m["val"] = m["stat"] * a.scale
    m["test"] = m["dice"] * 100.0  # test_metrics.csv holds Dice in 0..1 (the contract)
    m["gap"] = m["val"] - m["test"]
    rows = []
    for key, g in m.groupby(a.cond, dropna=False, sort=False):
        ti = t_interval(g["gap"].to_numpy(), a.confidence)
        rows.append(
            {
                **dict(zip(a.cond, key if isinstance(key, tuple) else (key,), strict=True)),
                "n_units": ti.n,
                "val_mean": float(g["val"].mean()),
                "test_mean": float(g["test"].mean()),
                "gap_mean": ti.mean,
                "gap_low": ti.low,
                "gap_high": ti.high,
            }
        )
    return sort_conditions(pd.DataFrame(rows, columns=cols), [c for c in a.cond if c not in BASE_CONDITION])


def analyse_test_set(a: Analysis) -> TestSet:
    """Every test-set table of the experiment behind ``a`` (see the module docstring)."""
    runs = _conditions(a)
    ids = runs["run_id"] if len(runs) else pd.Series([], dtype=object)
    rows, warns = load_test_rows(a.experiment, ids)
    per_run = per_run_values(rows)
    if per_run.empty:
        return TestSet(rows, per_run, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), warns)
    table = across_seed_table(per_run, runs.drop(columns=["stat", "included"]), a.cond, a.confidence)
    missing = sorted(set(ids) - set(per_run["run_id"]))
    if missing:
        warns.append(
            f"test set: {len(missing)} included run(s) without test metrics (run suite evaluate on them): "
            + ", ".join(missing[:6])
            + (" …" if len(missing) > 6 else "")
        )
    return TestSet(
        rows=rows,
        per_run=per_run,
        table=table,
        paired=paired_vs_fs(a, per_run, runs),
        gap=val_test_gap(a, per_run, runs),
        warnings=warns,
    )
