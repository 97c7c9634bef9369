"""The report's evidence sections, rendered from tables :func:`analysis.stats.analyse` computed once:

* **Per seed and against FS** (:mod:`analysis.per_seed`): every seed, the mean with its interval, in how many
  paired seeds a condition ends above FS and the paired difference; wherever FS and another method ran at
  one n.
* **Training dynamics against the bounds** (:mod:`analysis.dynamics`): in words per condition, then the
  numbers at the chosen epochs and the two figures; only for runs that logged the soft size.
* **Leaving the collapse, per seed** (:mod:`analysis.escape`): per condition in words, then per run its
  epochs at a collapsed Dice, the epoch from which it stays out and the epoch it catches up with its FS.

Each returns no lines when its table is empty, so older experiments report exactly as before.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.dynamics import EPOCHS, dynamics_summaries
from analysis.escape import COLLAPSED, SPAN, escape_summaries
from analysis.per_seed import above_text, interval_text
from analysis.plotting import Figure, figure_lines
from analysis.run_stats import BASE_CONDITION, is_missing, setting_text
from analysis.stats import Analysis
from analysis.tables import df_markdown


def _setting_columns(df: pd.DataFrame, cond: list[str]) -> list[str]:
    """The condition columns a table shows: n, γ and λ where some row has them, the other varied fields."""
    base = [c for c in ("gamma", "lam") if c in df.columns and not df[c].map(is_missing).all()]
    return ["n_labeled", *base, *(c for c in cond if c not in BASE_CONDITION)]


def _setting(v: Any) -> str:
    return "–" if is_missing(v) else setting_text(v)


def per_seed_markdown(a: Analysis) -> list[str]:
    """The section "Per seed and against FS", one table per n (FS first); no lines without such an n."""
    t = a.per_seed
    if t.empty:
        return []
    conf = int(round(a.confidence * 100))
    cols = _setting_columns(t, a.cond)
    lines = [
        "## Per seed and against FS",
        "",
        f"Each seed's paper statistic (Dice %), the mean over seeds with its {conf}% t-interval, in how "
        "many seeds the condition ends above FS (paired by seed and split seed with FS at the same n; a tie "
        f"is not above) and the paired difference − FS in points with its {conf}% t-interval (the paired "
        "comparisons above, against FS).",
        "",
    ]
    for n, g in t.groupby("n_labeled", sort=True):
        rows = []
        for r in g.to_dict("records"):
            fs = r["method"] == "fs"
            rec = {"method": r["method"], **{("n" if c == "n_labeled" else c): _setting(r[c]) for c in cols}}
            rec["per seed (Dice %)"] = r["per_seed"]
            rec[f"mean [{conf}% CI]"] = interval_text(r["mean_pct"], r["ci_low_pct"], r["ci_high_pct"])
            rec["above FS"] = "(reference)" if fs else above_text(r).removeprefix("above FS in ")
            rec[f"− FS, points [{conf}% CI]"] = (
                "" if fs else interval_text(r["diff_pct"], r["diff_low_pct"], r["diff_high_pct"], signed=True)
            )
            rows.append(rec)
        lines += [f"**n = {int(n)}**", "", df_markdown(pd.DataFrame(rows))]
    lines.append("File: `tables/per_seed.csv`.\n")
    return lines


def _dynamics_display(t: pd.DataFrame, cond: list[str]) -> pd.DataFrame:
    """The chosen-epoch table as shown: sizes in px, fractions in %, the validation Dice in %."""
    keys = ["method", *_setting_columns(t, cond)]
    out = pd.DataFrame({("n" if c == "n_labeled" else c): t[c].map(_setting) for c in keys})
    out["epoch"] = t["epoch"].astype(int)
    out["seeds"] = t["seeds"].astype(int)
    px = "{:.1f}".format
    pct = "{:.0%}".format
    for col, name, f in (
        ("soft_size", "soft size px", px),
        ("target_size", "target px", px),
        ("above_bounds", "above", pct),
        ("below_bounds", "below", pct),
        ("empty_slices", "empty slices", pct),
        ("soft_size_empty", "soft size on empty px", px),
        ("lam_epoch", "λ of the epoch", "{:.3g}".format),
        ("in_bounds", "in bounds", pct),
        ("dice_pct", "val Dice %", px),
    ):
        if t[col].notna().any():  # λ only with a ramp, the empty slices only where there were some
            out[name] = [("–" if is_missing(v) else f(v)) for v in t[col]]
    return out


def dynamics_markdown(a: Analysis, figures: list[Figure]) -> list[str]:
    """The section "Training dynamics against the bounds" with ``figures`` (its own); no lines for runs
    that did not log the soft size."""
    t = a.dynamics_table
    if t.empty:
        return []
    lines = [
        "## Training dynamics against the bounds",
        "",
        "How the soft LV size of the unlabeled slices (the sum of the LV probabilities, px) sits against its "
        "target R and bounds [(1−γ)R, (1+γ)R] while training: the share of slices above the upper and below "
        "the lower bound, the empty slices (upper bound below one pixel: the Oracle's slices without LV) and "
        "their soft size, the share in bounds and the validation Dice. Means over the seeds (runs) that "
        f"logged each epoch; epochs {', '.join(map(str, EPOCHS))}, the first and the last, where logged (a "
        "warm-up epoch logs none).",
        "",
    ]
    for label, text in dynamics_summaries(t, a.dynamics, a.curves, a.cond, a.scale):
        lines.append(f"- **{label}**: {text}")
    lines += ["", df_markdown(_dynamics_display(t, a.cond), max_rows=200)]
    for f in figures:
        lines += figure_lines(f)
    lines.append("Files: `tables/dynamics.csv` (these epochs), `tables/dynamics_epochs.csv` (every epoch).\n")
    return lines


def escape_markdown(a: Analysis) -> list[str]:
    """The section "Leaving the collapse, per seed"; no lines without a run of a method other than FS."""
    t = a.escape
    if t.empty:
        return []
    lines = [
        "## Leaving the collapse, per seed",
        "",
        f"Per run of a method other than FS: its epochs with a validation Dice under {COLLAPSED:.0%} (the "
        "arg-max keeps almost no LV: the start-up collapse, or one after a warm start), the epoch from which "
        f"it stays at or above that to its end (– : it ends collapsed), and the first epoch at which its "
        f"{SPAN}-epoch mean Dice reaches its paired FS run's over the same epochs, counted from its first "
        "penalty epoch (– : never, or no FS of its seed). Whether it *ends* above FS is the paper "
        'statistic\'s ("Per seed and against FS").',
        "",
    ]
    for label, text in escape_summaries(t, a.cond):
        lines.append(f"- **{label}**: {text}")
    cols = _setting_columns(t, a.cond)
    shown = pd.DataFrame({("n" if c == "n_labeled" else c): t[c].map(_setting) for c in ["method", *cols]})
    shown["seed"] = t["seed"].astype(int)
    shown["epochs"] = t["n_epochs"].astype(int)
    shown[f"epochs < {COLLAPSED:.0%}"] = t["collapsed_epochs"].astype(int)
    shown["last of them"] = t["last_collapsed"].map(lambda v: "–" if is_missing(v) else str(int(v)))
    shown["out from"] = t["out_from"].map(lambda v: "–" if is_missing(v) else str(int(v)))
    shown["reaches FS at"] = [
        "no FS" if not p else ("–" if is_missing(v) else str(int(v)))
        for p, v in zip(t["fs_paired"], t["caught_up"], strict=True)
    ]
    lines += ["", df_markdown(shown, max_rows=200), "File: `tables/escape.csv`.\n"]
    return lines
