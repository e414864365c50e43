"""Writing real video files with PyAV (used by the synthetic dataset and by tests)."""
from fractions import Fraction
from typing import Union

import av
import numpy as np

_CODEC_PIXFMT = {"libx264": "yuv420p", "h264": "yuv420p", "mpeg4": "yuv420p", "libvpx-vp9": "yuv420p"}


def write_video(
    path: str,
    frames: Union[np.ndarray, "list[np.ndarray]"],
    fps: Union[int, float, Fraction] = 30,
    codec: str = "libx264",
    crf: int = 18,
) -> None:
    """Encode RGB frames into a video file.

    Args:
        path: output file; the container is chosen from the extension (.mp4, .avi, .webm, .mkv).
        frames: uint8 RGB frames, (T, H, W, 3). H and W are padded to even sizes by edge replication,
            since yuv420p needs them even; readers see the padded size.
        fps: frame rate, stored exactly as a fraction.
        codec: an encoder PyAV knows ("libx264", "mpeg4", "libvpx-vp9").
        crf: constant rate factor for libx264 / VP9 (lower is higher quality).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_video({path!r}): frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = _CODEC_PIXFMT.get(codec, "yuv420p")
        if codec in ("libx264", "libvpx-vp9"):
            stream.options = {"crf": str(crf)}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
