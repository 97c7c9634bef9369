"""The report's first screen: what the experiment is, in one sentence, and the ordering it found.

At the smallest n the experiment ran: each method's per-seed values, the across-seed mean with its t-interval,
the ordering of the means (and whether it is the paper's, Oracle >= Proposed > FS), and the paired
Proposed − FS interval; with several settings of a method at that n (variants, a sensitivity grid), each
setting's mean and in how many seeds it ends above FS. The sentence names the cohort, resolution, epochs,
segmenter, update scheme and every salient setting that departs from the ``paper`` preset (read from the
runs' configs, not from a hand-kept list), so a reader knows at once what the numbers are and are not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.paper import METHOD_LABELS
from analysis.per_seed import above_text, interval_text
from analysis.run_stats import condition_text, varying_columns
from analysis.stats import Analysis

# settings that decide what a Dice value means; any that differs from the paper preset is named
SALIENT = (
    "image_size",
    "seg_epochs",
    "seg_arch",
    "seg_out_channels",
    "seg_width",
    "lam",
    "gamma",
    "update",
    "penalty_warmup",
    "lam_rampup",
    "scheme",
    "unl_batch",
    "size_units",
    "reg_epochs",
    "reg_layers",
)
ORDER = ("oracle", "proposed", "proposals", "fs")


def _setting(runs: pd.DataFrame) -> dict[str, str]:
    """Each salient field's value(s) over the segmenter runs (several values joined by '/')."""
    out = {}
    for k in SALIENT:
        if k in runs.columns:
            vals = sorted({str(v) for v in runs[k].dropna()})
            if vals:
                out[k] = "/".join(vals)
    return out


def _departures(setting: dict[str, str]) -> list[str]:
    """``key value (paper value)`` for each salient setting that differs from the ``paper`` preset."""
    from suite.config import RunConfig, load_preset

    paper: dict[str, Any] = load_preset("paper")
    defaults = RunConfig().to_dict(include_derived=False)
    out = []
    for k, v in setting.items():
        ref = paper.get(k, defaults.get(k))
        ref_s = ",".join(map(str, ref)) if isinstance(ref, list | tuple) else str(ref)
        if v != ref_s:
            out.append(f"{k} {v} (paper {ref_s})")
    return out


def _crop_departure(runs: pd.DataFrame) -> list[str]:
    """The prepared data's crop (a ``suite prepare`` option, not a run field, so not in ``SALIENT``) when it
    keeps less than the whole view, read from the manifests the runs name; the paper used the full view."""
    crops = set()
    for data in runs["data"].dropna().astype(str).unique() if "data" in runs.columns else []:
        try:
            crop = json.loads((Path(data) / "manifest.json").read_text())["options"]["crop"]
            if crop is not None and float(crop) < 1.0:
                crops.add(f"{float(crop):g}")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # data moved or from an older format: nothing to say about it
    return (
        [f"crop to the central {'/'.join(sorted(crops))} of the view (paper: the full view)"] if crops else []
    )


def _several_settings(a: Analysis, n0: int) -> str:
    """Several settings of a method at ``n0``: no single ordering, so per setting its mean and, where FS
    ran, in how many seeds it ends above FS and the paired difference (the section "Per seed and against
    FS" has every seed)."""
    head = f"Several settings per method at n = {n0}: see Table 1"
    t = a.per_seed.loc[a.per_seed["n_labeled"] == n0] if len(a.per_seed) else a.per_seed
    if t.empty:
        return head + ".\n"
    keys = [c for c in a.cond if c not in ("stage", "method", "n_labeled")]
    shown = varying_columns(t, keys)
    lines = [head + " and, for every seed, *Per seed and against FS*. Dice %, mean [95% CI]:", ""]
    for r in t.to_dict("records"):
        mean = interval_text(r["mean_pct"], r["ci_low_pct"], r["ci_high_pct"])
        if r["method"] == "fs":
            lines.append(f"- {condition_text(r, shown)}: {mean} (the reference)")
            continue
        diff = interval_text(r["diff_pct"], r["diff_low_pct"], r["diff_high_pct"], signed=True)
        vs = f"; {above_text(r)}, paired difference {diff} points" if r["n_pairs"] else f"; {above_text(r)}"
        lines.append(f"- {condition_text(r, shown)}: {mean}{vs}")
    return "\n".join(lines) + "\n"


