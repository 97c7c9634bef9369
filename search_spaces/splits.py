"""``splits``: how much does *which* patients are labeled matter?

All four methods at n in {5, 10}, with the labeled patients drawn at random (``split_mode=random``) once per
split seed. Here ``--seeds`` are the *split* seeds (each one a different labeled draw from the 75 training
patients; validation patients stay the paper's); the training seed is fixed at 0 so that only the draw
changes. Combine with the ``paper`` space (paper split, several training seeds) to separate the two sources
of variance.
"""

from __future__ import annotations

from collections.abc import Sequence

from search_spaces import Axes, Space, segmenter_grid
from suite.config import METHODS

LABELED = (5, 10)
TRAINING_SEED = 0


def grid(seeds: Sequence[int], labeled: Sequence[int] | None) -> list[Axes]:
    rows: list[Axes] = []
    for split_seed in seeds:
        for row in segmenter_grid(METHODS, labeled or LABELED, [TRAINING_SEED]):
            rows.append({**row, "split_mode": "random", "split_seed": int(split_seed)})
    return rows


SPACE = Space(
    name="splits",
    description="fs/proposals/proposed/oracle x n {5,10} x random labeled draws (--seeds = split seeds)",
    grid=grid,
    default_preset="paper",
    default_seeds=(1, 2, 3, 4, 5),
    default_labeled=LABELED,
    swept=("stage", "method", "n_labeled", "seed", "split_mode", "split_seed"),
)
