"""What each run and each method cost: ``summary.json``'s ``"cost"`` as a table, prerequisites attributed.

Each finished run records its own cost (``suite/stages/cost.py``: CPU-seconds summed over ranks,
device-seconds = wall × world size × the GPU share a packed trial held, i.e. GPU-seconds on CUDA, wall
seconds, peak memory, device). A
method's result also needs its prerequisites: a Proposed run needs its size regressor, a Proposals run the FS
model whose best checkpoint made its pseudo-labels.

**Attribution rule**: a prerequisite's (attributed) cost is split in equal shares among the finished runs of
the experiment that need it, and a run's attributed cost is its own plus its shares. A regressor shared by
three (γ, λ) settings of Proposed charges each a third; the FS run of a Proposals run is charged in full to
it (and still reported as FS's own cost). Summed over the runs that no other run needs, the attributed costs
equal the total spent, nothing counted twice. Runs without a recorded cost (written before the suite
measured it) count their wall time as device time (wall × world size); their CPU time and memory are
unknown.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import Experiment
from suite.config import METHODS, SSL_TERMS
from suite.paths import RunPaths

COST_FIELDS = ("cpu_seconds", "device_seconds", "wall_seconds", "peak_rss_mb", "peak_device_mb")
ATTRIBUTED = ("cpu_seconds", "device_seconds")  # additive; memory peaks and wall clock are not shared


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _prerequisite_ids(config: dict[str, Any], path: Path) -> tuple[str, ...]:
    from suite.config import RunConfig
    from suite.errors import InputError

    try:
        cfg = RunConfig.from_config_json(config, source=str(path))
    except InputError:
        return ()
    return tuple(p.run_id for p in cfg.prerequisites())


def arm(method: str, ssl: object) -> str:
    """A segmenter run's method with its ``ssl`` term (``proposed+cps``); the method alone without one (and
    for runs written before the field)."""
    return f"{method}+{ssl}" if isinstance(ssl, str) and ssl != "none" else method


def _number(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def load_costs(exp: Experiment) -> tuple[pd.DataFrame, list[str]]:
    """One row per finished run: ``run_id, stage, method, ssl, n_labeled``, the :data:`COST_FIELDS`,
    ``device``, ``world_size``, ``recorded`` (False: the run predates the cost record and only its
    ``wall_time_s`` is known, so its device-seconds are wall × world size and its CPU-seconds and memory NaN),
    ``prerequisites`` (run ids, a tuple); and notes."""
    runs = exp.runs
    cols = [
        "run_id",
        "stage",
        "method",
        "ssl",
        "n_labeled",
        *COST_FIELDS,
        "device",
        "world_size",
        "recorded",
        "prerequisites",
    ]
    if runs.empty or "path" not in runs.columns:
        return pd.DataFrame(columns=cols), []
    rows, wall_only, unknown = [], 0, 0
    for r in runs.loc[runs["status"] == "finished"].to_dict("records"):
        rp = RunPaths(Path(str(r["path"])))
        summary = _read(rp.summary) or {}
        cost = summary.get("cost")
        rec: dict[str, Any] = {k: r.get(k) for k in ("run_id", "stage", "method", "n_labeled")}
        rec["ssl"] = r["ssl"] if isinstance(r.get("ssl"), str) else "none"  # none before the field existed
        if isinstance(cost, dict):
            rec.update({k: _number(cost.get(k)) for k in COST_FIELDS})
            rec["device"] = str(cost.get("device", ""))
            rec["world_size"] = cost.get("world_size", summary.get("world_size", 1))
            rec["recorded"] = True
        else:
            wall = _number(summary.get("wall_time_s"))
            if not math.isfinite(wall):
                unknown += 1
                continue
            world = _number(summary.get("world_size", 1))
            world = world if math.isfinite(world) and world >= 1 else 1.0
            rec.update({k: math.nan for k in COST_FIELDS})
            rec.update(wall_seconds=wall, device_seconds=wall * world)
            rec["device"] = str(summary.get("device", ""))
            rec["world_size"] = int(world)
            rec["recorded"] = False
            wall_only += 1
        rec["prerequisites"] = _prerequisite_ids(_read(rp.config) or {}, rp.config)
        rows.append(rec)
    notes = []
    if wall_only:
        notes.append(
            f"cost: {wall_only} finished run(s) predate the cost record: only their wall time is known "
            "(device-hours = wall × world size; CPU-hours and memory '–')"
        )
    if unknown:
        notes.append(f"cost: {unknown} finished run(s) recorded neither a cost nor a wall time: left out")
    return pd.DataFrame(rows, columns=cols), notes


def attribute(costs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``costs`` plus ``attributed_<f>`` for :data:`ATTRIBUTED` (the module's rule) and ``shares`` (how many
    runs share each of the run's prerequisites, ``regressor 1/3``); notes on prerequisites not found."""
    out = costs.copy()
    if out.empty:
        for f in ATTRIBUTED:
            out[f"attributed_{f}"] = pd.Series(dtype=np.float64)
        out["shares"] = pd.Series(dtype=object)
        return out, []
    own = out.set_index("run_id")
    dependants: dict[str, list[str]] = {}
    for rid, pre in zip(out["run_id"], out["prerequisites"], strict=True):
        for p in pre:
            dependants.setdefault(p, []).append(rid)
    missing = sorted({p for pre in out["prerequisites"] for p in pre if p not in own.index})
    memo: dict[str, np.ndarray] = {}

    def total(rid: str) -> np.ndarray:
        if rid not in memo:
            v = own.loc[rid, list(ATTRIBUTED)].to_numpy(dtype=np.float64)
            for p in own.loc[rid, "prerequisites"]:
                if p in own.index:
                    v = v + total(p) / len(dependants[p])
            memo[rid] = v
        return memo[rid]

    vals = np.stack([total(r) for r in out["run_id"]])
    for i, f in enumerate(ATTRIBUTED):
        out[f"attributed_{f}"] = vals[:, i]

    def name(p: str) -> str:
        return str(own.loc[p, "method"]) if own.loc[p, "stage"] == "segmenter" else "regressor"

    out["shares"] = [
        ", ".join(f"{name(p)} 1/{len(dependants[p])}" for p in pre if p in own.index)
        for pre in out["prerequisites"]
    ]
    notes = []
    if missing:
        notes.append(
            f"cost: {len(missing)} prerequisite run(s) are not among this experiment's finished runs with a "
            "cost; the runs that need them are charged their own cost only"
        )
    return out, notes


