"""Table 1 reproduced (methods x n) as Markdown, CSV and LaTeX, and the report's other tables.

A Table 1 cell is ``mean (epoch-std) [CI]`` in Dice %: ``mean`` = the across-seed mean of the per-run paper
statistic, ``(epoch-std)`` = the mean over seeds of each run's ± (the paper's spread over the last W epochs),
``[CI]`` = the across-seed 95% t-interval (seed/split draw as unit; none for a single seed).
When the cohort is the real ACDC release the published value and the difference (ours − paper) are shown
beside each cell; on the phantom they are not (the numbers are not comparable).

γ, λ: when the experiment varied them, Table 1 shows the paper's γ = 0.1, λ = 1e-2 if present, else the
(γ, λ) with the most runs, and says which; the sensitivity table has all of them.
Other varied config fields (e.g. image_size) give one Table 1 per setting.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.paper import METHOD_LABELS, PAPER_GAMMA, PAPER_LAM, TABLE1, paper_value
from analysis.run_stats import BASE_CONDITION, setting_text
from analysis.stats import Analysis
from suite.atomic import write_text_atomic
from suite.config import METHODS, SEG_METHODS_WITH_PENALTY


@dataclass
class Table1:
    """Table 1 in long form (one row per setting x n x method) and how it was made."""

    long: pd.DataFrame
    gamma: float | None
    lam: float | None
    compare_paper: bool
    extra: list[str]
    notes: list[str] = field(default_factory=list)
    # paper-scale n -> labeled patients it meant in this cohort (from the runs' summary.json), where known
    effective: dict[int, int] = field(default_factory=dict)


def _fmt(x: Any, nd: int = 1, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}"


def table1(a: Analysis, cohort: str) -> Table1:
    """Build Table 1 from the across-seed conditions of the segmenter runs."""
    c = a.conditions
    extra = [col for col in a.cond if col not in BASE_CONDITION]
    notes: list[str] = []
    seg = c.loc[c["stage"] == "segmenter"] if len(c) else c
    gamma = lam = None
    if len(seg):
        pen = seg.loc[seg["method"].isin(SEG_METHODS_WITH_PENALTY)]
        if len(pen):
            combos = (
                pen.groupby(["gamma", "lam"])["n_units"].sum().sort_values(ascending=False, kind="stable")
            )
            if any(np.isclose(g, PAPER_GAMMA) and np.isclose(lv, PAPER_LAM) for g, lv in combos.index):
                gamma, lam = PAPER_GAMMA, PAPER_LAM
            else:
                gamma, lam = (float(v) for v in combos.index[0])
            if len(combos) > 1:
                notes.append(
                    f"the experiment varied γ, λ ({len(combos)} combinations); Table 1 shows γ={gamma:g}, "
                    f"λ={lam:g} for proposed/oracle (all combinations: sensitivity table)"
                )
            seg = seg.loc[
                ~seg["method"].isin(SEG_METHODS_WITH_PENALTY)
                | (np.isclose(seg["gamma"].astype(float), gamma) & np.isclose(seg["lam"].astype(float), lam))
            ]
    compare = cohort == "acdc"
    rows = []
    for _, r in seg.iterrows():
        pv = paper_value(r["method"], r["n_labeled"]) if compare else None
        dice = r["mean"] * a.scale
        rec = {
            **{col: r[col] for col in extra},
            "n_labeled": int(r["n_labeled"]),
            "method": r["method"],
            "gamma": r["gamma"],
            "lam": r["lam"],
            "n_seeds": int(r["n_units"]),
            "dice": dice,
            "epoch_std": r["epoch_std_mean"] * a.scale,
            "seed_sd": r["sd"] * a.scale,
            "ci_low": r["ci_low"] * a.scale,
            "ci_high": r["ci_high"] * a.scale,
            "paper_dice": pv[0] if pv else math.nan,
            "paper_std": pv[1] if pv else math.nan,
            "diff_vs_paper": dice - pv[0] if pv else math.nan,
            "few_seeds": bool(r["few_seeds"]),
            "windows": r["windows"],
        }
        rows.append(rec)
    long = pd.DataFrame(
        rows,
        columns=[
            *extra,
            "n_labeled",
            "method",
            "gamma",
            "lam",
            "n_seeds",
            "dice",
            "epoch_std",
            "seed_sd",
            "ci_low",
            "ci_high",
            "paper_dice",
            "paper_std",
            "diff_vs_paper",
            "few_seeds",
            "windows",
        ],
    )
    if len(long):
        order = {m: i for i, m in enumerate(METHODS)}
        long = (
            long.assign(_m=long["method"].map(lambda m: order.get(m, 99)))
            .sort_values([*extra, "n_labeled", "_m"], kind="stable")
            .drop(columns="_m")
            .reset_index(drop=True)
        )
    runs = a.experiment.runs
    seg_runs = runs.loc[runs["stage"] == "segmenter"] if len(runs) else runs
    effective = _effective_counts(seg_runs)
    scaled = {n: k for n, k in effective.items() if n != k}
    if scaled:
        notes.append(
            "n is the paper's count of labeled patients; in this cohort it meant "
            + ", ".join(f"n={n} -> {k} patients" for n, k in sorted(scaled.items()))
            + " (the split scales n by cohort size / 100)"
        )
    if not compare:
        notes.append(
            f"cohort is {cohort!r}, not the real ACDC release: the paper's values are not shown beside "
            "these (they are not comparable)"
        )
    else:
        notes += _paper_caveats(seg_runs, long)
    return Table1(
        long=long, gamma=gamma, lam=lam, compare_paper=compare, extra=extra, notes=notes, effective=effective
    )


def _effective_counts(seg_runs: pd.DataFrame) -> dict[int, int]:
    col = "summary_n_labeled_effective"
    if col not in seg_runs.columns:
        return {}
    out = {}
    for n, g in seg_runs.groupby("n_labeled"):
        vals = set(pd.to_numeric(g[col], errors="coerce").dropna().astype(int))
        if len(vals) == 1:
            out[int(n)] = vals.pop()
    return out


def _paper_caveats(seg_runs: pd.DataFrame, long: pd.DataFrame) -> list[str]:
    """What keeps these numbers from standing beside the paper's: settings that differ from its scale, and
    the cells of its Table 1 that this experiment does not fill (with why)."""
    out = []
    settings = []
    if "preset" in seg_runs.columns:
        small = sorted(set(seg_runs["preset"].astype(str)) - {"paper", "code"})
        if small:
            settings.append(f"preset {', '.join(small)}")
    if "image_size" in seg_runs.columns:
        sizes = sorted(int(x) for x in set(pd.to_numeric(seg_runs["image_size"], errors="coerce").dropna()))
        if sizes and min(sizes) < 256:
            settings.append(f"{min(sizes)}x{min(sizes)} images (the paper: 256x256)")
    if "epochs" in seg_runs.columns:
        eps = pd.to_numeric(seg_runs["epochs"], errors="coerce").dropna()
        if len(eps) and eps.min() < 100:
            settings.append(f"{int(eps.min())} epochs (the paper: 100)")
    if settings:
        out.append(
            "CAVEAT: these runs use "
            + "; ".join(settings)
            + ": placed beside the paper's numbers for orientation only, not as a reproduction"
        )
    have = {(int(n), str(m)) for n, m in zip(long["n_labeled"], long["method"], strict=True)}
    ran = (
        {(int(n), str(m)) for n, m in zip(seg_runs["n_labeled"], seg_runs["method"], strict=True)}
        if len(seg_runs)
        else set()
    )
    missing = [(n, m) for n, cells in TABLE1.items() for m in cells if (n, m) not in have]
    if missing:
        why = {
            cell: "runs exist but none passed the checks (see the warnings)"
            if cell in ran
            else "not run in this experiment"
            for cell in missing
        }
        out.append(
            "paper cells without a value here: "
            + "; ".join(f"{METHOD_LABELS.get(m, m)} n={n} ({why[(n, m)]})" for n, m in missing)
        )
    return out


def _cell(r: pd.Series, with_paper: bool, show_k: bool) -> str:
    s = f"{_fmt(r['dice'])} ({_fmt(r['epoch_std'])})"
    s += f" [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if r["n_seeds"] >= 2 else " [1 seed]"
    if show_k:
        s += f" k={r['n_seeds']}"
    if with_paper and math.isfinite(r["paper_dice"]):
        s += f" · paper {_fmt(r['paper_dice'])} ({_fmt(r['paper_std'])})"
        s += f" · Δ {_fmt(r['diff_vs_paper'], signed=True)}"
    return s


def _methods(long: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(long["method"]))
    return [m for m in METHODS if m in present] + [m for m in present if m not in METHODS]


def _settings(t: Table1) -> list[tuple[str, pd.DataFrame]]:
    if not t.extra:
        return [("", t.long)]
    # rows blank in every varied field (a method those fields do not apply to: FS beside a varied
    # constraint scheme) belong in every setting, not in a setting of their own
    blank = t.long[t.extra].isna().all(axis=1)
    shared, own = t.long.loc[blank], t.long.loc[~blank]
    if own.empty:
        return [("", t.long)]
    out = []
    for key, g in own.groupby(t.extra, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rows = pd.concat([shared, g]) if len(shared) else g
        out.append((", ".join(f"{c}={setting_text(v)}" for c, v in zip(t.extra, key, strict=True)), rows))
    return out


def table1_markdown(t: Table1, *, with_paper: bool | None = None) -> str:
    """Markdown Table 1 (one per setting): rows n, columns methods."""
    with_paper = t.compare_paper if with_paper is None else with_paper
    if t.long.empty:
        return "_no finished segmenter run passed the checks: Table 1 is empty_\n"
    parts = []
    for label, g in _settings(t):
        methods = _methods(g)
        ks = set(g["n_seeds"])
        show_k = len(ks) > 1
        if label:
            parts.append(f"**{label}**\n")
        head = "| n labeled | " + " | ".join(METHOD_LABELS.get(m, m) for m in methods) + " |"
        parts.append(head)
        parts.append("|" + "---|" * (len(methods) + 1))
        for n, gn in g.groupby("n_labeled", sort=True):
            cells = []
            for m in methods:
                r = gn.loc[gn["method"] == m]
                cells.append(_cell(r.iloc[0], with_paper, show_k) if len(r) else "NA")
            k = t.effective.get(int(n), int(n))
            label = f"{n}" if k == int(n) else f"{n} ({k} patients)"
            parts.append(f"| {label} | " + " | ".join(cells) + " |")
        if not show_k:
            parts.append(f"\nEach cell: {ks.pop()} seed(s).")
        parts.append("")
    return "\n".join(parts) + "\n"


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        s = s.replace(a, b)
    return s


def table1_latex(t: Table1, *, caption: str | None = None) -> str:
    """LaTeX ``table`` + ``tabular`` (no package beyond the LaTeX kernel): ``mean (epoch-std)`` and the
    across-seed CI below it; with ACDC a ``paper`` row under each n."""
    lines = []
    for label, g in _settings(t) if len(t.long) else [("", t.long)]:
        methods = _methods(g) if len(g) else list(METHODS)
        lines += [r"\begin{table}[t]", r"\centering"]
        cap = caption or (
            "Dice (\\%) over the last W epochs: across-seed mean (mean epoch std) and 95\\% "
            "t-interval over seeds" + (f"; {_tex(label)}" if label else "")
        )
        lines.append(rf"\caption{{{cap}}}")
        lines.append(r"\begin{tabular}{l" + "c" * len(methods) + "}")
        lines.append(r"\hline")
        lines.append("$n$ & " + " & ".join(METHOD_LABELS.get(m, _tex(m)) for m in methods) + r" \\")
        lines.append(r"\hline")
        for n, gn in g.groupby("n_labeled", sort=True):
            main, ci, pap = [], [], []
            for m in methods:
                r = gn.loc[gn["method"] == m]
                if not len(r):
                    main.append("NA")
                    ci.append("")
                    pap.append("NA")
                    continue
                r = r.iloc[0]
                main.append(f"{_fmt(r['dice'])} ({_fmt(r['epoch_std'])})")
                ci.append(
                    f"\\scriptsize [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}], $k$={r['n_seeds']}"
                    if r["n_seeds"] >= 2
                    else "\\scriptsize 1 seed"
                )
                pap.append(
                    f"{_fmt(r['paper_dice'])} ({_fmt(r['paper_std'])})"
                    if math.isfinite(r["paper_dice"])
                    else "NA"
                )
            lines.append(f"{n} & " + " & ".join(main) + r" \\")
            lines.append(" & " + " & ".join(ci) + r" \\")
            if t.compare_paper:
                lines.append(r"\textit{paper} & " + " & ".join(pap) + r" \\")
        lines += [r"\hline", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- generic
def df_markdown(df: pd.DataFrame, *, nd: int = 3, max_rows: int | None = None) -> str:
    """A DataFrame as a Markdown table (no dependency on tabulate); floats with ``nd`` decimals."""
    if df is None or df.empty:
        return "_(none)_\n"
    d = df if max_rows is None else df.head(max_rows)

    def f(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "–" if not math.isfinite(v) else f"{v:.{nd}f}"
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(str, d.columns)) + " |", "|" + "---|" * len(d.columns)]
    lines += ["| " + " | ".join(f(v) for v in row) + " |" for row in d.itertuples(index=False)]
    if max_rows is not None and len(df) > max_rows:
        lines.append(f"\n_… {len(df) - max_rows} more rows in the CSV_")
    return "\n".join(lines) + "\n"


def sensitivity_table(a: Analysis) -> pd.DataFrame:
    """Across-seed mean Dice (%) of proposed/oracle per n, γ, λ and any other varied axis (e.g. ``update``:
    how λ behaves under each scheme), all combinations the experiment ran."""
    c = a.conditions
    if c.empty:
        return pd.DataFrame()
    pen = c.loc[c["method"].isin(SEG_METHODS_WITH_PENALTY)]
    extra = [k for k in a.cond if k not in BASE_CONDITION and k in pen.columns]
    out = pen[["method", "n_labeled", "gamma", "lam", *extra, "n_units"]].copy()
    out["dice"] = pen["mean"] * a.scale
    out["ci_low"] = pen["ci_low"] * a.scale
    out["ci_high"] = pen["ci_high"] * a.scale
    return out.reset_index(drop=True)


def per_volume_summary(a: Analysis) -> pd.DataFrame:
    """Distribution of per-volume window-mean Dice (%) per condition: quantiles and ``below_50``, the share of
    volumes under 50% Dice (failures the mean hides)."""
    pv = a.per_volume
    if pv.empty:
        return pd.DataFrame()
    # every condition column (a varied seg_arch too): pooling two settings' volumes would hide both
    keys = [c for c in a.cond if c != "stage" and c in a.run_stats.columns]
    m = pv.merge(a.run_stats[["run_id", *keys]], on="run_id")
    m["dice"] = m["dice"] * a.scale
    g = m.groupby(keys, dropna=False)["dice"]
    out = g.agg(
        n="size",
        mean="mean",
        p10=lambda x: x.quantile(0.1),
        median="median",
        p90=lambda x: x.quantile(0.9),
        min="min",
        below_50=lambda x: float((x < 50.0).mean()),
    ).reset_index()
    return out


def write_tables(a: Analysis, t: Table1, out_dir: Path) -> dict[str, Path]:
    """Write Table 1 (md, csv, tex) and the supporting CSVs into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "table1.md": table1_markdown(t),
        "table1.csv": t.long.to_csv(index=False, float_format="%.4f"),
        "table1.tex": table1_latex(t),
        "runs.csv": a.run_stats.to_csv(index=False, float_format="%.6f"),
        "conditions.csv": a.conditions.to_csv(index=False, float_format="%.6f"),
        "paired.csv": a.paired.to_csv(index=False, float_format="%.6f"),
    }
    if len(a.bootstrap):
        files["bootstrap.csv"] = a.bootstrap.to_csv(index=False, float_format="%.6f")
    if len(a.regressor_by_n):
        files["regressor_by_n.csv"] = a.regressor_by_n.to_csv(index=False, float_format="%.6f")
        files["regressor_runs.csv"] = a.regressor_runs.to_csv(index=False, float_format="%.6f")
    if len(a.per_volume):
        files["per_volume.csv"] = a.per_volume.to_csv(index=False, float_format="%.6f")
    if len(a.per_seed):
        files["per_seed.csv"] = a.per_seed.to_csv(index=False, float_format="%.4f")
    if len(a.dynamics_table):
        files["dynamics.csv"] = a.dynamics_table.to_csv(index=False, float_format="%.6g")
        files["dynamics_epochs.csv"] = a.dynamics.to_csv(index=False, float_format="%.6g")
    if len(a.escape):
        files["escape.csv"] = a.escape.to_csv(index=False, float_format="%.6g")
    sens = sensitivity_table(a)
    if len(sens):
        files["sensitivity.csv"] = sens.to_csv(index=False, float_format="%.4f")
    paths = {}
    for name, text in files.items():
        p = out_dir / name
        write_text_atomic(p, text)
        os.chmod(p, 0o644)
        paths[name] = p
    return paths
