"""Segment-aware lists (``path#t=START,END``): clips come only from inside the segment, and check_videos checks
that the segment lies inside the video. The video's frames carry their own index as a gray level, so every decoded
frame says where in the video it came from."""
import os
import random

import numpy as np
import pytest

from mtnet_plugin.config import get_cfg
from mtnet_plugin.data import build_dataset
from mtnet_plugin.data.check import check_video_lists
from mtnet_plugin.data.video_io import write_video

FPS, FRAMES, STEP = 10, 60, 4  # 6 s; frame i is the gray level 4 i


def _index_video(path):
    frames = np.stack([np.full((32, 32, 3), STEP * i, np.uint8) for i in range(FRAMES)])
    write_video(path, frames, fps=FPS, crf=0)
    return path


def _cfg(data_dir, views=3):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.DATA.PATH_TO_DATA_DIR = data_dir
    cfg.MODEL.NUM_CLASSES = 3
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 4, 2, 10  # a clip spans 8 frames
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [32, 32], 32, 32
    cfg.DATA.MEAN, cfg.DATA.STD = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = views, 1
    return cfg


def _frame_indices(clip):
    """The video frame each of the clip's frames shows (its gray level / STEP)."""
    levels = clip.mean(dim=(0, 2, 3)).numpy() * 255
    return [int(round(v / STEP)) for v in levels]


@pytest.fixture
def segment_data(tmp_path):
    video = _index_video(str(tmp_path / "long video.mp4"))  # a space in the name, too
    lines = ['"long video.mp4#t=2,4" 0', "long video.mp4#t=4.5 1", "long video.mp4#t=,1.2 2", "long video.mp4 2"]
    for split in ("train", "test"):
        (tmp_path / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return str(tmp_path), video


def test_train_clips_stay_inside_the_segment(segment_data):
    data_dir, _ = segment_data
    cfg = _cfg(data_dir)
    cfg.DATA.PATH_PREFIX = data_dir
    ds = build_dataset(cfg, "train")
    random.seed(0)
    inside = {0: range(20, 40), 1: range(45, 60), 2: range(0, 12)}
    seen = {0: set(), 1: set(), 2: set()}
    for _ in range(12):
        for idx in range(3):
            sample = ds[idx]
            assert not sample["failed"], sample["failures"]
            got = _frame_indices(sample["inputs"])
            assert all(i in inside[idx] for i in got), (idx, got)
            seen[idx].update(got)
    # random starts cover the segment (not a single fixed clip): both ends of the 2-4 s segment are reached
    assert min(seen[0]) <= 23 and max(seen[0]) >= 36
    # the 1.2 s segment (12 frames) is longer than a clip (8 frames); the 1.5 s tail too
    whole = set()
    for _ in range(12):
        whole.update(_frame_indices(ds[3]["inputs"]))
    assert max(whole) > 40  # the line without a segment samples the whole video


def test_test_views_spread_over_the_segment_only(segment_data):
    data_dir, _ = segment_data
    cfg = _cfg(data_dir)
    cfg.DATA.PATH_PREFIX = data_dir
    ds = build_dataset(cfg, "test")
    views = [_frame_indices(ds[k]["inputs"]) for k in range(3)]  # video 0: #t=2,4 = frames 20..39
    # 20 frames, clip 8: delta 12, clip k starts at 20 + 12 k / 3 -> 20, 24, 28; linspace(start, start + 7, 4)
    assert views == [[20, 22, 24, 27], [24, 26, 28, 31], [28, 30, 32, 35]]


def test_segment_after_the_video_end_fails_that_video_only(tmp_path):
    video = _index_video(str(tmp_path / "v.mp4"))
    (tmp_path / "test.csv").write_text(f"{video}#t=7,9 0\n{video}#t=1,3 1\n")
    ds = build_dataset(_cfg(str(tmp_path), views=1), "test")
    bad, good = ds[0], ds[1]
    assert bad["failed"] and "segment starts at 7 s, at or after the video's end (60 frames" in bad["failures"][0][
        "error"]
    assert not good["failed"] and _frame_indices(good["inputs"]) == [10, 12, 14, 17]  # V = 1: the clip starts at 1 s


def test_check_videos_checks_segments_against_the_video(tmp_path):
    video = _index_video(str(tmp_path / "v.mp4"))
    listing = tmp_path / "l.csv"
    listing.write_text(f"{video}#t=1,3 0\n{video}#t=5,6.05 0\n{video}#t=6.5,8 1\n{video}#t=5,7 1\n"
                       f"{video}#t=2,2.5 0\n{video} 1\n")
    from mtnet_plugin.data.check import CheckSpec

    report = check_video_lists([str(listing)], spec=CheckSpec(num_frames=4, sampling_rate=2, target_fps=10))
    got = {b["line"]: (b["kind"], b["problem"]) for b in report["bad"]}
    assert set(got) == {3, 4, 5}, got  # line 2 ends within one frame of the end (6.05 s): fine
    assert got[3][0] == "segment" and "#t=6.5,8 starts at or after the video's end (6.000 s)" in got[3][1]
    assert got[4][0] == "segment" and "#t=5,7 ends after the video's end (6.000 s)" in got[4][1]
    assert got[5][0] == "too_short" and "segment #t=2,2.5: 5 frames" in got[5][1]
    assert report["videos"] == 1 and report["checked"] == 6
