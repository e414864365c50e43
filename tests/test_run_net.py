"""tools/run_net.py end to end on CPU: the 30-view test of a tiny model on generated videos."""
import json
import os
import subprocess
import sys

import pytest
import torch

from mtnet_plugin import data as mt_data
from mtnet_plugin.engine import build_run_cfg, run
from mtnet_plugin.engine.checkpoint import CheckpointError, checkpoint_dir, save_checkpoint
from test_engine_trainer import write_class_videos, write_tiny_yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_NET = os.path.join(ROOT, "tools", "run_net.py")


def cpu_env(**extra):
    """One intra-op thread per process (2 shared cores)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def test_run_net_30_view_test_only(tmp_path, make_video):
    data_dir = write_class_videos(make_video, splits=("test",), per_class=1, num_frames=12, width=48)
    out = str(tmp_path / "out")
    cfg = write_tiny_yaml(str(tmp_path / "tiny.yaml"), data_dir, out,
                          TEST={"ENABLE": True, "NUM_ENSEMBLE_VIEWS": 10, "NUM_SPATIAL_CROPS": 3, "BATCH_SIZE": 15})
    proc = subprocess.run(
        [sys.executable, RUN_NET, "--cfg", cfg, "--opts", "TRAIN.ENABLE", "False", "TEST.ENABLE", "True",
         "LOG_PERIOD", "2"],
        cwd=str(tmp_path), env=cpu_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.load(open(os.path.join(out, "test_results.json")))
    assert res["num_views"] == 30 and res["num_videos"] == 2 and res["failed_videos"] == []
    assert [v["views"] for v in res["per_video"]] == [30, 30]
    assert all(len(v["topk_classes"]) == 2 for v in res["per_video"])  # top-k capped at 2 classes
    for v in res["per_video"]:  # a sum of 30 softmax vectors
        assert abs(sum(v["topk_scores"]) - 30.0) < 1e-3
    assert os.path.exists(os.path.join(out, "confusion_matrix.png"))
    assert os.path.exists(os.path.join(out, "config.yaml")) and os.path.exists(os.path.join(out, "stdout.log"))
    log = proc.stdout
    assert "RANDOMLY INITIALISED" in log  # no checkpoint anywhere
    assert '"split": "test_final"' in log and '"split": "test_iter"' in log
    assert os.path.join(out, "test_results.json") in log  # run_net says where the outputs are


@pytest.mark.parametrize("kind", ["missing", "other_model"])
def test_train_then_test_refuses_an_unusable_test_checkpoint_before_training(tmp_path, monkeypatch, kind):
    """TEST.CHECKPOINT_FILE_PATH is loaded after the training: an unusable one must fail before it (faults #7, #8)."""
    path = str(tmp_path / "missing.pyth")
    if kind == "other_model":
        other = torch.nn.Sequential(torch.nn.Conv3d(3, 5, 1))  # matches none of the X3D's tensors
        base = build_run_cfg(write_tiny_yaml(str(tmp_path / "o.yaml"), "", str(tmp_path / "o")))
        path = save_checkpoint(str(tmp_path / "other"), other, torch.optim.SGD(other.parameters(), lr=0.1), 0, base)

    def no_data(*args, **kwargs):
        raise AssertionError("data was read before the test checkpoint was checked")

    monkeypatch.setattr(mt_data, "build_dataset", no_data)
    monkeypatch.setattr(mt_data, "build_loader", no_data)
    out = str(tmp_path / "out")
    cfg = build_run_cfg(write_tiny_yaml(str(tmp_path / "tiny.yaml"), str(tmp_path / "data"), out),
                        ["TEST.ENABLE", "True", "TEST.CHECKPOINT_FILE_PATH", path])
    with pytest.raises((FileNotFoundError, CheckpointError)) as err:
        run(cfg)
    assert "TEST.CHECKPOINT_FILE_PATH" in str(err.value) and path in str(err.value)
    assert not os.path.exists(checkpoint_dir(out))  # nothing was trained


def test_synthetic_data_is_generated_before_launch_and_never_in_a_distributed_run(tmp_path, monkeypatch):
    from mtnet_plugin.config import get_cfg
    from mtnet_plugin.engine import prepare_synthetic_data

    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR, cfg.OUTPUT_DIR, cfg.MODEL.NUM_CLASSES = str(tmp_path / "syn"), str(tmp_path / "o"), 2
    cfg.SYNTHETIC.update(dict(ENABLE=True, NUM_CLASSES=2, NUM_TRAIN=1, NUM_VAL=1, NUM_TEST=1, FRAMES=8, SIZE=32))
    monkeypatch.setenv("WORLD_SIZE", "2")  # a torchrun rank: a missing dataset is an error naming the tool
    with pytest.raises(FileNotFoundError, match="tools/make_synthetic.py --cfg"):
        prepare_synthetic_data(cfg)
    assert not os.path.exists(cfg.DATA.PATH_TO_DATA_DIR)
    monkeypatch.delenv("WORLD_SIZE")
    assert prepare_synthetic_data(cfg) == cfg.DATA.PATH_TO_DATA_DIR  # one process: generated here
    assert len(open(os.path.join(cfg.DATA.PATH_TO_DATA_DIR, "train.csv")).readlines()) == 2
    monkeypatch.setenv("WORLD_SIZE", "2")  # present: a distributed run reads it
    monkeypatch.setenv("RANK", "1")
    assert prepare_synthetic_data(cfg) == cfg.DATA.PATH_TO_DATA_DIR


def test_make_synthetic_cfg_generates_what_the_config_trains_on(tmp_path):
    data_dir = str(tmp_path / "syn")
    opts = ["DATA.PATH_TO_DATA_DIR", data_dir, "SYNTHETIC.NUM_TRAIN", "1", "SYNTHETIC.NUM_VAL", "1",
            "SYNTHETIC.NUM_TEST", "1", "SYNTHETIC.FRAMES", "8"]
    cmd = [sys.executable, os.path.join(ROOT, "tools", "make_synthetic.py"), "--cfg",
           os.path.join(ROOT, "configs", "Synthetic", "MTNet_XS.yaml"), "--opts"] + opts
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=cpu_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = open(os.path.join(data_dir, "test.csv")).readlines()
    assert len(lines) == 4 and all(line.split()[0].startswith(data_dir) for line in lines)  # 4 classes x 1 clip
