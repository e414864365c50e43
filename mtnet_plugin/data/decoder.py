"""Reading frames from video files with PyAV (or TorchCodec), seeking to the clip instead of decoding the whole video.

Backends (``DATA.DECODING_BACKEND``, :func:`resolve_backend`, :func:`open_video`): ``pyav`` (the default; the
readers below) or ``torchcodec`` (:class:`TorchCodecReader`: TorchCodec's ``VideoDecoder`` over the system's FFmpeg
libraries, the same frame indices; docs/ecosystem.md). ``torchvision``, PySlowFast's default name, decodes with
PyAV: torchvision's video reader was removed in torchvision 0.28. Any other value is a ConfigError.

Public API (also used by tools such as check_videos and predict):

- :func:`probe_video` -> :class:`VideoInfo` (fps, frame count, size, whether there is a video stream).
- :func:`decode_frames` -> the frames at given indices, ``uint8 (T, H, W, 3)`` RGB.
- :func:`decode_clip` -> one clip sampled as the dataset samples it (PySlowFast semantics, see ``sampling``).
- :class:`VideoReader` keeps one file open for several of these calls.
- Every failure (missing, empty, unreadable or truncated file, no video stream, codec error) raises
  :class:`VideoDecodeError` naming the path and the reason.

Frame ``i`` is the frame whose presentation time is ``i / fps`` after the stream's start. To read frames
``[a, b]`` the reader seeks to the key frame at or before ``a`` and decodes forward only until ``b``. PyAV is used
directly: pytorchvideo's ``EncodedVideoPyAV`` selects by seconds and returns float frames, while the PySlowFast
pipeline we follow indexes frames.
"""
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Dict, List, Optional, Sequence, Tuple

import av
import numpy as np
import torch
from iopath.common.file_io import g_pathmgr

from .sampling import clip_frame_indices, clip_size_frames, get_start_end_idx

logger = logging.getLogger(__name__)


# What PyAV raises on bad data while demuxing or decoding.
_DECODE_ERRORS = (av.error.FFmpegError, OSError, ValueError, EOFError)


class VideoDecodeError(RuntimeError):
    """A video that cannot be read. ``path`` and ``reason`` are kept as attributes."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns from a file's headers (no frame is decoded).

    Attributes:
        path: the file.
        has_video: whether it holds a video stream (False for audio-only files; then the rest is 0).
        fps: average frame rate of the video stream.
        num_frames: frames in the stream (header count, else counted from the packets).
        width, height: frame size in pixels.
        duration: seconds, ``num_frames / fps``.
        codec: decoder name, e.g. ``h264``.
    """

    path: str
    has_video: bool
    fps: float
    num_frames: int
    width: int
    height: int
    duration: float
    codec: str


def _local_path(path: str) -> str:
    """A local file for ``path`` (iopath URIs are fetched to its cache); raises VideoDecodeError if missing/empty."""
    try:
        local = g_pathmgr.get_local_path(path)
    except Exception as e:  # iopath raises handler-specific errors for remote paths
        raise VideoDecodeError(path, f"cannot fetch: {type(e).__name__}: {e}") from e
    if not os.path.exists(local):
        raise VideoDecodeError(path, "file not found")
    if os.path.isdir(local):
        raise VideoDecodeError(path, "is a directory, not a video file")
    if os.path.getsize(local) == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    return local


