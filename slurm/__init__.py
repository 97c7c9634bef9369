"""SLURM launchers for the suite (submitit): one allocation running Ray, or job arrays without Ray.

``slurm.profiles``  named resource profiles (YAML) and the sbatch script they produce
``slurm.launch``    submission (``--mode ray|array``), checkpoint/requeue, the job ledger (<exp>/slurm/)
``slurm.watch``     job state without an accounting database (squeue + the jobcomp log stand in for sacct)
``slurm.status``    progress of an experiment from its run directories and the queue
``slurm/testing/``  start/stop a real one-node SLURM on localhost (tests, workstations)
"""