def sig3(x: float) -> str:
    """3 significant digits, without an exponent for large values (1000 MB, not 1e+03)."""
    if not math.isfinite(x):
        return "–"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def cost_table(costs: pd.DataFrame) -> pd.DataFrame:
    """Per stage/method (with its ``ssl`` term) and n: runs, mean own and attributed CPU-hours and
    device-hours per run, mean wall minutes, the largest peak RSS and device memory (MB), the devices (numbers
    to 3 significant digits)."""
    if costs.empty:
        return pd.DataFrame()
    arms = [arm(str(m), s) for m, s in zip(costs["method"], costs["ssl"], strict=True)]
    c = costs.assign(what=np.where(costs["stage"] == "regressor", "regressor", arms))
    order = {m: i for i, m in enumerate(["regressor", *METHODS])}
    rows = []
    for (what, n), g in c.groupby(["what", "n_labeled"], sort=False):
        method, _, term = str(what).partition("+")
        rows.append(
            {
                "_o": (order.get(method, 99), SSL_TERMS.index(term) if term in SSL_TERMS else 0, n),
                "stage / method": what,
                "n": int(n),
                "runs": len(g),
                "CPU-h (own)": sig3(g["cpu_seconds"].mean() / 3600),
                "CPU-h (attributed)": sig3(g["attributed_cpu_seconds"].mean() / 3600),
                "device-h (own)": sig3(g["device_seconds"].mean() / 3600),
                "device-h (attributed)": sig3(g["attributed_device_seconds"].mean() / 3600),
                "wall min": sig3(g["wall_seconds"].mean() / 60),
                "peak RSS MB": sig3(g["peak_rss_mb"].max()),
                "peak device MB": sig3(g["peak_device_mb"].max()),
                "devices": "; ".join(sorted(set(g["device"].astype(str)))),
                "shares": "; ".join(sorted({s for s in g["shares"] if s})) or "–",
            }
        )
    df = pd.DataFrame(rows).sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)
    return df


def totals(costs: pd.DataFrame) -> dict[str, float]:
    """The experiment's total CPU-hours, device-hours and GPU-hours (own costs: each run counted once)."""
    gpu = costs["device"].astype(str).str.contains("cuda", case=False)
    return {
        "runs": float(len(costs)),
        # NaN when no run recorded its CPU time (all predate the cost record), not a misleading 0
        "cpu_h": float(costs["cpu_seconds"].sum(min_count=1) / 3600),
        "device_h": float(costs["device_seconds"].sum() / 3600),
        "gpu_h": float(costs.loc[gpu, "device_seconds"].sum() / 3600),
    }
