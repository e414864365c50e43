"""The synthetic demo end to end: ``tools/run_net.py --cfg configs/Synthetic/MTNet_XS.yaml``, shrunk by --opts to a
tiny model and data set, generates the data, trains 2 epochs, runs the 30-view test and writes every output."""
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_NET = os.path.join(ROOT, "tools", "run_net.py")

TINY_OPTS = [
    "SYNTHETIC.NUM_TRAIN", "2", "SYNTHETIC.NUM_VAL", "1", "SYNTHETIC.NUM_TEST", "1", "SYNTHETIC.FRAMES", "16",
    "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "2",
    "X3D.WIDTH_FACTOR", "0.5", "X3D.DEPTH_FACTOR", "0.5", "X3D.DIM_C5", "32",
    "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "30", "SOLVER.MAX_EPOCH", "2", "SOLVER.WARMUP_EPOCHS", "0.0",
    "TRAIN.EVAL_PERIOD", "1", "TRAIN.CHECKPOINT_PERIOD", "1", "DATA_LOADER.NUM_WORKERS", "0", "LOG_PERIOD", "1",
]


def _read_json_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
def test_demo_config_generates_trains_and_runs_the_30_view_test(tmp_path):
    data_dir, out = str(tmp_path / "data" / "synthetic"), str(tmp_path / "out")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, RUN_NET, "--cfg", os.path.join(ROOT, "configs", "Synthetic", "MTNet_XS.yaml"), "--opts",
         "DATA.PATH_TO_DATA_DIR", data_dir, "OUTPUT_DIR", out] + TINY_OPTS,
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]

    # The data were generated because the folder had no lists: 4 classes x (2 + 1 + 1) clips.
    for name in ("train.csv", "val.csv", "test.csv", "classes.txt", "metadata.json"):
        assert os.path.isfile(os.path.join(data_dir, name)), name
    with open(os.path.join(data_dir, "test.csv")) as f:
        test_rows = [line.split() for line in f]
    assert len(test_rows) == 4

    # Training: two epochs of finite losses, a validation after each, a checkpoint per epoch, the curves.
    stats = _read_json_lines(os.path.join(out, "json_stats.log"))
    train_epochs = [s for s in stats if s["_type"] == "train_epoch"]
    assert [s["epoch"] for s in train_epochs] == ["1/2", "2/2"]
    assert all(math.isfinite(float(s["loss"])) for s in train_epochs)
    assert [s["epoch"] for s in stats if s["_type"] == "val_epoch"] == ["1/2", "2/2"]
    checkpoints = sorted(os.listdir(os.path.join(out, "checkpoints")))
    assert checkpoints == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    for name in ("training_curves.png", "confusion_matrix.png", "config.yaml", "stdout.log"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name

    # The 30-view test of the trained weights: well-formed metrics over the 4 test videos.
    res = json.load(open(os.path.join(out, "test_results.json")))
    assert res["num_videos"] == 4 and res["num_views"] == 30 and res["failed_videos"] == []
    assert 0.0 <= res["mean_class_acc"] <= 100.0 and res["top1"] in (0.0, 25.0, 50.0, 75.0, 100.0)
    # "top5" is the top-min(5, C) accuracy: with 4 classes each video's top-4 lists every class once
    assert res["top5_k"] == 4
    assert res["mean_class_acc"] == pytest.approx(res["top1"])  # one test video per class
    assert all(sorted(v["topk_classes"]) == [0, 1, 2, 3] for v in res["per_video"])
    assert res["top5"] == pytest.approx(100.0 * sum(v["label"] in v["topk_classes"] for v in res["per_video"]) / 4)
    labels = {os.path.normpath(p): int(y) for p, y in test_rows}
    assert sorted(labels[os.path.normpath(v["path"])] for v in res["per_video"]) == [0, 1, 2, 3]
    for v in res["per_video"]:
        assert v["views"] == 30 and v["label"] == labels[os.path.normpath(v["path"])]
        assert abs(sum(v["topk_scores"]) - 30.0) < 1e-3  # the sum of 30 softmax vectors
    hits = sum(v["label"] == v["topk_classes"][0] for v in res["per_video"])
    assert res["top1"] == pytest.approx(100.0 * hits / 4)
    assert "checkpoint_epoch_00002.pyth" in log  # the test loaded the last checkpoint, not random weights
    assert "RANDOMLY INITIALISED" not in log
    assert os.path.join(out, "test_results.json") in log  # run_net says where the outputs are
