"""``repro``: the paper's schedule on a CPU-sized cohort over many seeds, and what decides whether the size
constraint works.

With the ``repro`` preset (the authors' code but for 64x64 crops of a phantom and a small regressor; its
description names every departure) each seed trains, at n = 5:

- **the paper's three methods**: FS, Proposed and the Oracle with the authors' start (λ from the first
  step);
- **three start-up variants** of Proposed and the Oracle that the semi-supervised literature offers against
  an early collapse: an FS warm start (``penalty_warmup``: the first epochs without the unlabeled term), λ
  ramped up from ~0 with the sigmoid ramp (``lam_rampup``, ``suite.ramps``), and the log-barrier extension
  instead of the quadratic penalty (``scheme=logbarrier``, t = 1 growing 1.1x an epoch).

FS does not depend on the variant and the regressor of Proposed is shared, so a seed is 10 runs. Each
Oracle or Proposed run is 100 epochs of ~650 batch-1 steps: about an hour of one core on a 2-core CPU
(BENCHMARKS.md, evidence), so the whole grid over 5 seeds is a study over several sessions; it resumes where
it stopped (``suite tune`` skips finished runs and continues partial ones). ``--methods fs oracle`` runs
the Oracle's half first (does any variant escape the collapse in every seed?), ``--methods proposed``
the rest. The report shows each seed, the share of seeds in which each method ends above its FS and the
paired intervals; ``train/soft_size``, ``above_bounds``, ``below_bounds`` and ``soft_size_empty`` show the
dynamics against the bounds.
"""

from __future__ import annotations

from collections.abc import Sequence

from search_spaces import Axes, Space, segmenter_grid
from suite.config import SEG_METHODS_WITH_PENALTY

LABELED = (5,)
# the authors' start, then one change each; the values and why: search_spaces/repro.py's module docstring
# and BENCHMARKS.md. 10 warm-up epochs: FS has left its all-background start by then on this data; a 40-epoch
# ramp reaches the full λ before the last-50-epoch window opens (Laine & Aila ramp over the first 80 of 300
# epochs; SSL4MIS over its whole run)
VARIANTS: dict[str, Axes] = {
    "authors": {"penalty_warmup": 0, "lam_rampup": 0, "scheme": "penalty"},
    "warm start": {"penalty_warmup": 10, "lam_rampup": 0, "scheme": "penalty"},
    "lambda ramp": {"penalty_warmup": 0, "lam_rampup": 40, "scheme": "penalty"},
    "log-barrier": {"penalty_warmup": 0, "lam_rampup": 0, "scheme": "logbarrier"},
}


def grid(seeds: Sequence[int], labeled: Sequence[int] | None) -> list[Axes]:
    n = labeled or LABELED
    rows = segmenter_grid(("fs",), n, seeds)
    for axes in VARIANTS.values():
        rows += segmenter_grid(SEG_METHODS_WITH_PENALTY, n, seeds, **axes)
    return rows


SPACE = Space(
    name="repro",
    description="fs + proposed/oracle x {authors' start, warm start, lambda ramp, log-barrier}, n = 5, >= 5 "
    "seeds (repro preset: the authors' code at 64x64; hours per seed on 2 cores)",
    grid=grid,
    default_preset="repro",
    default_seeds=(0, 1, 2, 3, 4),
    default_labeled=LABELED,
    swept=("stage", "method", "n_labeled", "seed", "penalty_warmup", "lam_rampup", "scheme"),
)
