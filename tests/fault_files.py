"""Planting the bad files of the reliability tests (test_faults_*.py, test_data_check.py).

Good clips come from ``write_video`` and the conftest frames. The bad ones are written here on purpose: a zero-byte
file, the first half of an mp4, a text file named .mp4, an audio-only file named .mp4, a faststart mp4 cut in half
(it opens; its last frames are gone). The odd ones the runtime must cope with (one frame, an odd frame size that
``write_video`` would pad, a variable frame rate, a VP9/WebM file named .mp4) are written with PyAV directly.
"""
import os
from fractions import Fraction

import av
import numpy as np

from conftest import moving_square_frames
from mtnet_plugin.data.video_io import write_video

# Files the runtime cannot load at all: a train sample is replaced, a val/test view is failed.
BROKEN = ("missing", "empty", "truncated", "text", "audio_only")
# Files that are odd but usable: the runtime trains and tests on them; check_videos names some of them.
ODD = ("one_frame", "odd_size", "vfr", "wrong_ext")


def good_video(path: str, seed: int = 0, num_frames: int = 12, height: int = 32, width: int = 48,
               fps: int = 10) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_video(path, moving_square_frames(num_frames, height, width, seed, speed=0 if seed % 2 == 0 else 6), fps=fps)
    return path


def _encode(path: str, frames: np.ndarray, *, pix_fmt: str = "yuv420p", pts_ms=None, options=None,
            container_format=None) -> str:
    """Raw PyAV encoding for sizes / timings ``write_video`` does not make (odd sizes, irregular timestamps)."""
    with av.open(path, "w", format=container_format, options=options or {}) as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if pts_ms is not None:
            s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def audio_only(path: str) -> str:
    """An MP2 audio stream in Matroska, named whatever ``path`` says (e.g. .mp4)."""
    with av.open(path, "w", format="matroska") as c:
        s = c.add_stream("mp2", rate=16000)
        s.layout = "mono"
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1152
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def plant(folder: str, kinds=BROKEN + ODD, tag: str = "") -> dict:
    """Write one file of each kind in ``folder``; returns ``{kind: path}`` ("missing" is a path never written)."""
    os.makedirs(folder, exist_ok=True)
    out = {}

    def at(name):
        return os.path.join(folder, f"{tag}{name}")

    for kind in kinds:
        if kind == "missing":
            out[kind] = at("missing.mp4")
        elif kind == "empty":
            out[kind] = at("empty.mp4")
            open(out[kind], "wb").close()
        elif kind == "truncated":
            data = open(good_video(at("whole.tmp.mp4"), seed=5), "rb").read()
            os.remove(at("whole.tmp.mp4"))
            out[kind] = at("truncated.mp4")
            with open(out[kind], "wb") as f:
                f.write(data[: len(data) // 2])
        elif kind == "truncated_faststart":  # moov first: it opens, the header promises frames that are gone
            frames = np.random.default_rng(3).integers(0, 255, (60, 32, 48, 3), dtype=np.uint8)
            whole = _encode(at("fs.tmp.mp4"), frames, options={"movflags": "faststart"})
            data = open(whole, "rb").read()
            os.remove(whole)
            out[kind] = at("truncated_faststart.mp4")
            with open(out[kind], "wb") as f:
                f.write(data[: len(data) // 2])
        elif kind == "text":
            out[kind] = at("text.mp4")
            with open(out[kind], "w") as f:
                f.write("this is a list of words, not a video\n" * 20)
        elif kind == "audio_only":
            out[kind] = audio_only(at("audio_only.mp4"))
        elif kind == "one_frame":
            out[kind] = good_video(at("one_frame.mp4"), seed=1, num_frames=1)
        elif kind == "odd_size":
            frames = moving_square_frames(12, 33, 47, seed=2)
            out[kind] = _encode(at("odd_size.mp4"), frames, pix_fmt="yuv444p")
        elif kind == "vfr":  # 150 ms and 50 ms frame durations alternate (10 fps on average, as declared)
            pts = np.cumsum([0] + [50 if i % 2 else 150 for i in range(15)]).tolist()
            out[kind] = _encode(at("vfr.mkv"), moving_square_frames(16, 32, 48, seed=3), pts_ms=pts)
        elif kind == "wrong_ext":  # VP9 in WebM, named .mp4: FFmpeg probes the content
            webm = at("wrong_ext.webm")
            os.makedirs(folder, exist_ok=True)
            write_video(webm, moving_square_frames(12, 32, 48, seed=4), fps=10, codec="libvpx-vp9")
            out[kind] = at("wrong_ext.mp4")
            os.replace(webm, out[kind])
        else:
            raise ValueError(f"unknown bad-file kind {kind!r}")
    return out


def write_list(path: str, entries) -> str:
    """``entries``: (video path, label) pairs -> a space-separated list file."""
    with open(path, "w") as f:
        f.write("".join(f"{p} {label}\n" for p, label in entries))
    return path


def tiny_cfg_dict(data_dir: str, output_dir: str, **sections) -> dict:
    """A tiny CPU run as a YAML-able dict: X3D (width 0.5, depth 0.2), 2 classes, 4 frames at 32 px, 1 view.

    ``sections`` update nodes (``SOLVER={"MAX_EPOCH": 3}``) or set top-level keys.
    """
    cfg = {
        "TRAIN": {"ENABLE": True, "BATCH_SIZE": 4, "EVAL_PERIOD": 1, "CHECKPOINT_PERIOD": 1, "AUTO_RESUME": True},
        "TEST": {"ENABLE": False, "BATCH_SIZE": 4, "NUM_ENSEMBLE_VIEWS": 1, "NUM_SPATIAL_CROPS": 1},
        "DATA": {"PATH_TO_DATA_DIR": data_dir, "NUM_FRAMES": 4, "SAMPLING_RATE": 2, "TARGET_FPS": 10,
                 "TRAIN_JITTER_SCALES": [32, 32], "TRAIN_CROP_SIZE": 32, "TEST_CROP_SIZE": 32,
                 "INPUT_CHANNEL_NUM": [3], "DECODE_RETRIES": 0},
        "MODEL": {"MODEL_NAME": "X3D", "ARCH": "x3d", "NUM_CLASSES": 2, "DROPOUT_RATE": 0.0},
        "X3D": {"WIDTH_FACTOR": 0.5, "DEPTH_FACTOR": 0.2, "DIM_C1": 4, "DIM_C5": 16, "BOTTLENECK_FACTOR": 1.0},
        "SOLVER": {"BASE_LR": 0.05, "LR_POLICY": "cosine", "MAX_EPOCH": 2, "WARMUP_EPOCHS": 0.0,
                   "OPTIMIZING_METHOD": "sgd", "WEIGHT_DECAY": 0.0},
        "BN": {"USE_PRECISE_STATS": False},
        "DATA_LOADER": {"NUM_WORKERS": 0, "PIN_MEMORY": False},
        "NUM_GPUS": 0,
        "LOG_PERIOD": 1,
        "RNG_SEED": 0,
        "OUTPUT_DIR": output_dir,
    }
    for node, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(node, {}).update(values)
        else:
            cfg[node] = values
    return cfg


def write_yaml(path: str, data: dict) -> str:
    import yaml

    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return path


class FaultNotHandled(AssertionError):
    """The runtime mishandles the injected fault. Tests of known, reported faults are
    ``xfail(strict=True, raises=FaultNotHandled)``: any other failure (a broken set-up) still fails them."""


def expect_handled(condition: bool, message: str) -> None:
    """Assert the behaviour the fault's row in docs/reliability.md promises."""
    if not condition:
        raise FaultNotHandled(message)
