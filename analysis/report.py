"""``suite report``: one self-contained report of an experiment, written atomically.

``RESULTS/<experiment>/report/`` (or ``--out``) receives ``report.md`` (figures linked from ``figures/``),
``report.html`` (the same text with every figure embedded as base64: one file to mail around), ``tables/``
(Table 1 as Markdown, CSV and LaTeX, and CSVs of every statistic) and ``figures/`` (PNG + SVG). The folder is
built in a temporary sibling and renamed into place, so a reader never sees half a report.

The report states the statistic's definition, the window, the seeds per condition, which runs were excluded
and why, and the provenance (data hash, git sha, versions, hardware, launcher, wall time and GPU-hours per
stage) from ``experiment.json``, ``env.json`` and ``summary.json``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.comparisons import MIN_SEEDS
from analysis.load import Experiment, load_experiment
from analysis.stats import Analysis, analyse
from analysis.tables import (
    Table1,
    df_markdown,
    per_volume_summary,
    sensitivity_table,
    table1,
    table1_markdown,
    write_tables,
)
from suite.atomic import suite_outputs
from suite.errors import InputError
from suite.paths import ExperimentPaths

log = logging.getLogger("analysis.report")


@dataclass
class ReportResult:
    out_dir: Path
    markdown: Path
    html: Path
    table1_text: str
    analysis: Analysis
    table1: Table1
    timings: dict[str, float]


# ---------------------------------------------------------------------------------------------- sections
def _definition(a: Analysis) -> str:
    rs = a.run_stats
    if a.window is not None:
        wtxt = f"W = {a.window} for every run (set with --window)"
    elif len(rs):
        ws = sorted({(int(w), s) for w, s in zip(rs["window"], rs["window_source"], strict=True)})
        wtxt = "W = " + ", ".join(f"{w} ({s})" for w, s in ws)
    else:
        wtxt = "W from each run config's stat_window"
    conf = int(round(a.confidence * 100))
    return "\n".join(
        [
            "## How the numbers are made",
            "",
            "- **Per run (the paper's Table 1 value).** For every epoch, the mean 3-D Dice over the "
            "validation volumes (metric `dice`, split `val`; one volume = one patient × one frame). The "
            "run's value is the mean of those per-epoch means over its last W epochs, and its ± is their "
            f"standard deviation (ddof 0): a spread over epochs, not over patients or seeds. {wtxt}.",
            "- **Short runs are never averaged over fewer epochs:** a run with fewer than W complete "
            "epochs is flagged and excluded. Runs in progress are excluded unless `--include-partial`; "
            "failed runs always are.",
            "- **Across seeds (the suite's addition).** A condition is (method, n, γ, λ and any other "
            "varied config field; γ, λ only for Proposed/Oracle). The unit is a run's (seed, split seed). "
            f"Per condition: mean, sd (ddof 1) and the {conf}% t-interval mean ± t·sd/√k over the k units; "
            f"fewer than {MIN_SEEDS} units is flagged; one unit has no interval.",
            "- **Paired comparisons.** Two methods at the same n (same γ, λ when both use them) paired by "
            f"unit; the {conf}% t-interval of the paired differences and Cohen's d_z = mean/sd of the "
            "differences.",
            f"- Dice is shown in % (logged values × {a.scale:g}).",
            "",
        ]
    )


def _provenance(exp: Experiment) -> str:
    lines = ["## Provenance", ""]
    info = exp.info
    if info:
        rows = []
        for k in sorted(info):
            v = info[k]
            if isinstance(v, dict):
                v = ", ".join(f"{kk}={vv}" for kk, vv in sorted(v.items()) if not isinstance(vv, dict | list))
            elif isinstance(v, list):
                v = ", ".join(map(str, v[:20])) + (" …" if len(v) > 20 else "")
            s = str(v)
            rows.append({"experiment.json": k, "value": s[:200] + ("…" if len(s) > 200 else "")})
        lines.append(df_markdown(pd.DataFrame(rows)))
    else:
        lines.append("_no experiment.json: the launcher did not record what was asked_\n")
    runs = exp.runs
    env_rows = []
    for col, what in (
        ("data_hash", "prepared data hash (config)"),
        ("env_git_sha", "git sha (env.json)"),
        ("env_host", "hosts"),
        ("env_gpu", "GPUs"),
        ("env_launcher", "launchers"),
        ("env_platform", "platforms"),
        ("env_versions", "versions"),
        ("env_cuda", "CUDA"),
        ("summary_device", "devices (summary.json)"),
        ("env_slurm_job_id", "SLURM job ids"),
    ):
        if col in runs.columns:
            vals = runs[col].dropna().astype(str)
            vals = vals[vals != ""]
            if len(vals):
                u = list(dict.fromkeys(vals))
                env_rows.append(
                    {
                        "field": what,
                        "distinct": len(u),
                        "values": "; ".join(u[:4]) + (" …" if len(u) > 4 else ""),
                    }
                )
    if env_rows:
        lines += ["Across the run directories:", "", df_markdown(pd.DataFrame(env_rows))]
    # wall time and GPU-hours per stage
    fin = runs.loc[runs["status"] == "finished"].copy()
    if len(fin) and "summary_wall_time_s" in fin.columns:
        fin["wall"] = pd.to_numeric(fin["summary_wall_time_s"], errors="coerce")
        ws = pd.to_numeric(fin.get("summary_world_size", fin.get("world_size", 1)), errors="coerce").fillna(1)
        fin["dev_h"] = fin["wall"] * ws / 3600.0
        dev = fin.get("summary_device", pd.Series("", index=fin.index)).astype(str).str.lower()
        fin["gpu_h"] = np.where(dev.str.contains("cuda|gpu"), fin["dev_h"], 0.0)
        fin["stage_method"] = np.where(
            fin["stage"] == "regressor", "regressor", "segmenter: " + fin["method"]
        )
        g = (
            fin.groupby("stage_method")
            .agg(
                runs=("run_id", "size"),
                wall_h=("wall", lambda x: x.sum() / 3600),
                mean_min=("wall", lambda x: x.mean() / 60),
                device_h=("dev_h", "sum"),
                gpu_h=("gpu_h", "sum"),
            )
            .reset_index()
        )
        g.columns = [
            "stage",
            "finished runs",
            "wall time (h, summed)",
            "mean per run (min)",
            "device-hours (wall × world size)",
            "GPU-hours",
        ]
        total = {
            "stage": "**total**",
            "finished runs": int(g["finished runs"].sum()),
            "wall time (h, summed)": float(g["wall time (h, summed)"].sum()),
            "mean per run (min)": math.nan,
            "device-hours (wall × world size)": float(g["device-hours (wall × world size)"].sum()),
            "GPU-hours": float(g["GPU-hours"].sum()),
        }
        g = pd.concat([g, pd.DataFrame([total])], ignore_index=True)
        lines += [
            "Compute per stage (from summary.json `wall_time_s`, `device`, `world_size`; runs in progress "
            "and failed runs not counted):",
            "",
            df_markdown(g, nd=2),
        ]
    return "\n".join(lines) + "\n"


def _runs_section(a: Analysis) -> str:
    exp = a.experiment
    runs = exp.runs
    counts = runs.groupby(["stage", "status"]).size().reset_index(name="runs")
    lines = ["## Runs", "", df_markdown(counts)]
    rs = a.run_stats
    if len(rs):
        exc = rs.loc[
            ~rs["included"],
            ["run_id", "method", "n_labeled", "unit", "status", "flag", "n_epochs", "window", "note"],
        ]
        if len(exc):
            lines += [f"**Excluded segmenter runs ({len(exc)})** and why:", "", df_markdown(exc, max_rows=60)]
        else:
            lines.append("No segmenter run was excluded.\n")
        noted = rs.loc[rs["included"] & (rs["note"] != ""), ["run_id", "flag", "note"]]
        if len(noted):
            lines += ["Included runs with a remark:", "", df_markdown(noted, max_rows=30)]
    lines.append("Every run's statistic, window and flag: `tables/runs.csv`.\n")
    return "\n".join(lines)


def _fmt_cond_table(a: Analysis) -> pd.DataFrame:
    c = a.conditions
    if c.empty:
        return c
    out = c[[col for col in a.cond if col != "stage"]].copy()
    out["seeds"] = c["n_units"]
    out["mean %"] = c["mean"] * a.scale
    out["epoch-std %"] = c["epoch_std_mean"] * a.scale
    out["seed sd %"] = c["sd"] * a.scale
    out["CI low"] = c["ci_low"] * a.scale
    out["CI high"] = c["ci_high"] * a.scale
    out["W"] = c["windows"]
    out["< 5 seeds"] = np.where(c["few_seeds"], "yes", "")
    return out


def _regressor_table(a: Analysis) -> pd.DataFrame:
    """The regressor summary in long form: one row per n x metric."""
    by = a.regressor_by_n
    rows = []
    names = {
        "size_abs_err": "abs. error (pixels)",
        "size_abs_err_pct": "abs. error (% of size)",
        "bounds_ok": "true size in bounds (fraction)",
    }
    for _, r in by.iterrows():
        for met, label in names.items():
            if f"{met}_mean" in by.columns:
                rows.append(
                    {
                        "n_labeled": int(r["n_labeled"]),
                        "seeds": int(r["n_units"]),
                        "metric": label,
                        "mean": r[f"{met}_mean"],
                        "sd": r[f"{met}_sd"],
                        "CI low": r[f"{met}_ci_low"],
                        "CI high": r[f"{met}_ci_high"],
                    }
                )
    return pd.DataFrame(rows)


def _constraint_final(a: Analysis) -> pd.DataFrame:
    c = a.constraint
    if c.empty:
        return c
    keys = [k for k in a.cond if k in c.columns and k != "stage"]
    last = c.loc[c.groupby(keys, dropna=False)["epoch"].transform("max") == c["epoch"]]
    return last[[*keys, "epoch", "mean", "sd", "n_units"]].rename(
        columns={"mean": "in_bounds (last epoch, mean)", "sd": "sd over seeds"}
    )


def render_markdown(
    a: Analysis, t1: Table1, cohort: str, figures: list, fig_notes: list[str], elapsed: float
) -> str:
    exp = a.experiment
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rs = a.run_stats
    n_inc = int(rs["included"].sum()) if len(rs) else 0
    seeds = sorted(set(a.conditions["n_units"])) if len(a.conditions) else []
    parts = [
        f"# Report: {exp.name}",
        "",
        f"Generated {now} by `suite report` from `{exp.root}` in {elapsed:.1f} s. Cohort: **{cohort}**"
        + (
            " (real ACDC: compared with the paper)"
            if cohort == "acdc"
            else " (not the real ACDC release: no comparison with the paper's numbers)"
        )
        + ".",
        "",
        f"{len(exp.runs)} run directories; {n_inc} segmenter runs enter the statistics, in "
        f"{len(a.conditions)} conditions with {', '.join(map(str, seeds)) or '0'} seed(s) each.",
        "",
    ]
    if a.warnings:
        parts += ["## Warnings", ""] + [f"- {w}" for w in a.warnings] + [""]
    parts.append(_definition(a))
    parts += [
        "## Table 1",
        "",
        "Cell: across-seed mean (mean epoch-std) [95% CI over seeds], Dice %"
        + ("; then the paper's value and the difference ours − paper." if t1.compare_paper else "."),
        "",
        table1_markdown(t1),
    ]
    parts += [f"- {n}" for n in t1.notes] + [""]
    parts.append("Files: `tables/table1.md`, `tables/table1.csv`, `tables/table1.tex`.\n")
    if len(a.paired):
        parts += ["## Paired comparisons (same n, same seeds)", ""]
        parts += [f"- {s}" for s in a.paired["statement"]] + [""]
    parts += ["## Figures", ""]
    for f in figures:
        parts += [
            f"![{f.caption}](figures/{f.png.name})",
            "",
            f"*{f.caption}* (SVG: `figures/{f.svg.name}`)",
            "",
        ]
    parts += [f"- {n}" for n in fig_notes] + [""]
    parts += ["## All conditions (across seeds)", "", df_markdown(_fmt_cond_table(a), nd=2, max_rows=200)]
    sens = sensitivity_table(a)
    if len(sens) and (sens["gamma"].nunique() > 1 or sens["lam"].nunique() > 1):
        parts += ["## Sensitivity to γ and λ", "", df_markdown(sens, nd=2, max_rows=200)]
    if len(a.bootstrap):
        b = a.bootstrap[[c for c in a.cond if c != "stage"] + ["n_patients", "n_boot"]].copy()
        b["mean %"] = a.bootstrap["boot_mean"] * a.scale
        b["boot low %"] = a.bootstrap["boot_low"] * a.scale
        b["boot high %"] = a.bootstrap["boot_high"] * a.scale
        parts += [
            "## Cluster bootstrap over validation patients",
            "",
            f"Validation patients resampled with replacement ({int(a.bootstrap['n_boot'].iloc[0])} draws, "
            "both frames of a patient together), the runs' statistics recomputed and averaged over seeds "
            f"per draw; {int(round(a.confidence * 100))}% percentile interval. It shows how much the "
            "condition mean depends on which validation patients were drawn (seeds fixed).",
            "",
            df_markdown(b, nd=2, max_rows=200),
        ]
    pvs = per_volume_summary(a)
    if len(pvs):
        parts += [
            "## Per-volume Dice",
            "",
            "Per-volume Dice (window mean of each volume, %) pooled over the seeds of a condition; "
            "`below_50` = share of volumes under 50%.",
            "",
            df_markdown(pvs, nd=2, max_rows=200),
        ]
    if len(a.regressor_by_n):
        parts += [
            "## Size regressor",
            "",
            "Last-epoch error on the regressor's validation patients (split `regval`): absolute error in "
            "pixels, in % of the true size, and the fraction of slices whose true size lies inside the "
            "bounds [(1−γ)R, (1+γ)R]; mean and 95% t-interval over seeds.",
            "",
            df_markdown(_regressor_table(a), nd=3),
        ]
    cf = _constraint_final(a)
    if len(cf):
        parts += [
            "## Constraint satisfaction",
            "",
            "Fraction of unlabeled training slices whose soft LV size is inside its bounds (`in_bounds`), "
            "at the last epoch; the curves are in the figure above.",
            "",
            df_markdown(cf, nd=3, max_rows=100),
        ]
    parts.append(_runs_section(a))
    parts.append(_provenance(exp))
    return "\n".join(parts).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------- HTML
_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;line-height:1.45;color:#222}table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}
code{background:#f4f4f4;padding:0 .2em}figure{margin:1em 0}figure img{max-width:100%}
figcaption{font-size:.9em;color:#444}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}"""


