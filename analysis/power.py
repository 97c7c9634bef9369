"""Power of the paired comparisons: the smallest difference the seeds at hand can detect, and the seeds a
difference of the observed size needs.

The test is the one the report's paired intervals invert: a two-sided paired t-test of the per-seed
differences A − B (same n, same seed and labeled set; :func:`analysis.comparisons.paired_comparisons` pairs
them). With k pairs, effect size d = δ/σ (δ the true mean difference, σ the sd of the differences) and
``t* = t_{1−α/2, k−1}``, the power is

    P(reject) = 1 − F(t*; k−1, d·√k) + F(−t*; k−1, d·√k)

with F the CDF of the noncentral t distribution (``scipy.special.nctdtr``; the lower tail is kept, so the
two-sided power is exact, not the usual one-tail approximation). ``scipy.special`` rather than statsmodels'
``TTestPower``: statsmodels is not a dependency, and ``scipy.stats`` costs seconds to import on a loaded
machine (the reason :func:`analysis.intervals.t_quantile` uses ``stdtrit``); the values equal G*Power's
(d = 0.5 → 34 pairs, power 0.808; ``tests/test_analysis_power.py``).

Per comparison: the **minimum detectable difference** at the current k (the δ with power ``power`` when σ is
the observed sd of the differences) and the **seeds needed** to detect a difference of the observed mean
with that power (the smallest k whose power reaches it, at the observed d_z). Both treat the observed sd as
σ; with few seeds it is itself uncertain, so they size an experiment, they do not prove one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.intervals import t_quantile
from analysis.run_stats import setting_text

# the columns of a power_table row that are not a condition axis
_NOT_AXES = {
    "method_a", "method_b", "n_labeled", "n_pairs", "mean_diff", "sd_diff", "ci_low", "ci_high", "d_z",
    "a_better", "statement", "alpha", "power", "mdd_dz", "mdd", "power_observed", "seeds_needed",
}  # fmt: skip
ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 10_000  # seeds needed beyond this read as "more than 10000" (a difference of about 0)
# the significance levels the report accepts: below 1e-6 a 2-seed t critical value passes 1e5 and the
# detectable effect stops being a number anyone can use; above 0.5 a "test" rejects more often than not
ALPHA_RANGE = (1e-6, 0.5)
# a detectable effect beyond 10^4 standard deviations reads as undefined (NaN); scipy's noncentral t also
# returns NaN for noncentralities near 10^5, so the bracket search stops well before
MAX_DZ = 1e4


def check_levels(alpha: float, power: float) -> None:
    """The one domain of ``--alpha`` and ``--power``: ``ALPHA_RANGE[0] <= alpha <= ALPHA_RANGE[1]`` and
    ``alpha < power < 1`` (at no difference the test rejects with probability alpha, so a power at or below it
    is met by every difference, 0 included); one line naming the option otherwise."""
    from suite.errors import InputError

    lo, hi = ALPHA_RANGE
    if not (isinstance(alpha, int | float) and lo <= alpha <= hi):
        raise InputError(f"--alpha {alpha}: must lie in [{lo:g}, {hi:g}] (the default is {ALPHA})")
    if not (isinstance(power, int | float) and alpha < power < 1.0):
        raise InputError(
            f"--power {power}: must lie strictly between --alpha ({alpha:g}) and 1 (the default is {POWER})"
        )


def paired_power(dz: float, pairs: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test at effect size ``dz`` = δ/σ with ``pairs`` pairs."""
    from scipy.special import nctdtr, ndtr

    if pairs < 2:
        return math.nan
    df = pairs - 1
    t_crit = float(t_quantile(1.0 - alpha / 2.0, df))
    nc = abs(dz) * math.sqrt(pairs)
    lower = float(nctdtr(df, nc, -t_crit))
    if math.isnan(lower):  # scipy 1.17: NaN where this far tail underflows; Φ(−nc) bounds it (< 1e-20)
        lower = float(ndtr(-nc))
    return float(1.0 - nctdtr(df, nc, t_crit)) + lower


