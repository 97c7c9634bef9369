"""``paper``: the grid of Table 1 (Kervadec et al., MICCAI 2019).

FS, Proposals, Proposed and Oracle at n in {5, 10, 20, 30, 40} labeled patients, each over the given training
seeds, plus FS with all 75 training patients (the paper's upper bound). gamma and lambda are not swept: they
come from the preset (0.1 and 1e-2 in every shipped preset, as in the paper). The regressors (one per n, split
and seed) and the FS models that the Proposals runs need are added by the driver and trained first, once each.
Default preset ``paper`` (use ``--preset smoke`` for a quick pass through the same grid).
"""

from __future__ import annotations

from collections.abc import Sequence

from search_spaces import Axes, Space, segmenter_grid
from suite.config import METHODS

LABELED = (5, 10, 20, 30, 40)
FULL = 75  # FS with every training patient labeled


def grid(seeds: Sequence[int], labeled: Sequence[int] | None) -> list[Axes]:
    if labeled is not None:  # a user-given n list replaces both the grid's n and the FS-75 row
        return segmenter_grid(METHODS, labeled, seeds)
    return segmenter_grid(METHODS, LABELED, seeds) + segmenter_grid(("fs",), (FULL,), seeds)


SPACE = Space(
    name="paper",
    description="Table 1: fs/proposals/proposed/oracle x n in {5,10,20,30,40} x seeds, + FS n=75",
    grid=grid,
    default_preset="paper",
    default_seeds=(0, 1, 2),
    default_labeled=LABELED,
    swept=("stage", "method", "n_labeled", "seed"),
)
