"""DATA.DECODING_BACKEND: PyAV and TorchCodec give the same frames at the same indices of an H.264 file; unknown
values are rejected naming the key; a torchcodec that cannot load falls back to PyAV with a message."""
import logging

import numpy as np
import pytest
import torch

from mtnet_plugin.config import ConfigError, get_cfg, validate_cfg
from mtnet_plugin.data import decoder
from mtnet_plugin.data.decoder import VideoReader, open_video, resolve_backend, torchcodec_status
from mtnet_plugin.data.video_io import write_video

needs_torchcodec = pytest.mark.skipif(not torchcodec_status()[0],
                                      reason=f"TorchCodec cannot decode here: {torchcodec_status()[1]}")
NUM_FRAMES = 40


def _frames():
    """Frames that tell their index apart: brightness 6 * i plus a square moving 2 px a frame."""
    frames = np.zeros((NUM_FRAMES, 64, 96, 3), np.uint8)
    for i in range(NUM_FRAMES):
        frames[i] = 6 * i
        frames[i, 20:40, 2 * i:2 * i + 16] = (255, 40, 40)
    return frames


@pytest.fixture(scope="module")
def h264(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("videos") / "clip.mp4")
    frames = _frames()
    write_video(path, frames, fps=25, codec="libx264", crf=18)
    return path, torch.from_numpy(frames)


def _nearest(decoded, truth):
    """For each decoded frame, the index of the closest original frame."""
    d = decoded.float().flatten(1)
    t = truth.float().flatten(1)
    return torch.cdist(d, t).argmin(dim=1).tolist()


@needs_torchcodec
def test_same_frames_at_the_same_indices(h264, caplog):
    path, truth = h264
    indices = [0, 1, 7, 7, 3, 20, 39, 38, 12, 45]  # unsorted, a repeat, one past the end
    with VideoReader(path) as pyav, open_video(path, backend="torchcodec") as tc:
        assert (tc.info.fps, tc.info.num_frames, tc.info.width, tc.info.height) == \
               (pyav.info.fps, pyav.info.num_frames, pyav.info.width, pyav.info.height) == (25.0, NUM_FRAMES, 96, 64)
        with caplog.at_level(logging.WARNING):
            a, b = pyav.frames(indices), tc.frames(indices)
    expected = [min(i, NUM_FRAMES - 1) for i in indices]
    assert a.shape == b.shape == (len(indices), 64, 96, 3) and a.dtype == b.dtype == torch.uint8
    assert _nearest(a, truth) == _nearest(b, truth) == expected
    diff = (a.int() - b.int()).abs()
    assert diff.float().mean() <= 1.0 and diff.max() <= 8  # same decoder, RGB conversions may round apart
    assert caplog.text.count("past the last") == 2  # both backends say so


@needs_torchcodec
def test_dataset_clips_match_across_backends(h264, tmp_path):
    from mtnet_plugin.data import KineticsDataset, VideoEntry

    path, _ = h264
    cfg = get_cfg()
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 8, 2, 25
    cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TRAIN_JITTER_SCALES = 64, [64, 80]
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 3, 1
    cfg.MODEL.NUM_CLASSES = 2
    clips = {}
    for backend in ("pyav", "torchcodec"):
        cfg.DATA.DECODING_BACKEND = backend
        ds = KineticsDataset(cfg, "test", entries=[VideoEntry(path, 1, "test.csv:1")])
        assert ds.backend == backend
        clips[backend] = torch.stack([ds[i]["inputs"] for i in range(len(ds))])
    assert clips["pyav"].shape == (3, 3, 8, 64, 64)
    assert (clips["pyav"] - clips["torchcodec"]).abs().mean() < 0.02  # normalised units; 1/255/0.225 = 0.017


def test_unknown_backend_is_rejected_naming_the_key():
    cfg = get_cfg()
    cfg.DATA.DECODING_BACKEND = "decord"
    with pytest.raises(ConfigError, match="DATA.DECODING_BACKEND"):
        validate_cfg(cfg, check_devices=False)
    with pytest.raises(ValueError, match="DATA.DECODING_BACKEND = 'decord'"):
        resolve_backend("decord")
    assert resolve_backend("torchvision") == "pyav"  # PySlowFast's default name: its reader is gone
    assert resolve_backend("pyav") == "pyav"


def test_torchcodec_that_cannot_load_falls_back_to_pyav_with_the_install_line(monkeypatch, caplog):
    monkeypatch.setattr(decoder, "_torchcodec_state", {"ok": False, "why": "RuntimeError: no libavutil"})
    with caplog.at_level(logging.WARNING):
        assert resolve_backend("torchcodec") == "pyav"
    assert "DATA.DECODING_BACKEND = torchcodec" in caplog.text and "apt-get install -y ffmpeg" in caplog.text
    assert "no libavutil" in caplog.text