def min_detectable_dz(pairs: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The effect size δ/σ that ``pairs`` pairs detect with probability ``power`` (NaN below 2 pairs)."""
    from scipy.optimize import brentq

    if pairs < 2:
        return math.nan
    hi = 1.0
    while not paired_power(hi, pairs, alpha) >= power:  # bracket: power rises with d (NaN: keep going)
        hi *= 2.0
        if hi > MAX_DZ:
            return math.nan
    return float(brentq(lambda d: paired_power(d, pairs, alpha) - power, 0.0, hi, xtol=1e-10))


def seeds_needed(dz: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """The smallest number of pairs (≥ 2) whose test detects effect size ``dz`` with ``power``; None when
    it exceeds :data:`MAX_SEEDS` or ``dz`` is 0 / undefined."""
    if not np.isfinite(dz):
        return 2 if np.isinf(dz) else None
    if dz == 0.0:
        return None
    lo, hi = 2, 2
    while paired_power(dz, hi, alpha) < power:  # power rises with k: double, then bisect
        lo, hi = hi, hi * 2
        if hi > MAX_SEEDS:
            return None
    while lo < hi:
        mid = (lo + hi) // 2
        if paired_power(dz, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return hi


def power_table(paired: pd.DataFrame, alpha: float = ALPHA, power: float = POWER) -> pd.DataFrame:
    """One row per paired comparison of ``paired`` (``paired_comparisons``' columns) with ``mdd`` (the
    minimum detectable difference, in the statistic's units), ``mdd_dz``, ``power_observed`` (the power
    at the observed mean difference) and ``seeds_needed`` (None: more than MAX_SEEDS or no difference)."""
    check_levels(alpha, power)
    rows: list[dict[str, Any]] = []
    for _, r in paired.iterrows():
        k = int(r["n_pairs"])
        sd, mean = float(r["sd_diff"]), float(r["mean_diff"])
        mdd_dz = min_detectable_dz(k, alpha, power)
        dz = float(r["d_z"])
        rows.append(
            {
                **r.to_dict(),
                "alpha": alpha,
                "power": power,
                "mdd_dz": mdd_dz,
                "mdd": mdd_dz * sd if np.isfinite(sd) else math.nan,
                "power_observed": paired_power(dz, k, alpha) if np.isfinite(dz) else math.nan,
                "seeds_needed": seeds_needed(dz, alpha, power) if k >= 2 and not np.isnan(mean) else None,
            }
        )
    cols = [*paired.columns, "alpha", "power", "mdd_dz", "mdd", "power_observed", "seeds_needed"]
    return pd.DataFrame(rows, columns=cols)


def power_statement(r: dict[str, Any], scale: float = 100.0) -> str:
    """One line per comparison, in points × ``scale`` (Dice %)."""
    a, b, n, k = r["method_a"], r["method_b"], r["n_labeled"], int(r["n_pairs"])
    # γ, λ and every other varied axis the paired row carries (two segmenters' lines must not read alike)
    axes = [c for c in r if c not in _NOT_AXES]
    setting = "".join(f", {c}={setting_text(r[c])}" for c in axes if r[c] is not None and pd.notna(r[c]))
    head = f"{a} − {b} at n={n}{setting}"
    if k < 2:
        return f"{head}: 1 paired seed, no sd of the differences: run at least 2 seeds to size the test."
    pts = "points" if scale == 100.0 else "units"
    level = f"two-sided α = {r['alpha']:g}, power {r['power']:g}"
    mdd = r["mdd"] * scale
    need = r["seeds_needed"]
    if need is None or (isinstance(need, float) and not np.isfinite(need)):
        need_s = (
            f"a difference of {r['mean_diff'] * scale:+.1f} {pts} is not detectable with ≤ {MAX_SEEDS} seeds"
        )
    else:
        need_s = (
            f"detecting the observed {r['mean_diff'] * scale:+.1f} {pts} (d_z = {r['d_z']:.2f}) needs "
            f"{int(need)} paired seeds"
        )
    return (
        f"{head}: with {k} paired seeds (sd of the differences {r['sd_diff'] * scale:.1f} {pts}) the "
        f"smallest detectable difference is {mdd:.1f} {pts} ({level}; power at the observed difference "
        f"{r['power_observed']:.2f}); {need_s}."
    )


def power_markdown(table: pd.DataFrame, scale: float = 100.0) -> str:
    """The report's section (empty string without paired comparisons)."""
    if table.empty:
        return ""
    r0 = table.iloc[0]
    lines = [
        "## Power of the paired comparisons",
        "",
        f"Paired t-test of the per-seed differences (two-sided α = {r0['alpha']:g}, power {r0['power']:g}; "
        "noncentral t), the observed sd of the differences taken as the true one: the smallest difference "
        "the seeds at hand detect, and the paired seeds a difference of the observed size needs "
        "(`suite report --alpha A --power P` changes the levels).",
        "",
    ]
    lines += [f"- {power_statement(r.to_dict(), scale)}" for _, r in table.iterrows()]
    return "\n".join(lines) + "\n"
