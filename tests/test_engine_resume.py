"""Never lose work: SIGKILL a training subprocess, rerun, and it resumes from the last intact checkpoint."""
import os
import signal
import subprocess
import sys
import time

import torch

from mtnet_plugin.engine.checkpoint import checkpoint_path, list_checkpoints, read_checkpoint
from mtnet_plugin.engine.logs import read_json_stats
from test_engine_trainer import write_class_videos, write_tiny_yaml
from test_run_net import RUN_NET, cpu_env

EPOCHS = 6


def _command(cfg_path):
    return [sys.executable, RUN_NET, "--cfg", cfg_path, "--opts", "TRAIN.ENABLE", "True", "TEST.ENABLE", "False"]


def test_sigkill_then_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path, make_video):
    data_dir = write_class_videos(make_video, splits=("train",))
    common = dict(TRAIN={"BATCH_SIZE": 2, "EVAL_PERIOD": 100, "CHECKPOINT_PERIOD": 1},
                  SOLVER={"MAX_EPOCH": EPOCHS, "BASE_LR": 0.02, "OPTIMIZING_METHOD": "adamw"})
    killed_out, clean_out = str(tmp_path / "killed"), str(tmp_path / "clean")
    killed_cfg = write_tiny_yaml(str(tmp_path / "killed.yaml"), data_dir, killed_out, **common)
    clean_cfg = write_tiny_yaml(str(tmp_path / "clean.yaml"), data_dir, clean_out, **common)
    clean = subprocess.Popen(_command(clean_cfg), cwd=str(tmp_path), env=cpu_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    proc = subprocess.Popen(_command(killed_cfg), cwd=str(tmp_path), env=cpu_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = checkpoint_path(killed_out, 0)
    deadline = time.time() + 240
    while not os.path.exists(first) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    done = list_checkpoints(killed_out)
    assert 1 <= len(done) < EPOCHS
    last_good = done[-1]
    # a torn file newer than the last good one must be skipped, not resumed from
    torn = checkpoint_path(killed_out, read_checkpoint(last_good)["epoch"] + 1)
    with open(last_good, "rb") as src, open(torn, "wb") as dst:
        dst.write(src.read()[:1000])

    rerun = subprocess.run(_command(killed_cfg), cwd=str(tmp_path), env=cpu_env(), capture_output=True, text=True,
                           timeout=240)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"Resuming from {last_good}" in rerun.stdout
    assert "Skipping unreadable checkpoint" in rerun.stdout + rerun.stderr
    ckpts = list_checkpoints(killed_out)
    assert [read_checkpoint(p)["epoch"] for p in ckpts] == list(range(EPOCHS))  # the torn one was rewritten
    epochs = [s["epoch"] for s in read_json_stats(os.path.join(killed_out, "json_stats.log"))
              if s["_type"] == "train_epoch"]
    assert epochs[-1] == f"{EPOCHS}/{EPOCHS}" and sorted(set(epochs)) == sorted(f"{e}/{EPOCHS}" for e in range(1, 7))

    assert clean.wait(timeout=240) == 0
    resumed = read_checkpoint(ckpts[-1])["model_state"]
    uninterrupted = read_checkpoint(list_checkpoints(clean_out)[-1])["model_state"]
    for key, value in uninterrupted.items():  # model, optimizer and RNG state all came back
        torch.testing.assert_close(resumed[key], value, rtol=1e-4, atol=1e-5)
