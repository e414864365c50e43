"""tools/slurm_train.sh and tools/submit.py as users run them, without a cluster: the sbatch template under a stand-in
``srun`` that starts two tasks the way SLURM does, and submit.py through submitit's local executor (two tasks)."""
import os
import stat
import subprocess
import sys

import pytest

from mtnet_plugin.engine.checkpoint import list_checkpoints
from mtnet_plugin.engine.logs import read_json_stats
from test_engine_trainer import write_class_videos, write_tiny_yaml
from test_faults_distributed import _slurm_port
from test_run_net import cpu_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What srun does for a one-node step of 2 tasks: start the command once per task with the task's variables.
FAKE_SRUN = """#!/bin/bash
echo "$@" > "{record}"
while [[ "$1" == --* ]]; do shift; done
for rank in 0 1; do
    SLURM_PROCID=$rank SLURM_LOCALID=$rank SLURM_NTASKS=2 SLURM_NTASKS_PER_NODE=2 SLURM_JOB_NUM_NODES=1 \\
        SLURM_JOB_NODELIST=127.0.0.1 "$@" > "{logs}/task$rank.log" 2>&1 &
done
status=0
for job in $(jobs -p); do wait $job || status=1; done
exit $status
"""


def _cfg(tmp_path, make_video):
    data_dir = write_class_videos(make_video, splits=("train",), per_class=2)
    out = str(tmp_path / "out")
    cfg = write_tiny_yaml(str(tmp_path / "c.yaml"), data_dir, out,
                          TRAIN={"BATCH_SIZE": 2, "EVAL_PERIOD": 100, "CHECKPOINT_PERIOD": 1},
                          SOLVER={"MAX_EPOCH": 1, "WARMUP_EPOCHS": 0.0}, TEST={"ENABLE": False})
    return cfg, out


def _one_run_of_two_processes(out):
    assert "rank 1 / 2, backend gloo" in open(os.path.join(out, "stdout_rank1.log")).read()
    assert '"iter": "2/2"' in open(os.path.join(out, "stdout.log")).read()  # 1 clip per task, the 4 clips shared
    stats = read_json_stats(os.path.join(out, "json_stats.log"))
    assert [s["epoch"] for s in stats if s["_type"] == "train_epoch"] == ["1/1"]
    assert [os.path.basename(p) for p in list_checkpoints(out)] == ["checkpoint_epoch_00001.pyth"]


@pytest.mark.slow  # two processes training a tiny model
def test_slurm_train_sh_runs_one_group_of_tasks(tmp_path, make_video):
    cfg, out = _cfg(tmp_path, make_video)
    bin_dir, logs = tmp_path / "bin", tmp_path / "logs"
    bin_dir.mkdir()
    logs.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(FAKE_SRUN.format(record=tmp_path / "srun_args", logs=logs))
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    env = cpu_env(PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_SUBMIT_DIR=ROOT, SLURM_CPUS_PER_TASK="1",
                  SLURM_JOB_ID=str(_slurm_port()))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run(["bash", os.path.join(ROOT, "tools", "slurm_train.sh"), cfg, "NUM_GPUS", "0"],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=240)
    logs_text = "\n".join((logs / f"task{r}.log").read_text()[-2000:] for r in (0, 1) if (logs / f"task{r}.log").exists())
    assert proc.returncode == 0, proc.stderr[-2000:] + logs_text
    args = (tmp_path / "srun_args").read_text().split()
    assert args[:3] == ["--kill-on-bad-exit=1", "python", "tools/run_net.py"] and args[-2:] == ["NUM_GPUS", "0"]
    _one_run_of_two_processes(out)


def test_slurm_train_sh_without_config_explains_usage():
    proc = subprocess.run(["bash", os.path.join(ROOT, "tools", "slurm_train.sh")], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage: sbatch" in proc.stderr


@pytest.mark.slow  # two processes training a tiny model
def test_submit_py_local_executor_runs_two_tasks_as_one_group(tmp_path, make_video):
    pytest.importorskip("submitit")
    cfg, out = _cfg(tmp_path, make_video)
    job_dir = tmp_path / "job"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "submit.py"), "--cfg", cfg, "--job-dir",
                           str(job_dir), "--cluster", "local", "--gpus-per-node", "0", "--tasks", "2",
                           "--cpus-per-task", "1", "--timeout", "10", "--wait", "--opts", "OUTPUT_DIR", out],
                          cwd=str(tmp_path), env=cpu_env(), capture_output=True, text=True, timeout=300)
    logs = "\n".join(p.read_text()[-2000:] for p in job_dir.glob("*log.err")) if job_dir.exists() else ""
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + logs
    assert "submitted job" in proc.stdout
    _one_run_of_two_processes(out)


def test_submit_py_without_submitit_says_how_to_install(tmp_path):
    blocker = tmp_path / "submitit.py"
    blocker.write_text("raise ImportError('not installed')\n")
    env = cpu_env(PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "submit.py"), "--cfg", "x.yaml", "--job-dir",
                           str(tmp_path / "j")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "pip install submitit" in proc.stderr
