"""PyAV decoding with seeking: same frames as a full decode, few frames decoded, clear errors on bad files."""
import os

import av
import numpy as np
import pytest

from mtnet_plugin.data.decoder import VideoDecodeError, VideoReader, decode_clip, decode_frames, probe_video


def _full_decode(path):
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("name, codec", [("a.mp4", "libx264"), ("b.avi", "mpeg4"), ("c.webm", "libvpx-vp9")])
def test_seeking_decode_matches_full_decode(make_video, name, codec):
    path = make_video(name, num_frames=40, height=32, width=48, fps=10, codec=codec)
    reference = _full_decode(path)
    assert reference.shape == (40, 32, 48, 3)
    for indices in ([0, 1, 2, 3], [20, 25, 25, 30], [39, 0, 17], [33, 39, 39]):
        frames = decode_frames(path, indices)
        assert frames.dtype.is_floating_point is False and tuple(frames.shape) == (len(indices), 32, 48, 3)
        assert np.array_equal(frames.numpy(), reference[indices])


def test_seeking_decodes_only_near_the_clip(make_video):
    # MPEG-4 puts a key frame every 12 frames: frames 100..105 need at most the 12 before them plus themselves.
    path = make_video("long.avi", num_frames=120, height=32, width=48, fps=10, codec="mpeg4")
    reference = _full_decode(path)
    with VideoReader(path) as reader:
        frames = reader.frames([100, 102, 105])
        assert reader.last_decoded <= 12 + 6 + 1
        assert np.array_equal(frames.numpy(), reference[[100, 102, 105]])


def test_indices_past_the_end_repeat_the_last_frame(make_video):
    path = make_video("short.mp4", num_frames=10, fps=10)
    reference = _full_decode(path)
    frames = decode_frames(path, [8, 9, 12])
    assert np.array_equal(frames.numpy(), reference[[8, 9, 9]])


def test_probe_video(make_video):
    path = make_video("p.mp4", num_frames=24, height=32, width=48, fps=12)
    info = probe_video(path)
    assert info.has_video and (info.num_frames, info.width, info.height) == (24, 48, 32)
    assert info.fps == pytest.approx(12) and info.duration == pytest.approx(2.0)


def test_decode_clip_samples_like_the_dataset(make_video):
    # 40 frames at 10 fps; 4 frames x rate 2 at target 10 fps -> clip of 8 frames; delta 32; clip 1 of 2 starts 16.
    path = make_video("d.mp4", num_frames=40, fps=10)
    clip = decode_clip(path, 4, 2, target_fps=10, clip_idx=1, num_clips=2)
    assert np.array_equal(clip.numpy(), _full_decode(path)[[16, 18, 20, 23]])  # linspace(16, 23, 4) truncated


def _audio_only(path):
    with av.open(path, "w") as container:
        stream = container.add_stream("aac", rate=8000)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_bad_files_raise_video_decode_error_naming_the_path(tmp_path, make_video):
    missing = os.path.join(str(tmp_path), "missing.mp4")
    empty = os.path.join(str(tmp_path), "empty.mp4")
    text = os.path.join(str(tmp_path), "text.mp4")
    open(empty, "wb").close()
    with open(text, "w") as f:
        f.write("not a video " * 50)
    good = make_video("good.mp4", num_frames=20)
    truncated = os.path.join(str(tmp_path), "truncated.mp4")
    with open(good, "rb") as src, open(truncated, "wb") as dst:
        data = src.read()
        dst.write(data[: len(data) // 3])
    for path, reason in [(missing, "not found"), (empty, "empty"), (text, "cannot open"), (truncated, "")]:
        with pytest.raises(VideoDecodeError) as e:
            decode_clip(path, 4, 2)
        assert e.value.path == path and path in str(e.value) and reason in e.value.reason
    audio = os.path.join(str(tmp_path), "audio.m4a")
    _audio_only(audio)
    assert probe_video(audio).has_video is False
    with pytest.raises(VideoDecodeError, match="no video stream"):
        decode_clip(audio, 4, 2)


def test_truncated_file_counts_the_frames_it_still_holds(make_video, tmp_path):
    # Matroska keeps no frame count in its header: frames are counted from the packets that are present.
    path = make_video("full.mkv", num_frames=60, fps=10)
    cut = os.path.join(str(tmp_path), "cut.mkv")
    with open(path, "rb") as src, open(cut, "wb") as dst:
        data = src.read()
        dst.write(data[: len(data) // 2])
    info = probe_video(cut)
    assert 0 < info.num_frames < 60
    reference = _full_decode(path)
    frames = decode_frames(cut, [0, info.num_frames // 2])
    assert np.array_equal(frames.numpy(), reference[[0, info.num_frames // 2]])
    with pytest.raises(VideoDecodeError, match="no frame decodes"):
        decode_frames(cut, [58, 59])