class _ClosingReader:
    """``with reader:`` closes the reader at the end of the block; each backend defines ``close``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoReader(_ClosingReader):
    """An open video file: ``with VideoReader(path) as r: info = r.info; frames = r.frames([0, 5, 9])``.

    Args:
        path: local path or iopath URI.
        threads: let FFmpeg decode with several threads (``DATA_LOADER.ENABLE_MULTI_THREAD_DECODE``).

    Raises:
        VideoDecodeError: the file is missing, empty or not a media file PyAV can open.
    """

    def __init__(self, path: str, *, threads: bool = False):
        self.path = path
        local = _local_path(path)
        try:
            self._container = av.open(local)
        except (av.error.FFmpegError, UnicodeDecodeError, OSError, ValueError) as e:
            raise VideoDecodeError(path, f"cannot open as a video ({type(e).__name__}: {e})") from e
        try:
            streams = self._container.streams.video
            self._stream = streams[0] if streams else None
            if self._stream is not None and threads:
                self._stream.thread_type = "AUTO"
            self.info = self._probe()
        except BaseException:
            self._container.close()
            raise
        # Frames the last ``frames()`` call decoded (seeking keeps this near the clip's length).
        self.last_decoded = 0

    def close(self) -> None:
        self._container.close()

    def _probe(self) -> VideoInfo:
        s = self._stream
        if s is None:
            return VideoInfo(self.path, False, 0.0, 0, 0, 0, 0.0, "")
        rate = s.average_rate or s.guessed_rate or s.base_rate
        if not rate:
            raise VideoDecodeError(self.path, "video stream has no frame rate")
        self._rate = Fraction(rate)
        self._time_base = Fraction(s.time_base)
        self._start_pts = s.start_time or 0
        num_frames = int(s.frames or 0)
        if num_frames <= 0:
            num_frames = self._count_packets()
        if num_frames <= 0:
            raise VideoDecodeError(self.path, "video stream holds no frames")
        ctx = s.codec_context
        return VideoInfo(self.path, True, float(self._rate), num_frames, int(ctx.width), int(ctx.height),
                         num_frames / float(self._rate), ctx.name)

    def _count_packets(self) -> int:
        try:
            count = sum(1 for p in self._container.demux(self._stream) if p.size)
        except _DECODE_ERRORS as e:
            raise VideoDecodeError(self.path, f"cannot read packets ({type(e).__name__}: {e})") from e
        self._container.seek(0)
        return count

    def _index_of(self, pts: int) -> int:
        return round((pts - self._start_pts) * self._time_base * self._rate)

    def _collect(self, wanted: List[int]) -> Tuple[Dict[int, np.ndarray], List[int]]:
        """Decode forward from the key frame before ``wanted[0]`` until every wanted index has a frame.

        Each wanted index gets the last frame whose index is <= it (so a gap in a variable-rate stream repeats the
        frame before it); only those frames are converted to RGB. Returns ``(frames by index, indices past the end
        of the stream)``.
        """
        first = wanted[0]
        for from_start in (first == 0, True):
            target = self._start_pts + (0 if from_start else int(first / self._rate / self._time_base))
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            out: Dict[int, np.ndarray] = {}
            pos, prev, prev_rgb, first_seen = 0, None, None, None
            for frame in self._container.decode(self._stream):
                self.last_decoded += 1
                if frame.pts is None:
                    continue
                idx = self._index_of(frame.pts)
                if first_seen is None:
                    first_seen = idx
                    if idx > first and not from_start:
                        break  # the demuxer landed after the wanted frame (an imprecise index): start over
                while pos < len(wanted) and wanted[pos] <= idx:
                    if wanted[pos] == idx or prev is None:
                        out[wanted[pos]] = frame.to_ndarray(format="rgb24")
                    else:
                        prev_rgb = prev_rgb if prev_rgb is not None else prev.to_ndarray(format="rgb24")
                        out[wanted[pos]] = prev_rgb
                    pos += 1
                if pos == len(wanted):
                    return out, []
                prev, prev_rgb = frame, None
            else:
                missing = wanted[pos:]
                if prev is not None:
                    rgb = prev.to_ndarray(format="rgb24")
                    for i in missing:
                        out[i] = rgb
                return out, missing
        return {}, wanted  # not reached: the pass from the start always returns

    def frames(self, indices: Sequence[int]) -> torch.Tensor:
        """RGB frames at ``indices`` (any order, repeats allowed), ``uint8 (len(indices), H, W, 3)``.

        Indices past the last decodable frame (a header that over-counts, a truncated file) get the last decoded
        frame, with a warning; if no frame at or after the first wanted index decodes, VideoDecodeError is raised.
        """
        if self._stream is None:
            raise VideoDecodeError(self.path, "no video stream (audio-only or data file)")
        if len(indices) == 0:
            raise ValueError("frames(): no indices requested")
        wanted = sorted(set(int(i) for i in indices))
        self.last_decoded = 0
        try:
            decoded, past_end = self._collect(wanted)
        except _DECODE_ERRORS as e:
            raise VideoDecodeError(self.path, f"decoding frames {wanted[0]}..{wanted[-1]} failed "
                                              f"({type(e).__name__}: {e})") from e
        if len(past_end) == len(wanted) or not decoded:
            raise VideoDecodeError(self.path, f"no frame decodes in {wanted[0]}..{wanted[-1]} "
                                              f"(header says {self.info.num_frames} frames; truncated?)")
        if past_end:
            logger.warning("%s: frames %s are past the last decodable frame; repeated it (header says %d frames)",
                           self.path, past_end, self.info.num_frames)
        return torch.from_numpy(np.stack([decoded[int(i)] for i in indices]))


def probe_video(path: str) -> VideoInfo:
    """Read a video's headers: fps, frame count, size, codec; ``has_video=False`` for files without video.

    Raises:
        VideoDecodeError: missing, empty or unreadable file.
    """
    with VideoReader(path) as reader:
        return reader.info


def decode_frames(path: str, indices: Sequence[int], *, threads: bool = False) -> torch.Tensor:
    """Frames of ``path`` at ``indices``, ``uint8 (T, H, W, 3)`` RGB (see :meth:`VideoReader.frames`)."""
    with VideoReader(path, threads=threads) as reader:
        return reader.frames(indices)


def sample_clip_indices(info: VideoInfo, num_frames: int, sampling_rate: int, target_fps: float,
                        clip_idx: int = -1, num_clips: int = 1, *, use_offset: bool = False,
                        rng=None) -> Tuple[List[int], float, float]:
    """Frame indices of one clip of the video described by ``info`` (see ``sampling``): ``(indices, start, end)``."""
    size = clip_size_frames(num_frames, sampling_rate, target_fps, info.fps)
    start, end = get_start_end_idx(info.num_frames, size, clip_idx, num_clips, use_offset=use_offset, rng=rng)
    return clip_frame_indices(start, end, num_frames, info.num_frames), start, end


def decode_clip(path: str, num_frames: int, sampling_rate: int, target_fps: float = 30, clip_idx: int = -1,
                num_clips: int = 1, *, use_offset: bool = False, threads: bool = False, rng=None) -> torch.Tensor:
    """One clip of ``path`` sampled like the dataset does: ``uint8 (num_frames, H, W, 3)`` RGB.

    Args:
        path: the video.
        num_frames, sampling_rate, target_fps: ``DATA.NUM_FRAMES``, ``DATA.SAMPLING_RATE``, ``DATA.TARGET_FPS``.
        clip_idx: -1 for a random clip, else the index of one of ``num_clips`` uniformly spread clips.
        num_clips: ``TEST.NUM_ENSEMBLE_VIEWS``.
        use_offset: ``DATA.USE_OFFSET_SAMPLING``.
        threads: multi-threaded decoding.
        rng: a ``random.Random`` for random clips.

    Raises:
        VideoDecodeError: the file cannot be read.
    """
    with VideoReader(path, threads=threads) as reader:
        if not reader.info.has_video:
            raise VideoDecodeError(path, "no video stream (audio-only or data file)")
        indices, _, _ = sample_clip_indices(reader.info, num_frames, sampling_rate, target_fps, clip_idx, num_clips,
                                            use_offset=use_offset, rng=rng)
        return reader.frames(indices)


BACKENDS = ("pyav", "torchcodec")
# DATA.DECODING_BACKEND values accepted for PySlowFast configs, and the backend that serves them.
BACKEND_ALIASES = {"torchvision": "pyav"}
TORCHCODEC_INSTALL = ('pip install torchcodec, and the FFmpeg libraries it loads: apt-get install -y ffmpeg '
                      '(or conda install -c conda-forge "ffmpeg<8")')
_torchcodec_state: Dict[str, Any] = {}


def torchcodec_status() -> Tuple[bool, str]:
    """Whether TorchCodec can decode here: ``(True, version)`` or ``(False, why)`` (not installed, or no FFmpeg
    libraries it can load). Checked once per process."""
    if "ok" not in _torchcodec_state:
        try:
            import torchcodec
            from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads the FFmpeg-linked core)

            _torchcodec_state.update(ok=True, why=f"torchcodec {torchcodec.__version__}")
        except Exception as err:  # ImportError, or RuntimeError/OSError when no FFmpeg library loads
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            _torchcodec_state.update(ok=False, why=f"{type(err).__name__}: {first[:300]}")
    return _torchcodec_state["ok"], _torchcodec_state["why"]


def resolve_backend(name: str, key: str = "DATA.DECODING_BACKEND") -> str:
    """The backend that decodes for the configured ``name``: ``pyav`` or ``torchcodec``.

    ``torchvision`` maps to ``pyav`` (logged); ``torchcodec`` where TorchCodec cannot decode falls back to ``pyav``
    with a warning naming ``key``, the reason and the install line.

    Raises:
        ValueError: an unknown name, naming ``key`` and the valid values.
    """
    value = str(name).lower()
    if value in BACKEND_ALIASES:
        logger.info("%s = %s: torchvision's video reader is gone (torchvision >= 0.28); decoding with PyAV", key,
                    name)
        return BACKEND_ALIASES[value]
    if value not in BACKENDS:
        raise ValueError(f"{key} = {name!r}: unknown video decoder; valid: {list(BACKENDS) + list(BACKEND_ALIASES)}")
    if value == "torchcodec":
        ok, why = torchcodec_status()
        if not ok:
            logger.warning("%s = torchcodec, but TorchCodec cannot decode here (%s); decoding with PyAV instead. "
                           "To use it: %s", key, why, TORCHCODEC_INSTALL)
            return "pyav"
    return value


class TorchCodecReader(_ClosingReader):
    """:class:`VideoReader`'s interface (``info``, ``frames(indices)``, ``close``, context manager) over TorchCodec's
    ``VideoDecoder`` in exact seek mode: frame ``i`` is the ``i``-th frame in presentation order, which for
    constant-rate streams is PyAV's frame ``i`` (``tests/test_data_decoder_backends.py``).

    Raises:
        VideoDecodeError: missing, empty or unreadable file, or no video stream.
    """

    def __init__(self, path: str, *, threads: bool = False):
        from torchcodec.decoders import VideoDecoder

        self.path = path
        local = _local_path(path)
        try:
            self._decoder = VideoDecoder(local, dimension_order="NHWC", seek_mode="exact",
                                         num_ffmpeg_threads=0 if threads else 1)
        except Exception as e:  # torchcodec raises RuntimeError / ValueError for bad files and missing streams
            raise VideoDecodeError(path, f"cannot open as a video ({type(e).__name__}: {e})") from e
        md = self._decoder.metadata
        fps = float(md.average_fps or 0.0)
        num_frames = int(md.num_frames or 0)
        if fps <= 0:
            raise VideoDecodeError(path, "video stream has no frame rate")
        if num_frames <= 0:
            raise VideoDecodeError(path, "video stream holds no frames")
        self.info = VideoInfo(path, True, fps, num_frames, int(md.width), int(md.height), num_frames / fps,
                              str(md.codec or ""))
        self.last_decoded = 0

    def close(self) -> None:
        self._decoder = None

    def frames(self, indices: Sequence[int]) -> torch.Tensor:
        """RGB frames at ``indices``, ``uint8 (len(indices), H, W, 3)``; indices past the end get the last frame
        (with a warning), as :meth:`VideoReader.frames`."""
        if len(indices) == 0:
            raise ValueError("frames(): no indices requested")
        last = self.info.num_frames - 1
        wanted = sorted(set(int(i) for i in indices))
        past_end = [i for i in wanted if i > last]
        if past_end:
            logger.warning("%s: frames %s are past the last frame; repeated it (%d frames)", self.path, past_end,
                           self.info.num_frames)
        read = sorted(set(min(i, last) for i in wanted))
        try:
            batch = self._decoder.get_frames_at(indices=read).data
        except Exception as e:
            raise VideoDecodeError(self.path, f"decoding frames {read[0]}..{read[-1]} failed "
                                              f"({type(e).__name__}: {e})") from e
        self.last_decoded = len(read)
        position = {i: k for k, i in enumerate(read)}
        return batch[[position[min(int(i), last)] for i in indices]].contiguous()


def open_video(path: str, *, backend: str = "pyav", threads: bool = False):
    """A reader of ``path`` for a resolved backend (:func:`resolve_backend`): :class:`VideoReader` (``pyav``) or
    :class:`TorchCodecReader` (``torchcodec``)."""
    if backend == "torchcodec":
        return TorchCodecReader(path, threads=threads)
    if backend != "pyav":
        raise ValueError(f"unknown decoding backend {backend!r}; valid: {list(BACKENDS)}")
    return VideoReader(path, threads=threads)
