"""Sliding-window prediction over a long video (engine/predict.py ``predict_windows``, tools/predict.py --window)
and the labelled output video (engine/overlay.py).

A video made of three coloured parts (red 0-3 s, green 3-6 s, blue 6-9 s) goes through the real windowing and data
pipeline with a stand-in classifier that names the dominant colour, so the right label and time of every window is
known. One end-to-end run of the CLI with a real checkpoint checks each window's probabilities against the model
applied by hand to the frames of that window."""
import importlib.util
import json
import os

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtnet_plugin.config import get_cfg
from mtnet_plugin.data import decode_frames
from mtnet_plugin.data.transforms import normalize, uint8_to_float, uniform_spatial_sampling
from mtnet_plugin.data.video_io import write_video
from mtnet_plugin.engine.overlay import label_at, write_labelled_video
from mtnet_plugin.engine.predict import load_trained_model, predict_windows_with_model, window_bounds
from mtnet_plugin.engine.checkpoint import read_checkpoint
from test_engine_predict import save_tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOURS = ["red", "green", "blue"]
FPS, PART_S = 10, 3.0


class DominantColour(torch.nn.Module):
    """Logits = 20 x the mean of each colour channel: the class is the frame's dominant colour."""

    def forward(self, x):
        return 20 * x.mean(dim=(2, 3, 4))


def _three_part_video(path):
    frames = []
    for part in range(3):
        frame = np.zeros((32, 32, 3), np.uint8)
        frame[..., part] = 220
        frames += [frame] * int(PART_S * FPS)
    write_video(path, np.stack(frames), fps=FPS, crf=10)
    return path


def _cfg():
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.MODEL.NUM_CLASSES = 3
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 4, 2, 10  # a clip spans 0.8 s
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TEST_CROP_SIZE = [32, 32], 32
    cfg.DATA.MEAN, cfg.DATA.STD = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS, cfg.TEST.BATCH_SIZE = 1, 1, 8
    cfg.DATA_LOADER.NUM_WORKERS = 0
    return cfg


def test_window_bounds():
    assert window_bounds(9.0, 2.0, 1.0) == [(float(s), float(s + 2)) for s in range(8)]
    assert window_bounds(5.5, 2.0, 2.0) == [(0.0, 2.0), (2.0, 4.0), (3.5, 5.5)]  # one more window ends at the end
    assert window_bounds(1.2, 2.0, 0.5) == [(0.0, 1.2)]  # shorter than a window: the whole video
    with pytest.raises(ValueError, match="positive"):
        window_bounds(9.0, 2.0, 0)


@pytest.fixture(scope="module")
def three_parts(tmp_path_factory):
    video = _three_part_video(str(tmp_path_factory.mktemp("windows") / "three parts.mp4"))
    windows = predict_windows_with_model(DominantColour(), _cfg(), video, COLOURS, window=1.0, stride=0.5, topk=2)
    return video, windows


def test_windows_are_labelled_in_order_at_the_right_times(three_parts):
    video, windows = three_parts
    window, stride = 1.0, 0.5
    assert [(w["window"], w["start_s"], w["end_s"]) for w in windows] == [
        (i, i * stride, i * stride + window) for i in range(17)]
    top1 = [w["topk"][0]["label"] for w in windows]
    # every window wholly inside one part names that part's colour, with near certainty
    for w, label in zip(windows, top1):
        part = int(w["start_s"] // PART_S)
        if w["end_s"] <= (part + 1) * PART_S:
            assert label == COLOURS[part] and w["topk"][0]["prob"] > 0.9, w
    # in order, and each change of label is within one stride of the true change (3 s, 6 s)
    runs = [label for i, label in enumerate(top1) if i == 0 or label != top1[i - 1]]
    assert runs == COLOURS
    for boundary, colour in ((PART_S, "green"), (2 * PART_S, "blue")):
        first = top1.index(colour)
        previous, current = windows[first - 1], windows[first]
        change = ((previous["start_s"] + previous["end_s"]) / 2 + (current["start_s"] + current["end_s"]) / 2) / 2
        assert abs(change - boundary) <= stride, (colour, change)
    assert all(w["views"] == 1 and w["video"] == video for w in windows)


def test_labelled_video_draws_the_current_label(three_parts, tmp_path):
    video, windows = three_parts
    assert [label_at(windows, t)[0] for t in (0.2, 1.4, 4.5, 8.9)] == ["red", "red", "green", "blue"]
    out = str(tmp_path / "labelled.mp4")
    assert write_labelled_video(video, windows, out) == 90
    with av.open(out) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(int)
    with av.open(video) as c:
        source = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(int)
    assert frames.shape == source.shape == (90, 32, 32, 3)
    # the bottom rows are the video as it was; the top-left box is dark with light text
    assert np.abs(frames[:, 24:] - source[:, 24:]).mean() < 6
    box = frames[:, :8, :16]
    assert (box.max(axis=3) < 60).mean() > 0.3 and box.max() > 150
    # the text of one label is the same on every frame showing it, and different from another label's
    red_a, red_b, blue = frames[5, :12], frames[15, :12], frames[85, :12]
    assert np.abs(red_a - red_b).mean() < 3 and np.abs(red_a - blue).mean() > 10


def _cli():
    spec = importlib.util.spec_from_file_location("predict_cli", os.path.join(ROOT, "tools", "predict.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli.main


def test_cli_windows_with_a_real_checkpoint(tmp_path, make_video, capsys):
    video = make_video("long.mp4", num_frames=30, height=32, width=48, fps=10, seed=3)  # 3 s
    cfg_path, ckpt_path, cfg = save_tiny_checkpoint(tmp_path, str(tmp_path))
    out_video = str(tmp_path / "labelled.mp4")
    code = _cli()([video, "--cfg", cfg_path, "--checkpoint", ckpt_path, "--window", "1", "--json", "--topk", "3",
                   "--out-video", out_video])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [(w["start_s"], w["end_s"], w["views"]) for w in lines] == [(0.0, 1.0, 1), (1.0, 2.0, 1), (2.0, 3.0, 1)]
    # by hand: window w holds frames 10 w .. 10 w + 9; a clip is 6 frames at rate 1 starting at the window's start
    model = load_trained_model(cfg, read_checkpoint(ckpt_path))
    for w, line in enumerate(lines):
        clip = uint8_to_float(decode_frames(video, [10 * w + i for i in range(6)]))
        clip = normalize(uniform_spatial_sampling(clip, 32, 32, 1), cfg.DATA.MEAN, cfg.DATA.STD)
        with torch.no_grad():
            expected = F.softmax(model(clip[None]), dim=1)[0]
        got = torch.zeros(3)
        for t in line["topk"]:
            got[t["index"]] = t["prob"]
        assert torch.allclose(got, expected, atol=1e-5), (w, got, expected)
    with av.open(out_video) as c:
        assert sum(1 for _ in c.decode(video=0)) == 30


def test_cli_window_arguments_are_checked(tmp_path, capsys):
    assert _cli()(["a.mp4", "b.mp4", "--window", "2"]) == 2
    assert "--window takes one video" in capsys.readouterr().err
    assert _cli()(["a.mp4", "--out-video", "x.mp4"]) == 2
