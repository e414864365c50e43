"""The recipe chain of docs/recipes.md, shortened: configs/Synthetic/recipes/HACS_MTNet_S.yaml from scratch,
then Kinetics_MTNet_S.yaml from its checkpoint, through tools/run_net.py as a user runs them.

Shortened only in data and schedule (8 generated clips per class of 32 px, 4 frames, 2 epochs, batch 2; a 30-view
test on one video per class); the model (MTNet_S), SGD, warm-up + cosine, zero-init, dropout, precise BN and the
transfer through TRAIN.CHECKPOINT_FILE_PATH are the recipe files' own. Step (b) has 6 classes
where (a) had 4: its classifier is re-initialised, the rest of the network comes from (a).
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from test_run_net import ROOT, RUN_NET, cpu_env

RECIPES = os.path.join(ROOT, "configs", "Synthetic", "recipes")


def _run(cfg_name, tmp_path, *opts):
    proc = subprocess.run(
        [sys.executable, RUN_NET, "--cfg", os.path.join(RECIPES, cfg_name), "--opts", *map(str, opts)],
        cwd=str(tmp_path), env=cpu_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _shorter(tmp_path, name, classes):
    return ["DATA.PATH_TO_DATA_DIR", tmp_path / f"data{classes}", "OUTPUT_DIR", tmp_path / name,
            "SYNTHETIC.NUM_TRAIN", 8, "SYNTHETIC.SIZE", 32,
            "SYNTHETIC.FRAMES", 24, "DATA.NUM_FRAMES", 4, "DATA.TRAIN_JITTER_SCALES", "[32, 36]",
            "DATA.TRAIN_CROP_SIZE", 32, "DATA.TEST_CROP_SIZE", 32, "SYNTHETIC.NUM_VAL", 1, "SYNTHETIC.NUM_TEST", 1, "TRAIN.BATCH_SIZE", 2,
            "TEST.BATCH_SIZE", 30, "SOLVER.MAX_EPOCH", 2, "SOLVER.WARMUP_EPOCHS", 1.0, "BN.NUM_BATCHES_PRECISE", 2,
            "TRAIN.EVAL_PERIOD", 2, "TRAIN.CHECKPOINT_PERIOD", 2]


@pytest.mark.slow
def test_hacs_to_kinetics_chain_transfers_all_but_the_classifier(tmp_path):
    log_a = _run("HACS_MTNet_S.yaml", tmp_path, *_shorter(tmp_path, "a", 4))
    ckpt_a = os.path.join(tmp_path, "a", "checkpoints", "checkpoint_epoch_00002.pyth")
    state_a = torch.load(ckpt_a, map_location="cpu", weights_only=True)["model_state"]
    assert state_a["head.projection.weight"].shape[0] == 4
    assert "Precise BN" in log_a and json.load(open(tmp_path / "a" / "test_results.json"))["num_views"] == 30

    log_b = _run("Kinetics_MTNet_S.yaml", tmp_path, *_shorter(tmp_path, "b", 6), "TRAIN.CHECKPOINT_FILE_PATH", ckpt_a)
    assert f"Loading checkpoint {ckpt_a}" in log_b
    # the first load is (a)'s checkpoint at the start of training; the last, (b)'s own for its 30-view test
    loaded = [line for line in log_b.splitlines() if "tensors of the model from the checkpoint" in line]
    share = float(loaded[0].split(": ")[-1].split("%")[0])
    assert 99.0 < share < 100.0  # all but the 4 -> 6 class classifier (2048 x 6 + 6 of about 7.8 M parameters)
    reinit = [line for line in log_b.splitlines() if "Re-initialised" in line]
    assert len(reinit) == 1 and "head.projection.weight" in reinit[0] and "head.projection.bias" in reinit[0]
    state_b = torch.load(os.path.join(tmp_path, "b", "checkpoints", "checkpoint_epoch_00002.pyth"),
                         map_location="cpu", weights_only=True)
    assert state_b["epoch"] == 1  # CHECKPOINT_EPOCH_RESET: (b) counts its own epochs from 0
    assert state_b["model_state"]["head.projection.weight"].shape[0] == 6
    assert json.load(open(tmp_path / "b" / "test_results.json"))["num_views"] == 30
