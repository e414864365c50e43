"""Fault injection, list side: paths with spaces, lists that are not UTF-8, segments outside the video.

Runs the real runtime (``engine.train``) on tiny generated videos. Each test is a row of docs/reliability.md.
"""
import json
import os

import pytest
import torch

import fault_files
from mtnet_plugin.config import load_config
from mtnet_plugin.data import VideoListError
from mtnet_plugin.engine import test as run_test
from mtnet_plugin.engine import train
from mtnet_plugin.engine.checkpoint import save_checkpoint
from mtnet_plugin.engine.logs import read_json_stats
from mtnet_plugin.models import build_model


def _cfg(tmp_path, data_dir, **sections):
    sections.setdefault("SOLVER", {"MAX_EPOCH": 1})
    sections.setdefault("TRAIN", {"EVAL_PERIOD": 100})
    path = fault_files.write_yaml(str(tmp_path / "cfg.yaml"),
                                  fault_files.tiny_cfg_dict(data_dir, str(tmp_path / "out"), **sections))
    cfg = load_config([path])
    cfg.freeze()
    return cfg


def test_paths_with_spaces_load_every_video(tmp_path):
    """Kinetics folders named after classes ('playing guitar/'), written unquoted as users write them."""
    data = tmp_path / "data"
    names = ["playing guitar/clip 1.mp4", "blowing out candles/x.mp4", "playing guitar/y.mp4", "z z.mp4"]
    for i, name in enumerate(names):
        fault_files.good_video(str(data / name), seed=i)
    (data / "train.csv").write_text("".join(f"{name} {i % 2}\n" for i, name in enumerate(names)))
    cfg = _cfg(tmp_path, str(data), DATA={**fault_files.tiny_cfg_dict("", "")["DATA"],
                                          "PATH_TO_DATA_DIR": str(data), "PATH_PREFIX": str(data)})
    train(cfg)
    (stats,) = [s for s in read_json_stats(os.path.join(cfg.OUTPUT_DIR, "json_stats.log"))
                if s["_type"] == "train_epoch"]
    fault_files.expect_handled(stats["data_failures"] == 0, f"videos failed: {stats['data_failure_paths']}")


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_non_utf8_list_names_file_and_line(tmp_path, encoding):
    data = tmp_path / "data"
    video = fault_files.good_video(str(data / "a.mp4"))
    text = f"{video} 0\n{video} 1\n" + f"{data}/caf\u00e9.mp4 1\n"
    raw = text.encode("utf-8")
    if encoding == "latin-1":  # the first two lines are plain ASCII; line 3 has one latin-1 byte
        raw = text.encode("latin-1")
    else:  # a spreadsheet's "Unicode text": every line has NUL bytes... and the first a UTF-16 mark
        raw = text.encode("utf-16")
    (data / "train.csv").write_bytes(raw)
    cfg = _cfg(tmp_path, str(data))
    with pytest.raises(VideoListError) as err:
        train(cfg)
    line = 3 if encoding == "latin-1" else 1
    fault_files.expect_handled(str(err.value).startswith(f"{data / 'train.csv'}:{line}: not UTF-8 text"),
                               f"not named: {err.value}")
    assert not os.path.exists(os.path.join(cfg.OUTPUT_DIR, "json_stats.log"))  # before any training step


def test_segment_outside_the_video_is_a_named_failure(tmp_path):
    """A segment list (HACS-style ``video#t=START,END``) whose times lie past the video's end: that line fails like a
    broken video (named in test_results.json), the others are tested."""
    data = tmp_path / "data"
    video = fault_files.good_video(str(data / "long.mp4"), num_frames=20)  # 2 s at 10 fps
    (data / "test.csv").write_text(f"{video}#t=0,1 0\n{video}#t=1,2 1\n{video}#t=30,32 1\n")
    cfg_path = fault_files.write_yaml(str(tmp_path / "cfg.yaml"), fault_files.tiny_cfg_dict(
        str(data), str(tmp_path / "out"), TRAIN={"ENABLE": False}, TEST={"ENABLE": True, "NUM_ENSEMBLE_VIEWS": 1,
                                                                          "NUM_SPATIAL_CROPS": 1, "BATCH_SIZE": 2}))
    cfg = load_config([cfg_path])
    model = build_model(cfg)
    ckpt = save_checkpoint(str(tmp_path / "ckpt"), model, torch.optim.SGD(model.parameters(), lr=0.1), 0, cfg)
    cfg.TEST.CHECKPOINT_FILE_PATH = ckpt
    cfg.freeze()
    results = run_test(cfg)
    assert results["num_videos"] == 2 and results["num_videos_listed"] == 3
    (failure,) = results["failures"]
    fault_files.expect_handled("segment starts at 30 s, at or after the video's end" in json.dumps(failure),
                               f"not named: {failure}")
