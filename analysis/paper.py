"""The published Table 1 of Kervadec et al., MICCAI 2019 ("Curriculum semi-supervised segmentation").

Mean Dice (%) of the LV on the 20 validation patients (40 volumes) over the last 50 of 100 epochs, and in
parentheses the standard deviation of those 50 per-epoch values; one run per cell, γ = 0.1, λ = 1e-2.
"""

from __future__ import annotations

import pandas as pd

PAPER_GAMMA = 0.1
PAPER_LAM = 1e-2
METHOD_LABELS = {"fs": "FS", "proposals": "Proposals", "proposed": "Proposed", "oracle": "Oracle"}

# n labeled patients -> method -> (mean %, std over the last 50 epochs %)
TABLE1: dict[int, dict[str, tuple[float, float]]] = {
    5: {"fs": (24.8, 4.9), "proposals": (8.1, 0.8), "proposed": (53.1, 3.0), "oracle": (74.3, 2.5)},
    10: {"fs": (44.4, 8.3), "proposals": (43.9, 2.9), "proposed": (58.5, 3.6), "oracle": (75.7, 3.9)},
    20: {"fs": (71.7, 3.2), "proposals": (49.1, 5.0), "proposed": (72.7, 1.6), "oracle": (79.0, 2.5)},
    30: {"fs": (73.1, 1.7), "proposals": (62.6, 4.4), "proposed": (75.4, 1.6), "oracle": (77.0, 1.9)},
    40: {"fs": (75.8, 2.4), "proposals": (68.8, 5.6), "proposed": (76.3, 2.1), "oracle": (80.4, 2.1)},
    75: {"fs": (81.6, 1.9)},
}


def paper_value(method: str, n_labeled: int) -> tuple[float, float] | None:
    """(mean %, epoch std %) published for ``method`` at ``n_labeled``, or None (not in the paper)."""
    return TABLE1.get(int(n_labeled), {}).get(method)


def paper_frame() -> pd.DataFrame:
    """Table 1 in long form: ``n_labeled, method, paper_dice, paper_std``."""
    rows = [
        {"n_labeled": n, "method": m, "paper_dice": v[0], "paper_std": v[1]}
        for n, cells in TABLE1.items()
        for m, v in cells.items()
    ]
    return pd.DataFrame(rows)
