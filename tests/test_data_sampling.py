"""Clip start/end and frame indices (PySlowFast's get_start_end_idx) and the test view mapping."""
import random

import pytest

from mtnet_plugin.data.sampling import (clip_frame_indices, clip_size_frames, get_start_end_idx, index_from_view,
                                        view_from_index)


def test_clip_size_converts_target_fps_to_the_video_fps():
    assert clip_size_frames(16, 5, 30, 30) == 80  # 16 x 5 at 30 fps = 80 frames of a 30 fps video
    assert clip_size_frames(16, 5, 30, 15) == 40
    assert clip_size_frames(4, 2, 30, 10) == pytest.approx(8 / 3)
    assert clip_size_frames(1, 1, 30, 10) == 1.0  # never below one frame


def test_thirty_views_of_a_300_frame_video():
    # Facts §5.3 [ran]: 300 frames at 30 fps, 16x5 -> clip 0 = frames 0..79, clip 9 starts at 198.
    # delta = 300 - 80 = 220; clip k of 10 starts at 220 * k / 10 = 22 k.
    size = clip_size_frames(16, 5, 30, 30)
    expected_starts = [0, 22, 44, 66, 88, 110, 132, 154, 176, 198]
    for k in range(30):
        video, temporal, spatial = view_from_index(k, 10, 3)
        assert (video, temporal, spatial) == (0, k // 3, k % 3)
        start, end = get_start_end_idx(300, size, temporal, 10)
        assert start == pytest.approx(expected_starts[k // 3]) and end == pytest.approx(start + 79)


def test_frame_indices_are_a_truncated_linspace():
    # Clip 9 above: linspace(198, 277, 16), step 79 / 15 = 5.2667, truncated.
    assert clip_frame_indices(198, 277, 16, 300) == [198, 203, 208, 213, 219, 224, 229, 234, 240, 245, 250, 255,
                                                     261, 266, 271, 277]
    assert clip_frame_indices(0, 79, 16, 300)[:4] == [0, 5, 10, 15]


def test_short_video_repeats_its_last_frame():
    start, end = get_start_end_idx(10, 40.0, 0, 10)  # delta = max(10 - 40, 0) = 0
    assert (start, end) == (0, 39)
    assert clip_frame_indices(start, end, 4, 10) == [0, 9, 9, 9]  # linspace 0, 13, 26, 39 clamped to 9


def test_offset_sampling():
    # USE_OFFSET_SAMPLING: k * floor(delta / (V - 1)) = 24 k for delta = 220, V = 10; centre for V = 1.
    assert get_start_end_idx(300, 80.0, 9, 10, use_offset=True)[0] == 216
    assert get_start_end_idx(300, 80.0, 0, 1, use_offset=True)[0] == 110
    assert get_start_end_idx(300, 80.0, 0, 1)[0] == 0  # without offset sampling one clip starts at 0


def test_train_start_is_uniform_in_zero_delta():
    rng = random.Random(0)
    starts = [get_start_end_idx(100, 20.0, -1, 10, rng=rng)[0] for _ in range(400)]
    assert all(0 <= s <= 80 for s in starts)
    assert min(starts) < 10 and max(starts) > 70
    assert 30 < sum(starts) / len(starts) < 50  # mean of U[0, 80] is 40

    class Top:  # a source that always returns the upper bound
        def uniform(self, a, b):
            return b

    assert get_start_end_idx(100, 20.0, -1, 10, rng=Top()) == (80, 99)


def test_view_mapping_round_trips():
    # Sample index = video_row * (V * C) + k, temporal = k // C, spatial = k % C.
    assert view_from_index(37, 10, 3) == (1, 2, 1)
    assert view_from_index(29, 10, 3) == (0, 9, 2)
    assert view_from_index(13, 10, 1) == (1, 3, 1)  # one crop -> the centre crop
    for index in range(90):
        video, temporal, spatial = view_from_index(index, 10, 3)
        assert index_from_view(video, temporal * 3 + spatial, 10, 3) == index
