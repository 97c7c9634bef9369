"""``sensitivity``: how much do the bound tightness gamma and the penalty weight lambda matter?

gamma in {0, 0.05, 0.1, 0.2, 0.3} x lambda in {1e-3, 1e-2, 1e-1} for Proposed and Oracle (the two methods
with the size penalty) at n in {5, 10, 20}, over the given seeds. The regressor of each (n, split, seed) is
trained once and shared by all 15 (gamma, lambda) cells of the Proposed runs.

``--search random --num-samples K`` replaces the gamma x lambda grid by K draws of Ray Tune's samplers,
gamma ~ ``tune.uniform(0, 0.3)`` and lambda ~ ``tune.loguniform(1e-3, 1e-1)``, from ``--search-seed``
(recorded in experiment.json), so a relaunch asks for the same runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from search_spaces import Axes, RandomSearch, Space, segmenter_grid
from suite.config import SEG_METHODS_WITH_PENALTY

METHODS = SEG_METHODS_WITH_PENALTY
LABELED = (5, 10, 20)
GAMMAS = (0.0, 0.05, 0.1, 0.2, 0.3)
LAMBDAS = (1e-3, 1e-2, 1e-1)


def grid(seeds: Sequence[int], labeled: Sequence[int] | None) -> list[Axes]:
    rows: list[Axes] = []
    for row in segmenter_grid(METHODS, labeled or LABELED, seeds):
        rows.extend({**row, "gamma": g, "lam": lam} for g in GAMMAS for lam in LAMBDAS)
    return rows


SPACE = Space(
    name="sensitivity",
    description="gamma {0,.05,.1,.2,.3} x lambda {1e-3,1e-2,1e-1} for proposed/oracle at n {5,10,20}",
    grid=grid,
    default_preset="paper",
    default_seeds=(0,),
    default_labeled=LABELED,
    swept=("stage", "method", "n_labeled", "seed", "gamma", "lam"),
    random=RandomSearch({"gamma": ("uniform", 0.0, 0.3), "lam": ("loguniform", 1e-3, 1e-1)}),
)
