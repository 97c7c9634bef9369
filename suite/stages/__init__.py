"""One training run of each stage (regressor, segmenter with fs / proposals / proposed / oracle).

``execute(cfg, experiment_root, hooks=None) -> RunPaths`` is the single entry point of every launcher
(``suite run``, the Ray Train worker loop, SLURM jobs): see :mod:`suite.stages.runner`.
"""

from __future__ import annotations

from suite.stages.runner import Hooks, execute

__all__ = ["execute", "Hooks"]
