"""The Ray glue: the only part of the core that imports Ray. One module per concern; this package imports
nothing itself, so reading a constant (``cluster.RAY_ENV``) does not load Ray.

* :mod:`.cluster` — start a quiet local Ray or join a cluster, its environment and temp dirs.
* :mod:`.signals` — Ray's processes never act on SLURM's preemption signal.
* :mod:`.resources` — :class:`~.resources.TrialOptions`, what one trial and its workers ask Ray for.
* :mod:`.faults` — test-only crash injection after an epoch's checkpoint.
* :mod:`.train` — one run as a Ray Train ``TorchTrainer`` (DDP) and its checkpoint round trip.
* :mod:`.trainable` — the Tune function trainable: one trial runs one run directory.
* :mod:`.progress` — the suite's one-line progress and the Tune callback that feeds it.
* :mod:`.trials` — one Tune experiment over a list of run configs, one outcome per run.

A trial never waits while holding its resources: before running it probes the run's lock (and the locks of
its unfinished prerequisites) without blocking (:mod:`suite.run_lock`); when another launcher holds one, the
trial returns at once with ``busy=1`` and the driver waits outside Ray and requeues it.
"""
