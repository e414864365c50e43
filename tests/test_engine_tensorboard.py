"""TENSORBOARD.* honoured as PySlowFast names it: a tiny training writes events, read back with tensorboard's
EventAccumulator; tag names, steps and values checked against the run's json stats."""
import json
import os
import sys

import pytest

from mtnet_plugin.config import unimplemented_settings
from mtnet_plugin.engine import train
from mtnet_plugin.engine.hooks import default_hooks
from mtnet_plugin.engine.logs import read_json_stats
from test_engine_trainer import tiny_cfg, write_class_videos

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

TB_ON = {"ENABLE": True, "LOG_DIR": "tb", "CONFUSION_MATRIX": {"ENABLE": True}}


def test_tiny_training_writes_pyslowfast_tags_with_the_run_values(tmp_path, make_video):
    data_dir = write_class_videos(make_video)
    names = tmp_path / "classes.json"
    names.write_text(json.dumps({"still": 0, "moving": 1}))
    cfg = tiny_cfg(tmp_path, data_dir, SOLVER={"MAX_EPOCH": 2, "WARMUP_EPOCHS": 0.0},
                   TENSORBOARD={**TB_ON, "CLASS_NAMES_PATH": str(names)})
    train(cfg)
    log_dir = os.path.join(cfg.OUTPUT_DIR, "tb")
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(log_dir))
    acc = event_accumulator.EventAccumulator(log_dir)
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"Train/loss", "Train/lr", "Train/Top1_err", "Train/Top5_err",
                                          "Val/Top1_err", "Val/Top5_err"}
    assert acc.Tags()["images"] == ["Confusion Matrix"]
    assert [e.step for e in acc.Images("Confusion Matrix")] == [0, 1]

    stats = read_json_stats(os.path.join(cfg.OUTPUT_DIR, "json_stats.log"))
    train_epochs = [s for s in stats if s["_type"] == "train_epoch"]
    val_epochs = [s for s in stats if s["_type"] == "val_epoch"]
    # 4 training videos, batch 4: one iteration per epoch, so step == epoch and the epoch mean is that iteration
    for tag, key in (("Train/loss", "loss"), ("Train/lr", "lr"), ("Train/Top1_err", "top1_err"),
                     ("Train/Top5_err", "top5_err")):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [0, 1], tag
        for event, s in zip(events, train_epochs):
            assert event.value == pytest.approx(float(s[key]), abs=2e-5), tag
    assert acc.Scalars("Train/loss")[0].value > 0
    assert acc.Scalars("Train/lr")[0].value != acc.Scalars("Train/lr")[1].value  # cosine: the LR moved
    for tag, key in (("Val/Top1_err", "top1_err"), ("Val/Top5_err", "top5_err")):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [0, 1]
        assert [e.value for e in events] == pytest.approx([float(s[key]) for s in val_epochs], abs=2e-5)


def test_default_log_dir_is_runs_dataset_and_disabled_writes_nothing(tmp_path, make_video):
    data_dir = write_class_videos(make_video, splits=("train",))
    cfg = tiny_cfg(tmp_path, data_dir, SOLVER={"MAX_EPOCH": 1, "WARMUP_EPOCHS": 0.0}, TRAIN={"EVAL_PERIOD": 5},
                   TENSORBOARD={"ENABLE": True})
    train(cfg)
    acc = event_accumulator.EventAccumulator(os.path.join(cfg.OUTPUT_DIR, f"runs-{cfg.TRAIN.DATASET}"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("Train/loss")] == [0]
    off = tiny_cfg(tmp_path, data_dir, SOLVER={"MAX_EPOCH": 1, "WARMUP_EPOCHS": 0.0})
    assert not any(type(h).__name__ == "TensorBoardWriter" for h in default_hooks(off))


def test_enable_without_the_package_fails_naming_the_key(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, str(tmp_path), TENSORBOARD={"ENABLE": True})
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(ImportError, match=r"TENSORBOARD\.ENABLE.*pip install"):
        default_hooks(cfg)


def test_read_keys_are_no_longer_reported_as_without_effect(tmp_path):
    cfg = tiny_cfg(tmp_path, str(tmp_path), TENSORBOARD={**TB_ON, "CLASS_NAMES_PATH": "x.json",
                                                         "HISTOGRAM": {"ENABLE": True}})
    keys = {k for k, _, _ in unimplemented_settings(cfg)}
    assert not keys & {"TENSORBOARD.ENABLE", "TENSORBOARD.LOG_DIR", "TENSORBOARD.CLASS_NAMES_PATH",
                       "TENSORBOARD.CONFUSION_MATRIX.ENABLE"}
    assert "TENSORBOARD.HISTOGRAM.ENABLE" in keys