def _no_term(df: pd.DataFrame) -> pd.DataFrame:
    """The rows without a semi-supervised term where the experiment varied ``ssl`` (the paper's setting)."""
    return df.loc[df["ssl"].fillna("none") == "none"] if "ssl" in df.columns else df


def headline_markdown(a: Analysis) -> str:
    """The sentence, the smallest-n table and the ordering (empty when no segmenter run is included)."""
    rs = a.run_stats
    if rs.empty or not rs["included"].any():
        return ""
    inc = rs.loc[rs["included"] & (rs["stage"] == "segmenter")]
    if inc.empty:
        return ""
    exp = a.experiment
    runs = exp.runs.loc[exp.runs["run_id"].isin(inc["run_id"])]
    setting = _setting(runs)
    n0 = int(inc["n_labeled"].min())
    at_n = _no_term(inc.loc[inc["n_labeled"] == n0])
    src = exp.info.get("cohort") if isinstance(exp.info.get("cohort"), dict) else {}
    patients = f"{src['n_patients']}-patient " if src and "n_patients" in src else ""
    preset = exp.info.get("preset") or "/".join(sorted(set(runs.get("preset", pd.Series()).dropna())))
    deps = _departures(setting) + _crop_departure(runs)
    # experiments of `suite run` record no space (None): name the folder instead
    space = exp.info.get("space")
    what = f"the `{space}` experiment" if space else f"the experiment `{exp.name}`"
    sentence = (
        f"**What this is:** {what} on a {patients}"
        f"{a.experiment.cohort} cohort at {setting.get('image_size', '?')}×{setting.get('image_size', '?')}, "
        f"{setting.get('seg_epochs', '?')} segmenter epochs, segmenter `{setting.get('seg_arch', '?')}`, "
        f"update `{setting.get('update', 'alternating')}`, preset `{preset}`; departures from the paper: "
        + ("; ".join(deps) if deps else "none")
        + "."
    )
    rows, means = [], {}
    for m in ORDER:
        g = at_n.loc[at_n["method"] == m].sort_values("seed")
        if g.empty:
            continue
        keys = g[[c for c in a.cond if c not in ("stage", "method", "n_labeled", "ssl")]].drop_duplicates()
        if len(keys) > 1:  # several settings of one method at this n (a sensitivity grid): no single ordering
            return sentence + "\n\n" + _several_settings(a, n0)
        c = _no_term(
            a.conditions.loc[(a.conditions["method"] == m) & (a.conditions["n_labeled"] == n0)]
        ).iloc[0]
        means[m] = float(c["mean"]) * a.scale
        pts = ", ".join(f"s{int(s)} {v * a.scale:.1f}" for s, v in zip(g["seed"], g["stat"], strict=True))
        ci = (
            f"[{c['ci_low'] * a.scale:.1f}, {c['ci_high'] * a.scale:.1f}]"
            if np.isfinite(c["ci_low"])
            else "(one seed: no interval)"
        )
        rows.append(f"| {METHOD_LABELS.get(m, m)} | {pts} | {means[m]:.1f} {ci} | {int(c['n_units'])} |")
    ranked = sorted(means, key=lambda m: -means[m])
    ordering = " > ".join(f"{METHOD_LABELS.get(m, m)} {means[m]:.1f}" for m in ranked)
    paper_order = ""
    if {"oracle", "proposed", "fs"} <= set(means):
        holds = means["oracle"] >= means["proposed"] > means["fs"]
        paper_order = " The paper's ordering (Oracle ≥ Proposed > FS) " + (
            "**holds** on the means." if holds else "**does not hold** on the means."
        )
    pf = _no_term(
        a.paired.loc[
            (a.paired["method_a"] == "proposed")
            & (a.paired["method_b"] == "fs")
            & (a.paired["n_labeled"] == n0)
        ]
    )
    paired = f" {pf.iloc[0]['statement']}" if len(pf) == 1 else ""
    without = (
        " without a semi-supervised term (with one: Semi-supervised baselines)" if "ssl" in a.cond else ""
    )
    return "\n".join(
        [
            sentence,
            "",
            f"**Ordering found at n = {n0}**{without} (Dice %, mean over seeds): {ordering}."
            + paper_order
            + paired,
            "",
            "| method | per seed (Dice %) | mean [95% CI] | seeds |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )
