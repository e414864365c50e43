"""tools/run_net.py end to end on CPU: the 30-view test of a tiny model on generated videos."""
import json
import os
import subprocess
import sys

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
