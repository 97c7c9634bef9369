"""Curriculum semi-supervised segmentation benchmark suite (core package).

The core (`suite`) imports neither Ray nor submitit; the Ray glue lives in
`suite.distributed`, and `search_spaces`, `slurm` and `analysis` build on the core.
"""

__version__ = "0.1.0"
