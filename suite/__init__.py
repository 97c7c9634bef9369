"""Curriculum semi-supervised segmentation benchmark suite (core package).

The core (`suite`) imports neither Ray nor submitit; the Ray glue lives in `suite.ray_glue`, and
`search_spaces`, `slurm` and `analysis` build on the core.
"""

import os as _os

# OpenMP threads that spin while waiting cost whole seconds per step when several runs share a few cores
# (measured: a tiny ENet step 3.8 s -> 0.2 s on 2 busy cores). Passive waiting must be chosen before torch
# is imported; a value set by the user wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
