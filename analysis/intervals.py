"""Statistics primitives: the Student-t interval of a mean and Cohen's d_z of paired differences."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TInterval:
    """``mean ± t·sd/√n`` of ``n`` independent values (NaN bounds when n < 2)."""

    n: int
    mean: float
    sd: float
    half_width: float
    low: float
    high: float
    t_crit: float


def t_quantile(q: float | np.ndarray, df: float | np.ndarray) -> Any:
    """Student-t quantile, ``scipy.stats.t.ppf(q, df)``, via ``scipy.special.stdtrit`` (the same function,
    without importing ``scipy.stats``, which costs seconds on a loaded machine)."""
    from scipy.special import stdtrit

    out = stdtrit(df, q)
    return float(out) if np.ndim(out) == 0 else out


def t_interval(values: Any, confidence: float = 0.95) -> TInterval:
    """Student-t confidence interval of the mean of ``values`` (NaNs dropped), the values being the units."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return TInterval(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n < 2:
        return TInterval(n, mean, math.nan, math.nan, math.nan, math.nan, math.nan)
    sd = float(x.std(ddof=1))
    t = t_quantile(0.5 + confidence / 2.0, n - 1)
    half = t * sd / math.sqrt(n)
    return TInterval(n, mean, sd, half, mean - half, mean + half, t)


def cohens_dz(diffs: Any) -> float:
    """Cohen's d_z of paired differences: mean / sd (ddof 1); ±inf when all differences are equal and
    non-zero."""
    d = np.asarray(diffs, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size < 2:
        return math.nan
    sd = float(d.std(ddof=1))
    m = float(d.mean())
    # differences equal up to rounding (e.g. 0.1 - 0.05 computed per seed) have an sd of ~1e-17, not 0:
    # dividing by it printed d_z = 1.5e15; an sd below float64's resolution of the values is no spread
    if sd <= 64 * np.finfo(np.float64).eps * max(float(np.abs(d).max()), np.finfo(np.float64).tiny):
        return math.nan if m == 0.0 else math.copysign(math.inf, m)
    return m / sd
