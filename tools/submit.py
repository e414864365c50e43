#!/usr/bin/env python
"""Submit a training/testing run to SLURM with submitit, as PySlowFast users do (``pip install submitit``).

    python tools/submit.py --cfg configs/Kinetics/MTNet_M.yaml --job-dir /checkpoint/$USER/mtnet_m \\
        --nodes 2 --gpus-per-node 8 --partition learnfair --timeout 4320 --opts TRAIN.BATCH_SIZE 64
    python tools/submit.py --cfg configs/Synthetic/MTNet_XS.yaml --job-dir /tmp/xs --cluster local --tasks 2 \\
        --opts NUM_GPUS 0        # the same job as local processes (a dry run of the cluster set-up)

The job runs ``tools/run_net.py``'s work in one task per GPU (``--tasks`` per node without GPUs). The tasks form one
process group from submitit's job environment (global rank, task count, first host); ``OUTPUT_DIR`` defaults to
``--job-dir``. When SLURM preempts or times out the job, submitit requeues it and ``TRAIN.AUTO_RESUME`` continues
from the newest checkpoint. The job's logs are in ``--job-dir`` (``%j_0_log.out`` ...). docs/cluster.md has more.
"""
import argparse
import os
import sys

try:
    import submitit
except ImportError:  # optional: only this tool needs it
    submitit = None


class Job:
    """The callable submitit pickles and runs in every task (and requeues on preemption)."""

    def __init__(self, cfg_file: str, opts, job_dir: str):
        self.cfg_file, self.opts, self.job_dir = cfg_file, list(opts), job_dir

    def _set_process_layout(self) -> None:
        env = submitit.JobEnvironment()
        tasks_per_node = max(1, env.num_tasks // max(1, env.num_nodes))
        job = str(env.job_id).split("_")[0]
        port = 15000 + int(job) % 20000 if job.isdigit() else 29500  # every task derives the same port
        os.environ.update(RANK=str(env.global_rank), WORLD_SIZE=str(env.num_tasks), LOCAL_RANK=str(env.local_rank),
                          LOCAL_WORLD_SIZE=str(tasks_per_node), MTNET_IGNORE_SLURM="1")
        os.environ.setdefault("MASTER_ADDR", env.hostnames[0] if env.hostnames else "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(port))

    def __call__(self):
        from mtnet_plugin.engine import build_run_cfg, run

        self._set_process_layout()
        opts = list(self.opts)
        if "OUTPUT_DIR" not in opts[::2]:
            opts += ["OUTPUT_DIR", self.job_dir]
        result = run(build_run_cfg(self.cfg_file, opts))
        return {k: v for k, v in (result or {}).items() if k in ("outputs", "test")}

    def checkpoint(self):
        """Requeue the same job after preemption or timeout (it resumes with TRAIN.AUTO_RESUME)."""
        return submitit.helpers.DelayedSubmission(Job(self.cfg_file, self.opts, self.job_dir))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", required=True, help="config YAML")
    p.add_argument("--job-dir", required=True, help="submitit's folder for the job's logs (and OUTPUT_DIR)")
    p.add_argument("--nodes", type=int, default=1, help="machines")
    p.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per machine: one task each (0: CPU tasks)")
    p.add_argument("--tasks", type=int, default=1, help="tasks per node when --gpus-per-node is 0")
    p.add_argument("--cpus-per-task", type=int, default=10, help="CPUs per task (data loading)")
    p.add_argument("--mem-gb", type=int, default=0, help="memory per node in GB (0: the partition's default)")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--timeout", type=int, default=4320, help="minutes before SLURM stops the job (then requeued)")
    p.add_argument("--name", default="mtnet", help="job name")
    p.add_argument("--comment", default=None, help="SLURM comment")
    p.add_argument("--cluster", default=None, choices=("slurm", "local", "debug"),
                   help="submitit cluster (default: SLURM when sbatch is available, else local processes)")
    p.add_argument("--wait", action="store_true", help="wait for the job and print its result")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE ... config overrides")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if submitit is None:
        print("submit.py needs submitit: pip install submitit (or use tools/slurm_train.sh with sbatch)",
              file=sys.stderr)
        return 2
    tasks = args.gpus_per_node if args.gpus_per_node > 0 else args.tasks
    executor = submitit.AutoExecutor(folder=args.job_dir, cluster=args.cluster, slurm_max_num_timeout=30)
    params = dict(name=args.name, nodes=args.nodes, tasks_per_node=tasks, cpus_per_task=args.cpus_per_task,
                  timeout_min=args.timeout)
    if args.gpus_per_node > 0:
        params["gpus_per_node"] = args.gpus_per_node
    if args.mem_gb:
        params["mem_gb"] = args.mem_gb
    if args.partition:
        params["slurm_partition"] = args.partition
    if args.comment:
        params["slurm_comment"] = args.comment
    executor.update_parameters(**params)
    opts = list(args.opts)
    if args.gpus_per_node > 0 and "NUM_GPUS" not in opts[::2]:
        opts += ["NUM_GPUS", "1"]  # one GPU per task
    job = executor.submit(Job(os.path.abspath(args.cfg), opts, os.path.abspath(args.job_dir)))
    print(f"submitted job {job.job_id}; logs in {args.job_dir}", flush=True)
    if args.wait:
        results = job.results()
        print(results[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
