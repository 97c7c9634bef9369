"""One training run of each stage (regressor, segmenter with fs / proposals / proposed / oracle).

``suite.stages.runner.execute(cfg, experiment_root, hooks=None) -> RunPaths`` is the single entry point of
every launcher (``suite run``, the Ray Train worker loop, SLURM jobs).

Import the sub-modules directly; this package imports nothing itself: an ``__init__`` that imported the
runner would run it (and the evaluation it calls after training) before any leaf module such as
``suite.stages.base``, so a module below the runner could not import a leaf without a cycle.
"""
