"""Multi-view testing: aggregation and metrics vs hand-computed values; failures named; predictions vs a slow
reference that runs the model over the dataset sample by sample."""
import json
import logging
import os

import pytest
import torch
import torch.nn.functional as F

from mtnet_plugin import engine
from mtnet_plugin.data import build_dataset
from mtnet_plugin.engine.checkpoint import save_checkpoint
from mtnet_plugin.engine.evaluate import aggregate_views, summarize
from mtnet_plugin.models import build_model
from test_engine_trainer import tiny_cfg, write_class_videos


def test_aggregate_sum_and_max_by_hand():
    probs = torch.tensor([[0.6, 0.4], [0.1, 0.9], [0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    vidx = torch.tensor([0, 0, 1, 1, 0])
    scores, views = aggregate_views(probs, vidx, 3, "sum")
    torch.testing.assert_close(scores, torch.tensor([[1.2, 1.8], [0.9, 1.1], [0.0, 0.0]]))
    assert views.tolist() == [3, 2, 0]
    scores, _ = aggregate_views(probs, vidx, 3, "max")
    torch.testing.assert_close(scores, torch.tensor([[0.6, 0.9], [0.7, 0.8], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="ENSEMBLE_METHOD"):
        aggregate_views(probs, vidx, 3, "mean")


def _rec(index, video, label, probs, failed=False):
    return {"index": index, "video_idx": video, "label": label, "path": f"v{video}.mp4", "failed": failed,
            "failures": [{"path": f"v{video}.mp4", "error": "boom"}] if failed else [],
            "probs": torch.tensor(probs, dtype=torch.float32)}


def test_two_class_metrics_by_hand():
    recs = [
        _rec(0, 0, 0, [0.9, 0.1]), _rec(1, 0, 0, [0.6, 0.4]),  # sum [1.5, .5] -> 0, right
        _rec(2, 1, 1, [0.7, 0.3]), _rec(3, 1, 1, [0.2, 0.8]),  # sum [.9, 1.1] -> 1, right
        _rec(4, 2, 1, [0.65, 0.35]), _rec(5, 2, 1, [0.45, 0.55]),  # sum [1.1, .9] -> 0, wrong
        _rec(6, 3, 0, [0.3, 0.7]), _rec(7, 3, 0, [0.99, 0.01], failed=True),  # failed view left out -> 1, wrong
    ]
    res = summarize(recs, num_classes=2, method="sum")
    assert res["num_videos"] == 4 and res["top5_k"] == 2 and res["top5"] == 100.0
    assert [v["pred_label"] for v in res["per_video"]] == [0, 1, 0, 1]
    assert res["top1"] == pytest.approx(50.0)
    assert res["mean_class_acc"] == pytest.approx(50.0)  # class 0: 1/2, class 1: 1/2
    assert res["confusion_matrix"] == [[1, 1], [1, 1]]
    assert res["partially_failed_videos"] == ["v3.mp4"] and res["failed_videos"] == []
    assert res["failures"] == [{"path": "v3.mp4", "failed_views": 1, "errors": ["boom"]}]
    assert [v["views"] for v in res["per_video"]] == [2, 2, 2, 1]
    assert res["per_video"][0]["topk_classes"] == [0, 1]
    assert res["per_video"][0]["topk_scores"] == pytest.approx([1.5, 0.5])


def test_sum_and_max_disagree_by_hand():
    # one confident view for class 0 against two lukewarm views for class 1 (3 classes)
    recs = [_rec(0, 0, 1, [0.9, 0.05, 0.05]), _rec(1, 0, 1, [0.2, 0.7, 0.1]), _rec(2, 0, 1, [0.2, 0.7, 0.1])]
    by_sum = summarize(recs, num_classes=3, method="sum")  # [1.3, 1.45, 0.25]
    by_max = summarize(recs, num_classes=3, method="max")  # [0.9, 0.7, 0.1]
    assert by_sum["per_video"][0]["pred_label"] == 1 and by_sum["top1"] == 100.0
    assert by_max["per_video"][0]["pred_label"] == 0 and by_max["top1"] == 0.0
    assert by_max["top5_k"] == 3 and by_max["top5"] == 100.0
    assert by_sum["per_video"][0]["topk_scores"] == pytest.approx([1.45, 1.3, 0.25])


def test_top1_top5_with_six_classes_and_a_fully_failed_video():
    eye = torch.eye(6)
    # scores ranked so the label sits at rank 1, 3, 5 and 6 for videos 0..3
    order = [[2, 0, 1, 3, 4, 5], [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]]
    labels = [2, 2, 4, 5]
    recs = []
    for v, (ranking, label) in enumerate(zip(order, labels)):
        probs = sum(eye[c] * (0.5 - 0.05 * r) for r, c in enumerate(ranking))
        recs.append(_rec(2 * v, v, label, probs.tolist()))
        recs.append(_rec(2 * v + 1, v, label, probs.tolist()))
    recs += [_rec(8, 4, 1, [0.0] * 6, failed=True), _rec(9, 4, 1, [0.0] * 6, failed=True)]
    res = summarize(recs, num_classes=6, method="sum")
    assert res["num_videos"] == 4 and res["num_videos_listed"] == 5
    assert res["top1"] == pytest.approx(25.0) and res["top5"] == pytest.approx(75.0)
    assert res["failed_videos"] == ["v4.mp4"]
    # classes present: 2 (1 of 2 right), 4 (0/1), 5 (0/1) -> (0.5 + 0 + 0) / 3
    assert res["mean_class_acc"] == pytest.approx(100 * 0.5 / 3)


@pytest.mark.parametrize("act", ["softmax", "sigmoid"])
def test_test_harness_names_a_corrupt_and_a_missing_file_and_matches_a_slow_reference(
        tmp_path, make_video, caplog, act):
    data_dir = write_class_videos(make_video, splits=("test",), per_class=1, num_frames=6, width=40)
    corrupt = os.path.join(data_dir, "videos", "corrupt.mp4")
    with open(corrupt, "wb") as f:
        f.write(os.urandom(2000))
    missing = os.path.join(data_dir, "videos", "missing.mp4")
    with open(os.path.join(data_dir, "test.csv"), "a") as f:
        f.write(f"{corrupt} 0\n{missing} 1\n")
    cfg = tiny_cfg(tmp_path, data_dir, TEST={"ENABLE": True, "NUM_ENSEMBLE_VIEWS": 2, "NUM_SPATIAL_CROPS": 3,
                                              "BATCH_SIZE": 4}, DATA={"ENSEMBLE_METHOD": "max"},
                   MODEL={"HEAD_ACT": act})
    torch.manual_seed(1)
    model = build_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(cfg.OUTPUT_DIR, model, opt, 0, cfg)
    res = engine.run_test(cfg)
    on_disk = json.load(open(os.path.join(cfg.OUTPUT_DIR, "test_results.json")))
    assert sorted(on_disk["failed_videos"]) == sorted([corrupt, missing])
    assert on_disk["num_videos"] == 2 and on_disk["num_views"] == 6 and on_disk["num_videos_listed"] == 4
    assert {"top1", "top5", "mean_class_acc", "num_videos", "num_views", "failed_videos", "per_video"} <= set(on_disk)
    assert on_disk["checkpoint"].endswith("checkpoint_epoch_00001.pyth")
    assert os.path.getsize(os.path.join(cfg.OUTPUT_DIR, "confusion_matrix.png")) > 1000
    # slow reference: every sample through the eval model, max over views, by hand
    dataset = build_dataset(cfg, "test")
    model.eval()
    ref = {}
    with torch.no_grad():
        for i in range(12):  # the two good videos x 6 views
            sample = dataset[i]
            logits = model(sample["inputs"][None])
            probs = (F.softmax(logits, dim=1) if act == "softmax" else torch.sigmoid(logits))[0]
            ref[sample["video_idx"]] = torch.maximum(ref.get(sample["video_idx"], probs), probs)
    for entry in res["per_video"]:
        expected = ref[entry["video_idx"]]
        assert entry["pred_label"] == int(expected.argmax())
        assert entry["topk_scores"] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-5)
        assert entry["views"] == 6
    hits = sum(int(ref[e["video_idx"]].argmax()) == e["label"] for e in res["per_video"])
    assert res["top1"] == pytest.approx(100 * hits / 2)


def test_random_weights_warning(tmp_path, make_video, caplog):
    data_dir = write_class_videos(make_video, splits=("test",), per_class=1)
    cfg = tiny_cfg(tmp_path, data_dir, TEST={"ENABLE": True, "NUM_ENSEMBLE_VIEWS": 1, "NUM_SPATIAL_CROPS": 1})
    with caplog.at_level(logging.WARNING):
        res = engine.run_test(cfg)
    assert res["checkpoint"] is None and res["num_videos"] == 2
    assert any("RANDOMLY INITIALISED" in r.getMessage() for r in caplog.records)
