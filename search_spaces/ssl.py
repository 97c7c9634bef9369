"""``ssl``: the standard semi-supervised baselines on the same harness, alone and with the size constraint.

{FS, Proposed, Oracle} x {none, mean_teacher, entropy_min, cps} at n in {5, 10} over the given seeds: FS with
a term is the plain baseline (labeled CE + the term, as the SSL4MIS collection runs it), Proposed and Oracle
with a term add it to the size constraint, ``none`` is the paper's row. The regressor of a Proposed run does
not depend on the term, so the four Proposed runs of an (n, seed) share one. The report's "Semi-supervised
baselines" table sets each beside FS and Proposed (held-out test Dice and HD95, the paper statistic, paired
differences, cost per run); sources, defaults and departures: ``docs/ssl.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

from search_spaces import Axes, Space, segmenter_grid
from suite.config import SSL_TERMS

METHODS = ("fs", "proposed", "oracle")
LABELED = (5, 10)


def grid(seeds: Sequence[int], labeled: Sequence[int] | None) -> list[Axes]:
    return [row for ssl in SSL_TERMS for row in segmenter_grid(METHODS, labeled or LABELED, seeds, ssl=ssl)]


SPACE = Space(
    name="ssl",
    description="fs/proposed/oracle x ssl {none, mean_teacher, entropy_min, cps} x n {5,10} x seeds",
    grid=grid,
    default_preset="paper",
    default_seeds=(0, 1, 2),
    default_labeled=LABELED,
    swept=("stage", "method", "n_labeled", "seed", "ssl"),
)
