#!/bin/bash
# Train (and test) a config on a SLURM cluster: one task per GPU, one process group (docs/cluster.md).
#
#   sbatch --nodes 2 --ntasks-per-node 8 --gpus-per-node 8 tools/slurm_train.sh CONFIG.yaml [KEY VALUE ...]
#   sbatch --partition gpu --nodes 1 --ntasks-per-node 4 --gpus-per-node 4 --time 72:00:00 \
#       tools/slurm_train.sh configs/Kinetics/MTNet_M.yaml OUTPUT_DIR /checkpoint/$USER/mtnet_m
#
# The #SBATCH lines below are defaults; options on the sbatch command line override them. Every task runs
# tools/run_net.py, which reads SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID and the first host of
# SLURM_JOB_NODELIST (or MASTER_ADDR / MASTER_PORT if exported here) and joins one process group; rank 0 writes the
# logs and checkpoints in OUTPUT_DIR. TRAIN.AUTO_RESUME True (the default) continues a requeued or restarted job
# from its newest checkpoint; --requeue lets SLURM requeue it after preemption.
#SBATCH --job-name=mtnet
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=10
#SBATCH --time=72:00:00
#SBATCH --requeue
#SBATCH --output=slurm-%j.out

set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: sbatch [sbatch options] $0 CONFIG.yaml [KEY VALUE ...]" >&2
    exit 2
fi
CONFIG=$1
shift
# Relative to where sbatch was called (SLURM starts the script there).
cd "${SLURM_SUBMIT_DIR:-.}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# One task per GPU: each process drives one GPU (NUM_GPUS 1); DATA_LOADER.NUM_WORKERS follows the CPUs per task.
srun --kill-on-bad-exit=1 python tools/run_net.py --cfg "$CONFIG" --opts NUM_GPUS 1 \
    DATA_LOADER.NUM_WORKERS "$(( ${SLURM_CPUS_PER_TASK:-2} > 1 ? ${SLURM_CPUS_PER_TASK:-2} - 1 : 1 ))" "$@"
