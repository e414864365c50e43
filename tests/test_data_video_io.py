"""write_video produces files PyAV decodes back with the requested size, frame count, rate and content."""
import av
import numpy as np
import pytest

from mtnet_plugin.data.video_io import write_video
from conftest import moving_square_frames


@pytest.mark.parametrize("codec,ext", [("libx264", "mp4"), ("mpeg4", "avi"), ("libvpx-vp9", "webm")])
def test_roundtrip(tmp_path, codec, ext):
    frames = moving_square_frames(6, 32, 48, seed=1)
    path = str(tmp_path / f"v.{ext}")
    write_video(path, frames, fps=12, codec=codec)
    with av.open(path) as c:
        stream = c.streams.video[0]
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(stream)])
        assert float(stream.average_rate) == pytest.approx(12, rel=1e-3)
    assert decoded.shape == frames.shape
    # Lossy codecs: the moving square must still be where it was drawn (mean abs error small).
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 12


def test_odd_size_padded_and_bad_input(tmp_path):
    path = str(tmp_path / "odd.mp4")
    write_video(path, moving_square_frames(3, 33, 47), fps=5)
    with av.open(path) as c:
        f = next(c.decode(video=0))
        assert (f.height, f.width) == (34, 48)
    with pytest.raises(ValueError, match="uint8"):
        write_video(str(tmp_path / "bad.mp4"), np.zeros((2, 8, 8, 3), dtype=np.float32))
