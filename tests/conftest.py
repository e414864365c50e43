"""Shared fixtures: tiny real video files written with PyAV at test time, and root-logger cleanup."""
import logging
import os

import numpy as np
import pytest
import torch

# Tests use tiny tensors, for which one intra-op thread is fastest and two compete with the other test
# process on a 2-core CI machine; subprocesses (run_net, torchrun) inherit the setting through the environment.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

from mtnet_plugin.data.video_io import write_video


def moving_square_frames(num_frames: int, height: int, width: int, seed: int = 0, speed: int = 2) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of a bright square moving right over a dark, noisy background."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 40, size=(num_frames, height, width, 3), dtype=np.uint8)
    side = max(2, min(height, width) // 4)
    for t in range(num_frames):
        x = (t * speed) % max(1, width - side)
        frames[t, height // 2 - side // 2 : height // 2 + side // 2, x : x + side] = (230, 200, 40)
    return frames


@pytest.fixture
def make_video(tmp_path):
    """Factory: ``make_video(name, num_frames=8, height=32, width=48, fps=10, codec="libx264", seed=0)`` -> path."""

    def _make(name="clip.mp4", num_frames=8, height=32, width=48, fps=10, codec="libx264", seed=0, speed=2):
        path = os.path.join(str(tmp_path), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_video(path, moving_square_frames(num_frames, height, width, seed, speed), fps=fps, codec=codec)
        return path

    return _make


@pytest.fixture
def make_video_list(tmp_path, make_video):
    """Factory: writes ``num_videos`` tiny clips and ``{split}.csv`` (``path label`` lines) in ``tmp_path``.

    ``make_video_list(split="train", num_videos=4, num_classes=2, sep=" ", **video_kwargs)`` returns the
    data directory; labels cycle over the classes and clip ``i`` uses seed ``i``.
    """

    def _make(split="train", num_videos=4, num_classes=2, sep=" ", **video_kwargs):
        lines = []
        for i in range(num_videos):
            path = make_video(f"videos/{split}_{i:03d}.mp4", seed=i, **video_kwargs)
            lines.append(f"{path}{sep}{i % num_classes}")
        with open(os.path.join(str(tmp_path), f"{split}.csv"), "w") as f:
            f.write("\n".join(lines) + "\n")
        return str(tmp_path)

    return _make


@pytest.fixture
def root_handlers():
    """``engine.run`` sets up logging on the root logger: put the handlers back afterwards."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
