"""Load an experiment's run directories into tidy pandas tables.

Reads only the on-disk contract (``suite/paths.py``, ARCHITECTURE.md), whatever launched the runs:

* ``experiment.json`` (optional): what was asked; its ``cohort`` field says whether the data are real ACDC;
* per run ``config.json`` (required keys: stage, method, n_labeled, seed, split_seed, gamma, lam, epochs;
  ``identity_keys``, the fields that make up the run's identity, derived from the config when absent),
  ``metrics.csv`` (columns ``epoch,split,volume,metric,value``; extra columns ignored), ``summary.json``
  (presence = finished), ``failed.json`` (the run raised), ``env.json`` (provenance).

Two tables come out (:class:`Experiment`):

* ``runs``: one row per run directory: ``run_id``, ``status`` (finished | partial | failed | absent), the
  config flattened into columns (lists as ``"3,4,23,3"``), ``summary_*`` and ``env_*`` fields, ``n_epochs``
  (distinct epochs logged) and ``unit`` (the statistical unit: seed and split seed);
* ``metrics``: the tidy metrics, one row per run x epoch x split x volume x metric, with ``run_id``,
  ``split``, ``volume`` and ``metric`` as categoricals (``volume`` is ``""`` for run-level rows).

Speed: every ``metrics.csv`` is parsed by pandas' C parser with fixed dtypes straight into categoricals,
handed back as plain arrays, and the per-run category codes are re-mapped into one vocabulary with a lookup
table, so 1,000 runs x 100 epochs x 40 volumes load in seconds per core (``scripts/bench_analysis.py``;
BENCHMARKS.md). A partially written last line of a run still in progress (no trailing
newline) is dropped; any other malformed file of a run excludes that run, named with the file, the line and
why in the experiment's warnings (the report shows them): one damaged run never costs the whole report.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from suite.errors import InputError
from suite.paths import METRICS_COLUMNS, ExperimentPaths, RunPaths, metrics_row_problem

log = logging.getLogger("analysis.load")

REQUIRED_CONFIG_KEYS = ("stage", "method", "n_labeled", "seed", "split_seed", "gamma", "lam", "epochs")
# strings as plain objects: parsing them straight into categoricals is ~1.5x slower in pandas 3; each run's
# strings are factorised once in _pack
METRICS_DTYPES = {"epoch": "int32", "split": object, "volume": object, "metric": object, "value": "float64"}
NA_VALUES = {"value": ["", "nan", "NaN", "NAN", "-nan", "null", "None"]}
CATEGORICAL = ("split", "volume", "metric")
# cohort names that mean "the real ACDC release" (experiment.json ``cohort`` / ``source``)
ACDC_NAMES = ("acdc",)


@dataclass
class Experiment:
    """Everything ``suite report`` needs from one ``RESULTS/<experiment>`` folder."""

    root: Path
    info: dict[str, Any]
    runs: pd.DataFrame
    metrics: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    config_columns: list[str] = field(default_factory=list)
    # run_id -> the config fields that make up that run's identity (see identity_keys)
    identity_keys: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.root.resolve().name)

    @property
    def cohort(self) -> str:
        """``acdc``, ``phantom`` or ``unknown`` (see :func:`detect_cohort`)."""
        return detect_cohort(self.info, self.runs)


# ---------------------------------------------------------------------------------------------- helpers
def _read_json(path: Path, *, required: bool) -> dict[str, Any] | None:
    if not path.exists():
        if required:
            raise InputError(f"{path}: missing; every run directory needs it (the run config)")
        return None
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({e}); check permissions or remove the run directory") from e
    except json.JSONDecodeError as e:
        raise InputError(
            f"{path}: malformed JSON ({e.msg} at line {e.lineno}); fix or remove the file"
        ) from e
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(obj).__name__}; fix or remove the file")
    return obj


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, prefix=f"{key}."))
        elif isinstance(v, list | tuple):
            out[key] = ",".join(str(x) for x in v)
        else:
            out[key] = v
    return out


def _check_config(cfg: dict[str, Any], path: Path) -> None:
    missing = [k for k in REQUIRED_CONFIG_KEYS if k not in cfg]
    if missing:
        raise InputError(
            f"{path}: missing key(s) {', '.join(missing)}; a run config needs "
            f"{', '.join(REQUIRED_CONFIG_KEYS)}; write it with suite run / suite tune or add the keys"
        )
    for k in ("n_labeled", "seed", "split_seed", "epochs"):
        v = cfg[k]
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or (isinstance(v, float) and not v.is_integer())
        ):
            raise InputError(f"{path}: key {k}={v!r} must be an integer; fix the config")
    for k in ("gamma", "lam"):
        if isinstance(cfg[k], bool) or not isinstance(cfg[k], int | float):
            raise InputError(f"{path}: key {k}={cfg[k]!r} must be a number; fix the config")
    if "stat_window" in cfg and (not isinstance(cfg["stat_window"], int) or cfg["stat_window"] < 1):
        raise InputError(f"{path}: key stat_window={cfg['stat_window']!r} must be an integer >= 1")


def identity_keys(cfg: dict[str, Any], path: Path) -> frozenset[str]:
    """The config fields that change this run's results: ``config.json``'s ``identity_keys``, or for a run
    directory written before the suite recorded them, the keys of ``RunConfig.identity()`` of its config."""
    keys = cfg.get("identity_keys")
    if keys is not None:
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise InputError(
                f"{path}: identity_keys={keys!r} is not a list of config field names; "
                "delete the key to derive it from the config"
            )
        return frozenset(keys)
    from suite.config import RunConfig

    known = set(RunConfig.field_names())
    run = RunConfig.from_dict({k: v for k, v in cfg.items() if k in known}, source=str(path))
    return frozenset(run.identity())


def read_metrics(path: Path, *, in_progress: bool = False) -> pd.DataFrame:
    """Parse one ``metrics.csv`` (int32 epoch, string split/volume/metric, float64 value); raise InputError
    naming the file when malformed.

    ``in_progress``: the run is still writing; an unterminated last line is dropped instead of rejected.
    """
    try:
        df = pd.read_csv(
            path,
            usecols=list(METRICS_COLUMNS),
            dtype=METRICS_DTYPES,
            keep_default_na=False,
            na_values=NA_VALUES,
            engine="c",
        )
    except FileNotFoundError:
        raise
    except (ValueError, UnicodeDecodeError) as e:  # pd.errors.ParserError is a ValueError
        msg = _first_bad_line(path) or str(e).splitlines()[0][:160]
        raise InputError(
            f"{path}: malformed metrics.csv ({msg}); expected columns "
            f"{','.join(METRICS_COLUMNS)} with an integer epoch and a float value"
        ) from e
    except OSError as e:
        raise InputError(f"{path}: cannot read metrics.csv ({e}); check permissions") from e
    if in_progress and len(df):
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                df = df.iloc[:-1]
    bad = (df["metric"] == "") | (df["split"] == "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise InputError(
            f"{path}: malformed metrics.csv: line {row} has an empty split or metric (truncated "
            "line?); fix or remove the line"
        )
    if (df["epoch"] < 0).any():
        raise InputError(f"{path}: malformed metrics.csv: negative epoch; epochs are 0-based integers")
    return df


def _first_bad_line(path: Path) -> str | None:
    """Where a metrics.csv stops being (epoch, split, volume, metric, value) rows: "line N: why" (the slow
    path, only taken once pandas' fast parser has refused the file)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            for line, row in enumerate(csv.reader(f), start=1):
                if line == 1:
                    if tuple(row) != METRICS_COLUMNS:
                        return f"line 1: header {','.join(row)[:60]!r} is not {','.join(METRICS_COLUMNS)}"
                    continue
                why = metrics_row_problem(row)
                if why:
                    return f"line {line}: {why}"
    except (OSError, csv.Error) as e:
        return f"unreadable: {e}"
    return None


def _load_run_or_exclude(rp: RunPaths) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """:func:`_load_run`, with a damaged run (unreadable config, summary or metrics) marked ``excluded``
    instead of aborting the whole experiment: one bad file must not cost the report of every other run."""
    try:
        return _load_run(rp)
    except InputError as e:
        return {"run_id": rp.run_id, "status": "damaged", "path": str(rp.root), "excluded": str(e)}, None


def _pack(df: pd.DataFrame) -> dict[str, Any]:
    """A parsed metrics.csv as plain arrays (cheap to pickle; categories re-coded once by the caller)."""
    out: dict[str, Any] = {
        "epoch": df["epoch"].to_numpy(dtype=np.int32),
        "value": df["value"].to_numpy(dtype=np.float64),
    }
    for col in CATEGORICAL:
        codes, uniques = pd.factorize(df[col].to_numpy(dtype=object), use_na_sentinel=True)
        out[col] = ([str(c) for c in uniques], codes.astype(np.int32))
    return out


def _load_run(rp: RunPaths) -> tuple[dict[str, Any], dict[str, Any] | None]:
    status = rp.status()
    row: dict[str, Any] = {"run_id": rp.run_id, "status": status, "path": str(rp.root)}
    if status == "absent":
        return row, None
    cfg = _read_json(rp.config, required=True)
    assert cfg is not None
    _check_config(cfg, rp.config)
    flat = _flatten(cfg)
    flat.pop("run_id", None)
    flat.pop("identity_keys", None)
    row.update(flat)
    row["_config_keys"] = tuple(flat)
    row["_identity_keys"] = identity_keys(cfg, rp.config)
    summary = _read_json(rp.summary, required=False)
    if summary:
        for k in (
            "wall_time_s",
            "device",
            "world_size",
            "best_epoch",
            "best_value",
            "finished_at",
            "epochs",
            "n_labeled_effective",
        ):
            if k in summary and not isinstance(summary[k], dict | list):
                row[f"summary_{k}"] = summary[k]
    failed = _read_json(rp.failed, required=False) if status == "failed" else None
    if failed:
        row["failed_error"] = str(failed.get("error", failed.get("message", "")))[:300]
    env = _read_json(rp.env, required=False)
    if env:
        for k, v in env.items():
            row[f"env_{k}"] = json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
    packed: dict[str, Any] | None = None
    if rp.metrics.exists():
        packed = _pack(read_metrics(rp.metrics, in_progress=status != "finished"))
    elif status == "finished":
        raise InputError(
            f"{rp.metrics}: missing although summary.json says the run finished; "
            "rerun it or remove the run directory"
        )
    return row, packed


def detect_cohort(info: dict[str, Any], runs: pd.DataFrame | None = None) -> str:
    """Which cohort the experiment ran on: ``acdc``, ``phantom`` or ``unknown``.

    First match wins:

    1. ``experiment.json`` ``cohort`` (or ``data_source``): a name (``acdc``, ``phantom``), or a dict with
       ``kind`` / ``cohort`` (a name) or ``source`` (the ACDC-format folder, inspected as in 3.);
    2. a ``cohort`` column in the run configs;
    3. the prepared data named by the run configs' ``data``: its ``manifest.json`` ``source`` folder holds
       ``phantom.json`` -> ``phantom``; it exists and holds ACDC patient folders without it -> ``acdc``.

    Only ``acdc`` is compared with the paper's Table 1; ``unknown`` is not (say ``--cohort acdc`` to force
    it).
    """
    for key in ("cohort", "data_source"):
        v = info.get(key)
        if isinstance(v, dict):  # the Tune driver records {"source": <ACDC-format folder>, "n_patients": ...}
            named = v.get("kind") or v.get("cohort")
            if isinstance(named, str) and named:
                v = named
            elif isinstance(v.get("source"), str) and v["source"]:
                found = _cohort_from_source(Path(v["source"]))
                if found:
                    return found
                continue
        if isinstance(v, str) and v and "/" not in v:
            v = v.lower()
            return "acdc" if v in ACDC_NAMES else ("phantom" if "phantom" in v else v)
    if runs is not None and "cohort" in runs.columns:
        vals = runs["cohort"].dropna().astype(str).str.lower().unique()
        if len(vals) == 1:
            return "acdc" if vals[0] in ACDC_NAMES else vals[0]
    if runs is not None and "data" in runs.columns:
        for data in runs["data"].dropna().astype(str).unique()[:3]:
            if data:
                found = _cohort_from_prepared(Path(data))
                if found:
                    return found
    return "unknown"


def _cohort_from_prepared(data: Path) -> str | None:
    try:
        manifest = json.loads((data / "manifest.json").read_text())
        src = Path(str(manifest.get("source", "")))
    except (OSError, ValueError, AttributeError):
        return None
    return _cohort_from_source(src) if str(src) else None


def _cohort_from_source(src: Path) -> str | None:
    """``phantom`` when the ACDC-format folder holds the phantom's ``phantom.json``; ``acdc`` when it holds
    patient folders without it; None when the folder is not reachable from here."""
    if not src.is_dir():
        return None
    if (src / "phantom.json").exists():
        return "phantom"
    if any(src.glob("patient*/Info.cfg")):
        return "acdc"
    return None


def unit_label(seed: Any, split_seed: Any) -> str:
    """The statistical unit of a run: its training seed and split seed (``s0-r1``)."""
    return f"s{int(seed)}-r{int(split_seed)}"


# ---------------------------------------------------------------------------------------------- entry point
def load_experiment(
    root: str | os.PathLike, *, workers: int | None = None, mode: str = "thread"
) -> Experiment:
    """Load every run directory of ``root`` (``RESULTS/<experiment>``).

    Raises InputError when ``root`` is not an experiment folder or holds no run with a config.
    ``workers``: parallel readers (default: up to 2 when there are more than 50 runs); ``mode``: ``thread``
    (default: safe in any process; pandas' C parser releases the GIL while tokenising) or ``process``.
    """
    root = Path(root)
    ep = ExperimentPaths(root)
    if not root.is_dir():
        raise InputError(
            f"{root}: not a directory; pass RESULTS/<experiment> as written by suite run/tune/slurm"
        )
    if not ep.runs_dir.is_dir():
        raise InputError(
            f"{root}: not an experiment folder (no runs/ directory); pass RESULTS/<experiment> "
            "as written by suite run/tune/slurm"
        )
    info = _read_json(ep.experiment, required=False) or {}
    run_paths = ep.all_runs()
    if not run_paths:
        raise InputError(f"{ep.runs_dir}: no run directories; launch runs first (suite run / suite tune)")
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(run_paths) > 50 else 1
    if workers > 1 and mode == "process":
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:
            loaded = list(pool.map(_load_run_or_exclude, run_paths, chunksize=16))
    elif workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            loaded = list(pool.map(_load_run_or_exclude, run_paths))
    else:
        loaded = [_load_run_or_exclude(rp) for rp in run_paths]
    warnings: list[str] = []
    excluded: list[str] = []
    rows: list[dict[str, Any]] = []
    packs: list[tuple[int, dict[str, Any]]] = []
    config_cols: dict[str, None] = {}
    identity: dict[str, frozenset[str]] = {}
    for rp, (row, packed) in zip(run_paths, loaded, strict=True):
        if row["status"] == "absent":
            warnings.append(f"run directory {rp.root.name}: no config.json (absent run), ignored")
            continue
        if "excluded" in row:
            excluded.append(row["excluded"])
            warnings.append(f"run {rp.run_id} excluded (damaged): {row['excluded']}")
            continue
        if packed is not None and len(packed["epoch"]):
            epochs = packed["epoch"]
            row["n_epochs"] = int(np.count_nonzero(np.bincount(epochs)))
            row["last_epoch"] = int(epochs.max())
            packs.append((len(rows), packed))
        else:
            row["n_epochs"] = 0
            row["last_epoch"] = -1
        config_cols.update(dict.fromkeys(row.get("_config_keys", ())))
        row.pop("_config_keys", None)
        identity[row["run_id"]] = row.pop("_identity_keys")
        rows.append(row)
    if not rows and excluded:
        raise InputError(
            f"{ep.runs_dir}: no readable run ({len(excluded)} damaged), the first: {excluded[0]}"
        )
    if not rows:
        raise InputError(f"{ep.runs_dir}: no run has a config.json; nothing to analyse")
    runs = pd.DataFrame(rows)
    runs["unit"] = [unit_label(s, r) for s, r in zip(runs["seed"], runs["split_seed"], strict=True)]
    for col in ("n_labeled", "seed", "split_seed", "epochs"):
        runs[col] = runs[col].astype("int64")
    for col in ("gamma", "lam"):
        runs[col] = runs[col].astype("float64")
    if "stat_window" in runs.columns:
        runs["stat_window"] = runs["stat_window"].astype("float64")
    metrics = _assemble(list(runs["run_id"]), packs)
    counts = runs["status"].value_counts().to_dict()
    log.info(
        "loaded %d runs from %s (%s), %d metric rows",
        len(runs),
        root,
        ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
        len(metrics),
    )
    return Experiment(
        root=root,
        info=info,
        runs=runs,
        metrics=metrics,
        warnings=warnings,
        config_columns=list(config_cols),
        identity_keys=identity,
    )


def _assemble(run_ids: list[str], packs: list[tuple[int, dict[str, Any]]]) -> pd.DataFrame:
    """One tidy frame from the per-run arrays: categories merged into one sorted vocabulary per column and
    every run's codes re-mapped with a small lookup table (no pandas categorical machinery per run)."""
    n = sum(len(p["epoch"]) for _, p in packs)
    cols: dict[str, Any] = {}
    rid = np.empty(n, dtype=np.int32)
    epoch = np.empty(n, dtype=np.int32)
    value = np.empty(n, dtype=np.float64)
    vocab = {c: sorted({x for _, p in packs for x in p[c][0]}) for c in CATEGORICAL}
    index = {c: {x: i for i, x in enumerate(vocab[c])} for c in CATEGORICAL}
    codes = {c: np.empty(n, dtype=np.int32) for c in CATEGORICAL}
    pos = 0
    for run_index, p in packs:
        k = len(p["epoch"])
        sl = slice(pos, pos + k)
        rid[sl] = run_index
        epoch[sl] = p["epoch"]
        value[sl] = p["value"]
        for c in CATEGORICAL:
            cats, cc = p[c]
            lut = np.array([index[c][x] for x in cats] + [-1], dtype=np.int32)  # code -1 (NaN) -> -1
            codes[c][sl] = lut[cc]
        pos += k
    cols["run_id"] = pd.Categorical.from_codes(
        rid, categories=pd.Index(run_ids, dtype=object), validate=False
    )
    cols["epoch"] = epoch
    for c in CATEGORICAL:
        cols[c] = pd.Categorical.from_codes(
            codes[c], categories=pd.Index(vocab[c], dtype=object), validate=False
        )
    cols["value"] = value
    return pd.DataFrame(cols)
