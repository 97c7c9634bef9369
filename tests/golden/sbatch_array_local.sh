#!/bin/bash

# Parameters
#SBATCH --array=0-5%3
#SBATCH --cpus-per-task=2
#SBATCH --dependency=afterany:1234
#SBATCH --error=/results/exp/slurm/jobs/%A_%a/%A_%a_0_log.err
#SBATCH --job-name=suite-exp-array-1
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/results/exp/slurm/jobs/%A_%a/%A_%a_0_log.out
#SBATCH --signal=USR2@30
#SBATCH --time=60
#SBATCH --wckey=submitit

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output /results/exp/slurm/jobs/%A_%a/%A_%a_%t_log.out --error /results/exp/slurm/jobs/%A_%a/%A_%a_%t_log.err --cpus-per-task=2 /opt/venv/bin/python -u -m submitit.core._submit /results/exp/slurm/jobs/%j
