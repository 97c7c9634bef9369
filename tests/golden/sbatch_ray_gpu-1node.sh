#!/bin/bash

# Parameters
#SBATCH --account=my-project
#SBATCH --constraint='a100|h100'
#SBATCH --cpus-per-task=32
#SBATCH --error=/results/exp/slurm/jobs/%j/%j_0_log.err
#SBATCH --exclusive
#SBATCH --gpus-per-node=4
#SBATCH --job-name=suite-exp-ray
#SBATCH --mem=256G
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/results/exp/slurm/jobs/%j/%j_0_log.out
#SBATCH --partition=gpu
#SBATCH --qos=normal
#SBATCH --signal=USR2@300
#SBATCH --time=1440
#SBATCH --wckey=submitit

# setup
source .venv/bin/activate

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output /results/exp/slurm/jobs/%j/%j_%t_log.out --error /results/exp/slurm/jobs/%j/%j_%t_log.err --cpus-per-task=32 /opt/venv/bin/python -u -m submitit.core._submit /results/exp/slurm/jobs/%j
