"""SLURM launchers for the suite (submitit): one allocation running Ray, or job arrays without Ray.

``slurm.profiles``  named resource profiles (YAML) and the sbatch script they produce
``slurm.submit``    submission (``--mode ray``: one allocation; ``array``: one array per dependency level)
``slurm.jobs``      what runs in a job (one run; or Ray + the Tune driver), checkpoint/requeue on USR2
``slurm.ray_cluster`` a Ray head + workers over the hosts of one allocation (srun steps)
``slurm.ledger``    the record of submissions in RESULTS/<exp>/slurm/ (job ids, scripts, log paths)
``slurm.sbatch``    the sbatch script, rendered with submitit's own function (dry runs, the record)
``slurm.watch``     job state without an accounting database (squeue + the jobcomp log stand in for sacct)
``slurm.status``    progress of an experiment from its run directories and the queue
``slurm/testing/``  start/stop a real one-node SLURM on localhost (tests, workstations)
"""
