"""The report's text (``report.md``): each section rendered as Markdown from the analysis and Table 1.

Sections: the header (cohort, how many runs enter the statistics), warnings, how the numbers are made,
Table 1, paired comparisons, each seed against FS, figures, every condition across seeds, sensitivity to γ
and λ, the cluster bootstrap, per-volume Dice, the size regressor, constraint satisfaction, the training
dynamics against the bounds, the runs (which were excluded, and why) and the provenance.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np
import pandas as pd

from analysis.comparisons import MIN_SEEDS
from analysis.constraint_family import bounded_by_condition, constraint_family_section
from analysis.figures_dynamics import NAMES as DYNAMICS_FIGURES
from analysis.headline import headline_markdown
from analysis.load import Experiment
from analysis.plotting import figure_lines
from analysis.power import power_markdown
from analysis.report_evidence import dynamics_markdown, escape_markdown, per_seed_markdown
from analysis.report_test_cost import TestAndCost, test_and_cost_markdown
from analysis.stats import Analysis
from analysis.summaries import REG_METRICS, regressor_keys
from analysis.tables import Table1, df_markdown, per_volume_summary, sensitivity_table, table1_markdown
from suite.metrics import CLASS_LABELS


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
    lines.append("What the runs cost (CPU-, device- and GPU-hours, memory): the Cost section.\n")
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
    for col in ("gamma", "lam"):  # as given (1e-4 is not "0.00"); "–" where the method has none
        if col in out.columns:
            out[col] = [f"{v:g}" if pd.notna(v) else "–" for v in out[col]]
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
    """The regressor summary in long form: one row per condition (n, and the regressor fields that vary)
    x metric; the RV's and myocardium's errors (``constrained=all``) are named after the class."""
    by = a.regressor_by_n
    keys = regressor_keys(by)
    names = {
        "size_abs_err": "abs. error (pixels)",
        "size_abs_err_pct": "abs. error (% of size)",
        "bounds_ok": "true size in bounds (fraction)",
    }
    # beside the RV's and myocardium's rows the LV's say so too
    per_class = any(c.endswith(("_rv_mean", "_myo_mean")) for c in by.columns)
    rows = []
    for _, r in by.iterrows():
        for met in REG_METRICS:
            if f"{met}_mean" not in by.columns or not np.isfinite(r[f"{met}_mean"]):
                continue
            rows.append(
                {
                    **{k: (int(r[k]) if k == "n_labeled" else r[k]) for k in keys},
                    "seeds": int(r["n_units"]),
                    "metric": _regressor_metric_label(met, names, per_class),
                    "mean": r[f"{met}_mean"],
                    "sd": r[f"{met}_sd"],
                    "CI low": r[f"{met}_ci_low"],
                    "CI high": r[f"{met}_ci_high"],
                }
            )
    return pd.DataFrame(rows)


_CLASS_DISPLAY = {name.lower(): name for name in CLASS_LABELS}  # rv -> RV, myo -> Myo


def _regressor_metric_label(met: str, names: dict[str, str], per_class: bool) -> str:
    """``size_abs_err_rv`` → "abs. error (pixels), RV"; the LV's metrics get ", LV" beside other classes."""
    if met == "centroid_abs_err":
        return "centroid error (pixels, present classes)"
    if met.startswith("centroid_abs_err_"):
        return f"centroid error (pixels), {_CLASS_DISPLAY[met.rsplit('_', 1)[1]]}"
    if met in names:
        return names[met] + (", LV" if per_class else "")
    base, cls = met.rsplit("_", 1)
    return f"{names[base]}, {_CLASS_DISPLAY[cls]}"


def _constraint_final(a: Analysis) -> pd.DataFrame:
    c = a.constraint
    if c.empty:
        return c
    keys = [k for k in a.cond if k in c.columns and k != "stage"]
    last = c.loc[c.groupby(keys, dropna=False)["epoch"].transform("max") == c["epoch"]]
    last = last.merge(bounded_by_condition(a, keys), on=keys, how="left").fillna({"bounded": "–"})
    return last[[*keys, "bounded", "epoch", "mean", "sd", "n_units"]].rename(
        columns={"mean": "in_bounds (last epoch, mean)", "sd": "sd over seeds"}
    )


def render_markdown(
    a: Analysis,
    t1: Table1,
    cohort: str,
    figures: list,
    fig_notes: list[str],
    elapsed: float,
    test_and_cost: TestAndCost | None = None,
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
    parts.append(headline_markdown(a))
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
        parts.append(power_markdown(a.power, a.scale))
    parts += per_seed_markdown(a)
    parts += test_and_cost_markdown(test_and_cost)  # beside Table 1: test set, val/test gap, cost
    parts += ["## Figures", ""]
    own = [f for f in figures if f.name in DYNAMICS_FIGURES]  # shown in their section, beside its numbers
    for f in figures:
        if f not in own:
            parts += figure_lines(f)
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
    parts += constraint_family_section(a)
    cf = _constraint_final(a)
    if len(cf):
        parts += [
            "## Constraint satisfaction",
            "",
            "Fraction of unlabeled training slices that satisfy every constraint of their run (`in_bounds`), "
            "at the last epoch; `bounded` names them: the soft size of the constrained classes inside its "
            "bounds and, with `size+centroid`, their soft centroid within the tolerance, under the scheme "
            "named (the paper: LV size, quadratic penalty). The curves are in the figure above.",
            "",
            df_markdown(cf, nd=3, max_rows=100),
        ]
    parts += dynamics_markdown(a, own)
    parts += escape_markdown(a)
    parts.append(_runs_section(a))
    parts.append(_provenance(exp))
    return "\n".join(parts).rstrip() + "\n"
