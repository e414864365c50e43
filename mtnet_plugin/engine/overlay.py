"""Writing a video with the current top-1 label and probability drawn on every frame (``tools/predict.py
--out-video``).

For a frame at time ``t`` the label comes from the window of :func:`predict.predict_windows` whose centre is nearest
to ``t`` (so the label changes halfway between two window centres). The text is drawn with Pillow's built-in font
(Pillow comes with matplotlib and torchvision) in a dark box in the top-left corner; frames are re-encoded with
PyAV (H.264, yuv420p; an odd width or height gets one edge column / row more).
"""
import logging
import os
from fractions import Fraction
from typing import Any, Dict, Optional, Sequence, Tuple

import av
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)


def label_at(windows: Sequence[Dict[str, Any]], t: float) -> Optional[Tuple[str, float]]:
    """``(top-1 label, probability)`` of the predicted window whose centre is nearest to ``t`` seconds (None when no
    window has a prediction). Ties go to the earlier window."""
    best, best_distance = None, None
    for w in windows:
        if "topk" not in w:
            continue
        distance = abs((w["start_s"] + w["end_s"]) / 2 - t)
        if best_distance is None or distance < best_distance - 1e-9:
            best, best_distance = w, distance
    if best is None:
        return None
    top = best["topk"][0]
    return str(top["label"]), float(top["prob"])


def _font(height: int):
    size = max(10, height // 18)
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: scalable when FreeType is there
    except (TypeError, OSError):
        return ImageFont.load_default()


def draw_label(image: Image.Image, text: str, font=None) -> Image.Image:
    """``image`` with ``text`` in white on a dark box in its top-left corner (drawn in place, also returned)."""
    draw = ImageDraw.Draw(image)
    font = font or _font(image.height)
    left, top, right, bottom = draw.textbbox((4, 3), text, font=font)
    draw.rectangle((0, 0, right + 4, bottom + 3), fill=(0, 0, 0))
    draw.text((4, 3), text, fill=(255, 255, 255), font=font)
    return image


def write_labelled_video(video: str, windows: Sequence[Dict[str, Any]], out_path: str, *,
                         codec: str = "libx264", crf: int = 20) -> int:
    """Copy ``video`` to ``out_path`` with each frame's current top-1 label drawn on it; returns the frame count.

    Args:
        video: the input video (the one the windows were predicted on).
        windows: :func:`predict.predict_windows` results.
        out_path: the output file (container from the extension, e.g. ``.mp4``).
        codec, crf: encoder and quality.
    """
    folder = os.path.dirname(out_path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    count = 0
    with av.open(video) as src, av.open(out_path, mode="w") as dst:
        stream = src.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or 30).limit_denominator(1001)
        start = stream.start_time or 0
        time_base = Fraction(stream.time_base)
        width, height = stream.codec_context.width, stream.codec_context.height
        out = dst.add_stream(codec, rate=rate)
        out.width, out.height = width + width % 2, height + height % 2
        out.pix_fmt = "yuv420p"
        if codec in ("libx264", "libvpx-vp9"):
            out.options = {"crf": str(crf)}
        font = _font(height)
        for frame in src.decode(stream):
            t = float((frame.pts - start) * time_base) if frame.pts is not None else count / float(rate)
            image = frame.to_image()
            if image.size != (out.width, out.height):
                canvas = Image.new("RGB", (out.width, out.height))
                canvas.paste(image, (0, 0))
                image = canvas
            current = label_at(windows, t)
            if current is not None:
                draw_label(image, f"{current[0]} {current[1]:.2f}", font)
            for packet in out.encode(av.VideoFrame.from_image(image)):
                dst.mux(packet)
            count += 1
        for packet in out.encode():
            dst.mux(packet)
    logger.info("wrote %s (%d frames with labels)", out_path, count)
    return count

