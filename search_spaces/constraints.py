"""``constraints``: which constraint, which scheme and which classes make the curriculum work?

{size, size+centroid} x {penalty, logbarrier} x {LV, all classes (RV, myocardium, LV)} for Proposed and
Oracle at one n (default 5) over the given seeds, plus the FS baseline. Every run trains the 4-channel head on
all classes (``classes=multi``, ``seg_out_channels=4``), so the rows differ only in what is constrained and
how, and FS is one run per seed (it depends on none of the three axes). The driver adds one regressor per
(classes, attributes) target set and seed, shared by both schemes: 4 per seed. With the ``smoke`` preset and
one seed the 21 runs fit 20 minutes on 2 cores (BENCHMARKS.md). The report's "Constraint family" table has
one row per constraint x scheme x classes and method, with the Dice of each class.
"""

from __future__ import annotations

from collections.abc import Sequence

from search_spaces import Axes, Space, segmenter_grid
from suite.config import SEG_METHODS_WITH_PENALTY

LABELED = (5,)
CONSTRAINTS = ("size", "size+centroid")
SCHEMES = ("penalty", "logbarrier")
CLASSES = ("lv", "all")
HEAD = {"classes": "multi", "seg_out_channels": 4}  # the same network and supervision in every row


def grid(seeds: Sequence[int], labeled: Sequence[int] | None) -> list[Axes]:
    n = labeled or LABELED
    rows = segmenter_grid(("fs",), n, seeds, **HEAD)
    for constrained in CLASSES:
        for constraint in CONSTRAINTS:
            for scheme in SCHEMES:
                axes = dict(HEAD, constrained=constrained, constraint=constraint, scheme=scheme)
                rows += segmenter_grid(SEG_METHODS_WITH_PENALTY, n, seeds, **axes)
    return rows


SPACE = Space(
    name="constraints",
    description="proposed/oracle x {size, size+centroid} x {penalty, logbarrier} x {LV, all} + FS, one n",
    grid=grid,
    default_preset="paper",
    default_seeds=(0,),
    default_labeled=LABELED,
    swept=(
        "stage",
        "method",
        "n_labeled",
        "seed",
        "constrained",
        "constraint",
        "scheme",
        "classes",
        "seg_out_channels",
    ),
)