def _inline(s: str) -> str:
    s = html.escape(s, quote=False)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", s)
    return s


def markdown_to_html(md: str, base: Path, title: str) -> str:
    """Convert the report's Markdown subset (headings, lists, pipe tables, images, paragraphs) to one HTML
    page, embedding every ``![caption](path.png)`` image as base64."""
    out = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>"
    ]
    lines = md.splitlines()
    i = 0
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()

    while i < len(lines):
        ln = lines[i]
        if not ln.strip():
            flush()
            i += 1
            continue
        m = re.match(r"^(#{1,4}) (.*)$", ln)
        if m:
            flush()
            k = len(m.group(1))
            out.append(f"<h{k}>{_inline(m.group(2))}</h{k}>")
            i += 1
            continue
        m = re.match(r"^!\[(.*)\]\((.+)\)$", ln.strip())
        if m:
            flush()
            p = base / m.group(2)
            data = base64.b64encode(p.read_bytes()).decode() if p.exists() else ""
            out.append(
                f"<figure><img alt='{html.escape(m.group(1))}' src='data:image/png;base64,{data}'/></figure>"
            )
            i += 1
            continue
        if ln.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            cells = [
                [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", r.strip())[1:-1]] for r in rows
            ]
            head, body = cells[0], [c for c in cells[1:] if not all(set(x) <= {"-", ":"} for x in c)]
            out.append(
                "<table><thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in head) + "</tr></thead>"
            )
            out.append(
                "<tbody>"
                + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                + "</tbody></table>"
            )
            continue
        if ln.startswith("- "):
            flush()
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(lines[i][2:])
                i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in items) + "</ul>")
            continue
        para.append(ln)
        i += 1
    flush()
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------- entry point
def build_report(
    root: str | Path,
    *,
    window: int | None = None,
    include_partial: bool = False,
    bootstrap: int = 0,
    out: str | Path | None = None,
    cohort: str | None = None,
    figures: bool = True,
    confidence: float = 0.95,
) -> ReportResult:
    """Load, analyse and write the report of ``root`` (``RESULTS/<experiment>``); see the module docstring."""
    if window is not None and window < 1:
        raise InputError(f"--window {window}: must be an integer >= 1 (epochs averaged per run)")
    if bootstrap < 0:
        raise InputError(f"--bootstrap {bootstrap}: must be >= 0 (number of patient resamples; 0 = off)")
    out_dir = Path(out) if out else ExperimentPaths(Path(root)).report_dir
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    exp = load_experiment(root)
    timings["load_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    a = analyse(
        exp, window=window, include_partial=include_partial, bootstrap=bootstrap, confidence=confidence
    )
    coh = cohort or exp.cohort
    t1 = table1(a, coh)
    timings["stats_s"] = time.perf_counter() - t
    # the report's own files only: anything else in the folder (a .tex beside report.md, `--out .`) stays
    with suite_outputs(out_dir) as tmp:
        t = time.perf_counter()
        write_tables(a, t1, tmp / "tables")
        timings["tables_s"] = time.perf_counter() - t
        t = time.perf_counter()
        figs: list = []
        notes: list[str] = []
        if figures:
            from analysis.figures import make_figures

            figs, notes = make_figures(a, t1, tmp / "figures")
        else:
            notes.append("figures not drawn (--no-figures)")
        timings["figures_s"] = time.perf_counter() - t
        t = time.perf_counter()
        md = render_markdown(a, t1, coh, figs, notes, elapsed=time.perf_counter() - t0)
        (tmp / "report.md").write_text(md)
        (tmp / "report.html").write_text(markdown_to_html(md, tmp, f"Report: {exp.name}"))
        (tmp / "analysis.json").write_text(
            json.dumps(
                {
                    "experiment": str(exp.root),
                    "cohort": coh,
                    "window_override": window,
                    "include_partial": include_partial,
                    "bootstrap": bootstrap,
                    "confidence": confidence,
                    "runs": len(exp.runs),
                    "included_segmenter_runs": int(a.run_stats["included"].sum()) if len(a.run_stats) else 0,
                    "warnings": a.warnings,
                    "figures": [f.name for f in figs],
                    "figure_notes": notes,
                    "timings_s": timings,
                },
                indent=2,
                default=_json_default,
            )
            + "\n"
        )
        timings["report_s"] = time.perf_counter() - t
    log.info("report written to %s (%.1f s)", out_dir, time.perf_counter() - t0)
    return ReportResult(
        out_dir=out_dir,
        markdown=out_dir / "report.md",
        html=out_dir / "report.html",
        table1_text=table1_markdown(t1),
        analysis=a,
        table1=t1,
        timings=timings,
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer | np.floating):
        return o.item()
    return str(o)
