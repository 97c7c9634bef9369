"""``sensitivity``: how much do the bound tightness gamma and the penalty weight lambda matter?

gamma in {0, 0.05, 0.1, 0.2, 0.3} x lambda in {1e-3, 1e-2, 1e-1} x update in {alternating, joint} for
Proposed and Oracle (the two methods with the size penalty) at n in {5, 10, 20}, over the given seeds. The
update axis shows what lambda means under each scheme: with the authors' alternating Adam steps a pure-penalty
step moves the weights by about the learning rate whatever lambda is (lambda acts only through the second
moments the penalty steps share with the CE steps), with the paper's joint objective lambda weighs the penalty
against CE within each step. The regressor of each (n, split, seed) is trained once and shared by all 30
(gamma, lambda, update) cells of the Proposed runs.

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
UPDATES = ("alternating", "joint")


def grid(seeds: Sequence[int], labeled: Sequence[int] | None) -> list[Axes]:
    rows: list[Axes] = []
    for row in segmenter_grid(METHODS, labeled or LABELED, seeds):
        rows.extend(
            {**row, "gamma": g, "lam": lam, "update": u} for g in GAMMAS for lam in LAMBDAS for u in UPDATES
        )
    return rows


SPACE = Space(
    name="sensitivity",
    description="gamma {0,.05,.1,.2,.3} x lambda {1e-3,1e-2,1e-1} x update {alternating,joint} for "
    "proposed/oracle at n {5,10,20}",
    grid=grid,
    default_preset="paper",
    default_seeds=(0,),
    default_labeled=LABELED,
    swept=("stage", "method", "n_labeled", "seed", "gamma", "lam", "update"),
    random=RandomSearch({"gamma": ("uniform", 0.0, 0.3), "lam": ("loguniform", 1e-3, 1e-1)}),
)
