"""Clinical indices derived from cavity volumes: the ejection fraction (the one home of its formula).

Torch-free, so that ``analysis`` (which must not load torch) derives the EF error from ``test_metrics.csv``
with the same function the core uses; :mod:`suite.metrics` re-exports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def ejection_fraction(edv_ml: Any, esv_ml: Any) -> Any:
    """EF in % = 100·(EDV − ESV)/EDV from the end-diastolic and end-systolic volumes (ml); NaN where
    EDV ≤ 0 (or either volume is NaN). Scalars give a float, arrays an array."""
    ed = np.asarray(edv_ml, dtype=np.float64)
    es = np.asarray(esv_ml, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ef = np.where(ed > 0, 100.0 * (ed - es) / np.where(ed > 0, ed, 1.0), np.nan)
    return float(ef) if ef.ndim == 0 else ef
