"""Index arithmetic of clip sampling: which frames a clip covers, and which view a test sample is.

It follows PySlowFast's Kinetics pipeline, in frame indices of the video:

- A clip spans ``clip_size = max(1, NUM_FRAMES * SAMPLING_RATE / TARGET_FPS * video_fps)`` frames of the video
  (``NUM_FRAMES * SAMPLING_RATE`` frames at TARGET_FPS, converted to the video's own rate).
- ``delta = max(video_size - clip_size, 0)``; the clip starts at ``start`` and ends at ``start + clip_size - 1``:
  train/val (``clip_idx == -1``): ``start ~ U[0, delta]``; test view ``k`` of ``V`` clips: ``start = delta * k / V``
  (so clip 0 starts at frame 0 and the last clip stops short of the video's end, as in PySlowFast), or with
  ``DATA.USE_OFFSET_SAMPLING``: ``k * floor(delta / (V - 1))`` (``floor(delta / 2)`` when ``V == 1``).
- The ``NUM_FRAMES`` frames are ``linspace(start, end, NUM_FRAMES)``, clamped to ``[0, video_size - 1]`` and
  truncated to integers. A video shorter than the clip therefore repeats its last frame (padding at the end).
- Test sample index ``i`` is view ``k = i % (V * C)`` of video ``i // (V * C)``; ``temporal = k // C`` and
  ``spatial = k % C`` when ``C > 1``, else the centre crop (``spatial = 1``).

``video_size`` is the video's frame count (PySlowFast uses ``fps * duration``, the same number for constant-rate
files).
"""
import math
import random
from typing import List, Optional, Tuple

import torch


def clip_size_frames(num_frames: int, sampling_rate: int, target_fps: float, video_fps: float) -> float:
    """Frames of the video one clip spans: ``max(1, num_frames * sampling_rate / target_fps * video_fps)``."""
    return max(1.0, num_frames * sampling_rate / float(target_fps) * float(video_fps))


def get_start_end_idx(
    video_size: int,
    clip_size: float,
    clip_idx: int,
    num_clips: int,
    *,
    use_offset: bool = False,
    rng: Optional[random.Random] = None,
) -> Tuple[float, float]:
    """First and last (fractional) frame index of a clip (PySlowFast's ``get_start_end_idx``).

    Args:
        video_size: frames in the video.
        clip_size: frames the clip spans (``clip_size_frames``).
        clip_idx: -1 for a random clip (train/val), else the test clip index in ``[0, num_clips)``.
        num_clips: number of uniformly spread test clips (``TEST.NUM_ENSEMBLE_VIEWS``).
        use_offset: ``DATA.USE_OFFSET_SAMPLING``: spread the test clips over the whole video.
        rng: random source for ``clip_idx == -1`` (default: the ``random`` module).

    Returns:
        ``(start, end)`` with ``end = start + clip_size - 1``.
    """
    delta = max(video_size - clip_size, 0)
    if clip_idx == -1:
        start = (rng or random).uniform(0, delta)
    elif use_offset:
        start = math.floor(delta / 2) if num_clips == 1 else clip_idx * math.floor(delta / (num_clips - 1))
    else:
        start = delta * clip_idx / num_clips
    return start, start + clip_size - 1


def clip_frame_indices(start: float, end: float, num_frames: int, video_size: int) -> List[int]:
    """The ``num_frames`` frame indices of a clip: ``linspace(start, end)`` clamped to the video, truncated."""
    index = torch.linspace(float(start), float(end), num_frames, dtype=torch.float64)
    index = torch.clamp(index, 0, max(video_size - 1, 0)).long()
    return index.tolist()


def segment_frames(start: Optional[float], end: Optional[float], fps: float, num_frames: int) -> Tuple[int, int]:
    """``(first frame, frame count)`` of the segment ``[start, end)`` seconds of a video (None: its start / end).

    Frame ``i`` lies in the segment when its time ``i / fps`` is in ``[start, end)``. An ``end`` past the video's
    end is cut to the video (annotations round times up). The dataset samples clips inside these frames as if they
    were the whole video, so a clip longer than the segment repeats the segment's last frame, never a frame outside.

    Raises:
        ValueError: the segment starts at or after the video's last frame.
    """
    first = 0 if start is None else int(math.ceil(start * fps - 1e-6))
    stop = num_frames if end is None else min(num_frames, int(math.ceil(end * fps - 1e-6)))
    if first >= num_frames:
        raise ValueError(f"segment starts at {start:g} s, at or after the video's end ({num_frames} frames at "
                         f"{fps:g} fps = {num_frames / fps:.3f} s)")
    return first, max(1, stop - first)


def view_from_index(sample_index: int, num_ensemble_views: int, num_spatial_crops: int) -> Tuple[int, int, int]:
    """Map a test sample index to ``(video_idx, temporal_idx, spatial_idx)``.

    ``spatial_idx`` is 0/1/2 = left/centre/right (top/centre/bottom for portrait frames); with one crop it is 1.
    """
    views = num_ensemble_views * num_spatial_crops
    video_idx, k = divmod(sample_index, views)
    temporal = k // num_spatial_crops
    spatial = k % num_spatial_crops if num_spatial_crops > 1 else 1
    return video_idx, temporal, spatial


def index_from_view(video_idx: int, k: int, num_ensemble_views: int, num_spatial_crops: int) -> int:
    """Dataset index of view ``k`` (``temporal * num_spatial_crops + spatial``) of video ``video_idx``."""
    return video_idx * num_ensemble_views * num_spatial_crops + k
