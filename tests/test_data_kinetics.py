"""The list dataset end to end on tiny generated videos: views, crops, normalisation, broken files."""
import os

import av
import numpy as np
import pytest
import torch

from mtnet_plugin.config import get_cfg
from mtnet_plugin.data import build_dataset

MEAN, STD = 0.45, 0.225


def _cfg(data_dir, **kw):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.DATA.PATH_TO_DATA_DIR = data_dir
    cfg.MODEL.NUM_CLASSES = 2
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 4, 2, 10
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [32, 40], 24, 32
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 2, 3
    cfg.DATA.DECODE_RETRIES = 1
    for key, value in kw.items():
        node, parts = cfg, key.split("__")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return cfg


def _reference(path):
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _expected(frames, y, x, size):
    """Hand pipeline: pick frames, crop, scale to [0, 1], normalise; -> (3, T, size, size)."""
    clip = torch.from_numpy(frames[:, y:y + size, x:x + size]).permute(3, 0, 1, 2).float() / 255
    return (clip - MEAN) / STD


@pytest.mark.parametrize("height, width", [(32, 48), (48, 32)])
def test_test_views_match_a_hand_computed_pipeline(make_video_list, height, width):
    # 20 frames at 10 fps; clip = 4 x 2 frames at 10 fps = 8 frames; delta = 12; clip k of 2 starts at 6 k.
    # Frames: linspace(0, 7, 4) -> [0, 2, 4, 7]; linspace(6, 13, 4) -> [6, 8, 10, 13].
    # The short side is already TEST_CROP_SIZE = 32 (no resize); crops at offset 0 / 8 / 16 along the long side.
    data_dir = make_video_list("test", num_videos=2, num_frames=20, height=height, width=width, fps=10)
    ds = build_dataset(_cfg(data_dir), "test")
    assert len(ds) == 2 * 2 * 3
    frames_of_clip = [[0, 2, 4, 7], [6, 8, 10, 13]]
    for index in range(len(ds)):
        sample = ds[index]
        video, k = divmod(index, 6)
        temporal, spatial = k // 3, k % 3
        assert (sample["index"], sample["video_idx"], sample["failed"], sample["failures"]) == (index, video,
                                                                                                 False, [])
        assert sample["path"] == ds.videos[video].path and sample["label"] == video % 2
        offset = 8 * spatial
        y, x = (offset, 0) if height > width else (0, offset)
        expected = _expected(_reference(sample["path"])[frames_of_clip[temporal]], y, x, 32)
        assert sample["inputs"].shape == (3, 4, 32, 32)
        assert torch.allclose(sample["inputs"], expected, atol=1e-5)


def test_one_crop_test_uses_the_small_jitter_scale_and_the_centre(make_video_list):
    # NUM_SPATIAL_CROPS 1: short side -> TRAIN_JITTER_SCALES[0] = 32 (already), centre 24 crop at (4, 12).
    data_dir = make_video_list("test", num_videos=1, num_frames=20, height=32, width=48, fps=10)
    ds = build_dataset(_cfg(data_dir, TEST__NUM_SPATIAL_CROPS=1, DATA__TEST_CROP_SIZE=24), "test")
    assert len(ds) == 2
    sample = ds[1]
    expected = _expected(_reference(sample["path"])[[6, 8, 10, 13]], 4, 12, 24)
    assert torch.allclose(sample["inputs"], expected, atol=1e-5)


def test_train_and_val_samples(make_video_list):
    data_dir = make_video_list("train", num_videos=3, num_frames=20, height=32, width=48, fps=10)
    make_video_list("val", num_videos=2, num_frames=20, height=32, width=48, fps=10)
    cfg = _cfg(data_dir)
    for split, n in (("train", 3), ("val", 2)):
        ds = build_dataset(cfg, split)
        assert len(ds) == n
        for i in range(n):
            s = ds[i]
            assert s["inputs"].shape == (3, 4, 24, 24) and s["index"] == i and not s["failed"]
            # Normalised pixels of [0, 1] inputs lie in [-0.45 / 0.225, 0.55 / 0.225] (bilinear stays in range).
            assert s["inputs"].min() >= -2.0 - 1e-4 and s["inputs"].max() <= 0.55 / 0.225 + 1e-4


def _add_broken(data_dir, split, good_lines):
    missing = os.path.join(data_dir, "videos", "missing.mp4")
    corrupt = os.path.join(data_dir, "videos", "corrupt.mp4")
    with open(corrupt, "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42" + os.urandom(400))
    with open(os.path.join(data_dir, f"{split}.csv"), "w") as f:
        f.write("\n".join([f"{missing} 1", f"{corrupt} 0"] + good_lines) + "\n")
    return missing, corrupt


