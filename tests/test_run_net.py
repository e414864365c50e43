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
