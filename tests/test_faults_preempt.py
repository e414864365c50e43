"""Fault injection: preemption. A real ``tools/run_net.py`` subprocess with a loader worker gets SIGTERM in the middle
of an epoch, sent to its whole process group as SLURM does before it kills a job; it must finish the iteration, write a
checkpoint holding its position inside the epoch and exit non-zero, and the rerun must continue from that position
with the same data order as an uninterrupted run. Each test is a row of docs/reliability.md.
"""
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

import fault_files
from mtnet_plugin.config import load_config
from mtnet_plugin.engine import trainer as trainer_module
from mtnet_plugin.engine import train
from mtnet_plugin.engine.checkpoint import checkpoint_path, list_checkpoints, read_checkpoint
from mtnet_plugin.engine.logs import read_json_stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS, VIDEOS = 3, 4  # batch 1: 4 iterations an epoch

# Records every iteration's (epoch, iteration, videos) in ORDER_FILE; at epoch 2, iteration 2 it says so in READY_FILE
# and waits (at most a minute) for the test to send SIGTERM before the iteration runs.
DRIVER = """
import json, os, sys, time
sys.argv = ["run_net.py", "--cfg", {cfg!r}]
sys.path.insert(0, {tools!r})
import torch
torch.set_num_threads(1)
from mtnet_plugin.engine import trainer as trainer_module
_step = trainer_module.Trainer.run_step
def run_step(self, batch, dt_data=0.0):
    with open({order!r}, "a") as f:
        f.write(json.dumps([self.epoch, self.iter, list(batch["path"])]) + "\\n")
    if (self.epoch, self.iter) == (1, 1):
        open({ready!r}, "w").close()
        deadline = time.time() + 60
        while self.stop_signal is None and time.time() < deadline:
            time.sleep(0.05)
    return _step(self, batch, dt_data)
trainer_module.Trainer.run_step = run_step
import run_net
run_net.main()
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("clips"))
    good = [fault_files.good_video(os.path.join(folder, f"good_{i}.mp4"), seed=i) for i in range(VIDEOS)]
    fault_files.write_list(os.path.join(folder, "train.csv"), [(p, i % 2) for i, p in enumerate(good)])
    return folder


def _cfg_file(tmp_path, data_dir, out):
    # one checkpoint at the end only: without the preemption checkpoint a killed run would lose everything; one loader
    # worker, which gets the signal too
    cfg = fault_files.tiny_cfg_dict(data_dir, out, SOLVER={"MAX_EPOCH": EPOCHS},
                                    TRAIN={"BATCH_SIZE": 1, "EVAL_PERIOD": 100, "CHECKPOINT_PERIOD": 100},
                                    DATA_LOADER={"NUM_WORKERS": 1, "PIN_MEMORY": False})
    return fault_files.write_yaml(str(tmp_path / f"{os.path.basename(out)}.yaml"), cfg)


def _frozen(path):
    cfg = load_config([path])
    cfg.freeze()
    return cfg


def _recorded_train(cfg_path, monkeypatch):
    """Train in this process; returns [(epoch, iteration, videos)] of every step taken."""
    steps = []
    step = trainer_module.Trainer.run_step

    def run_step(self, batch, dt_data=0.0):
        steps.append([self.epoch, self.iter, list(batch["path"])])
        return step(self, batch, dt_data)

    monkeypatch.setattr(trainer_module.Trainer, "run_step", run_step)
    train(_frozen(cfg_path))
    monkeypatch.setattr(trainer_module.Trainer, "run_step", step)
    return steps


def test_sigterm_mid_epoch_checkpoints_the_position_and_the_rerun_continues_there(data_dir, tmp_path, caplog,
                                                                                     monkeypatch):
    out = str(tmp_path / "out")
    cfg_path = _cfg_file(tmp_path, data_dir, out)
    order, ready = str(tmp_path / "order.jsonl"), str(tmp_path / "ready")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(cfg=cfg_path, tools=os.path.join(ROOT, "tools"), order=order, ready=ready))
    proc = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, cwd=str(tmp_path),  # its own process group, as a job's
                            env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    try:
        deadline = time.time() + 240
        while not os.path.exists(ready) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert os.path.exists(ready), "the run never reached epoch 2, iteration 2"
        os.killpg(proc.pid, signal.SIGTERM)  # the run and its loader worker
        seen, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, seen[-3000:]
    mid = checkpoint_path(out, 1, iters_done=2)
    last_line = seen.strip().splitlines()[-1]
    assert f"Stopped by SIGTERM after epoch 2, iteration 2/{VIDEOS}. Checkpoint {mid} holds that position" \
        in last_line, seen[-3000:]
    assert list_checkpoints(out, mid_epoch=True) == [mid]  # CHECKPOINT_PERIOD 100: no epoch checkpoint yet
    state = read_checkpoint(mid)
    assert (state["epoch"], state["iters_done"]) == (0, 2)  # epoch 1 complete, 2 iterations of epoch 2 done
    assert not os.path.exists(os.path.join(out, "run.lock"))  # the lock went with the run
    with open(order) as f:
        before = [json.loads(line) for line in f]
    assert [(e, i) for e, i, _ in before] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]

    with caplog.at_level(logging.INFO):
        after = _recorded_train(cfg_path, monkeypatch)
    assert f"Resuming from {mid}: epoch 2 stopped after 2 iterations" in caplog.text
    assert [(e, i) for e, i, _ in after] == [(1, 2), (1, 3)] + [(2, i) for i in range(VIDEOS)]

    # an uninterrupted run with the same seed draws the same batches in the same order
    reference = _recorded_train(_cfg_file(tmp_path, data_dir, str(tmp_path / "reference")), monkeypatch)
    assert before + after == reference
    assert [s["epoch"] for s in read_json_stats(os.path.join(out, "json_stats.log")) if s["_type"] == "train_epoch"] \
        == [f"{e}/{EPOCHS}" for e in range(1, EPOCHS + 1)]
    # the end of the run: its last epoch's checkpoint, and the mid-epoch one is gone
    assert list_checkpoints(out, mid_epoch=True) == [checkpoint_path(out, EPOCHS - 1)]
    assert read_checkpoint(checkpoint_path(out, EPOCHS - 1))["epoch"] == EPOCHS - 1