@pytest.mark.parametrize("split", ["test", "val"])
def test_broken_videos_come_back_failed_in_test_and_val(make_video_list, split, caplog):
    data_dir = make_video_list(split, num_videos=1, num_frames=20, fps=10)
    good = open(os.path.join(data_dir, f"{split}.csv")).read().split("\n")[0]
    missing, corrupt = _add_broken(data_dir, split, [good])
    ds = build_dataset(_cfg(data_dir), split)
    per_video = 6 if split == "test" else 1
    side = 32 if split == "test" else 24
    for video, path in ((0, missing), (1, corrupt)):
        sample = ds[video * per_video]
        assert sample["failed"] and sample["path"] == path and sample["video_idx"] == video
        assert torch.equal(sample["inputs"], torch.zeros(3, 4, side, side))
        assert [f["path"] for f in sample["failures"]] == [path] and sample["failures"][0]["error"]
        assert any(path in r.getMessage() for r in caplog.records)
    assert not ds[2 * per_video]["failed"]


def test_broken_train_videos_are_replaced_and_reported(make_video_list):
    data_dir = make_video_list("train", num_videos=1, num_frames=20, fps=10)
    good = open(os.path.join(data_dir, "train.csv")).read().split("\n")[0]
    missing, corrupt = _add_broken(data_dir, "train", [good])
    ds = build_dataset(_cfg(data_dir), "train")
    good_path = ds.videos[2].path
    for broken_index, broken in ((0, missing), (1, corrupt)):
        sample = ds[broken_index]
        assert not sample["failed"] and sample["path"] == good_path
        assert sample["label"] == 0 and sample["video_idx"] == 2 and sample["index"] == 2
        assert sample["failures"][0]["path"] == broken  # replacements may add the other broken file after it
        assert {f["path"] for f in sample["failures"]} <= {missing, corrupt}


def test_training_on_only_broken_videos_stops_with_the_failures(tmp_path):
    with open(os.path.join(str(tmp_path), "train.csv"), "w") as f:
        f.write(f"{tmp_path}/a.mp4 0\n{tmp_path}/b.mp4 1\n")
    ds = build_dataset(_cfg(str(tmp_path), DATA__MAX_REPLACEMENTS=3, DATA__DECODE_RETRIES=0), "train")
    with pytest.raises(RuntimeError, match="a.mp4"):
        ds[0]


def test_short_cycle_indices_shrink_the_crop(make_video_list):
    data_dir = make_video_list("train", num_videos=1, num_frames=20, fps=10)
    ds = build_dataset(_cfg(data_dir), "train")
    # round(24 * 0.5) = 12, round(24 * 0.7071) = 17, position 2 = the full crop.
    assert [ds[(0, s)]["inputs"].shape[-1] for s in range(3)] == [12, 17, 24]
    assert ds[(0, 1)]["index"] == 0


def test_a_broken_test_video_fails_every_view_with_one_warning(tmp_path, caplog):
    missing = os.path.join(str(tmp_path), "gone.mp4")
    with open(os.path.join(str(tmp_path), "test.csv"), "w") as f:
        f.write(f"{missing} 1\n")
    ds = build_dataset(_cfg(str(tmp_path)), "test")
    with caplog.at_level("WARNING", logger="mtnet_plugin.data.kinetics"):
        samples = [ds[i] for i in range(len(ds))]
    assert all(s["failed"] and s["failures"] == [{"path": missing, "error": "file not found"}] for s in samples)
    assert sum(missing in r.getMessage() for r in caplog.records) == 1


def test_views_of_a_single_video_without_a_list(make_video):
    from mtnet_plugin.data import KineticsDataset, VideoEntry

    path = make_video("one.mp4", num_frames=20, height=32, width=48, fps=10)
    ds = KineticsDataset(_cfg("/nonexistent"), "test", entries=[VideoEntry(path, 0, "cli")])
    views = torch.stack([ds[i]["inputs"] for i in range(len(ds))])
    assert views.shape == (6, 3, 4, 32, 32)
    assert torch.allclose(views[5], _expected(_reference(path)[[6, 8, 10, 13]], 0, 16, 32), atol=1e-5)


def test_long_cycle_sampling_rate_and_fps_jitter_in_train_only(make_video_list, monkeypatch):
    import mtnet_plugin.data.kinetics as kinetics

    seen = []
    real = kinetics.clip_size_frames
    monkeypatch.setattr(kinetics, "clip_size_frames", lambda t, rate, fps, vfps: seen.append((rate, fps)) or
                        real(t, rate, fps, vfps))
    data_dir = make_video_list("train", num_videos=1, num_frames=20, fps=10)
    make_video_list("val", num_videos=1, num_frames=20, fps=10)
    cfg = _cfg(data_dir, MULTIGRID__LONG_CYCLE_SAMPLING_RATE=4, DATA__TRAIN_JITTER_FPS=5.0)
    train = build_dataset(cfg, "train")
    for _ in range(40):
        train[0]
    rates = {r for r, _ in seen}
    assert rates == {2, 3, 4} and all(10 <= f <= 15 for _, f in seen)  # rate in [2, 4], fps in 10 + U[0, 5]
    seen.clear()
    build_dataset(cfg, "val")[0]
    assert seen == [(2, 10.0)]
