"""``smoke``: the demo grid. All four methods at two n values over the given seeds (default one seed).

With the ``smoke`` preset (64x64, narrow networks, a few epochs) the whole grid (8 segmenter runs + 2
regressors) runs on the phantom in a few minutes on 2 CPU cores including Ray start-up; ``make demo`` runs it.
"""

from __future__ import annotations

from search_spaces import Space, methods_grid
from suite.config import METHODS

LABELED = (5, 10)


grid = methods_grid(METHODS, LABELED)


SPACE = Space(
    name="smoke",
    description="demo: fs/proposals/proposed/oracle x n {5,10} x one seed (smoke preset)",
    grid=grid,
    default_preset="smoke",
    default_seeds=(0,),
    default_labeled=LABELED,
    swept=("stage", "method", "n_labeled", "seed"),
)
