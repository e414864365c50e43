"""Synthetic multi-tempo videos: classes told apart only by the time scale and rhythm of a motion.

Every clip shows one "actor" (a disc, square or diamond) that moves back and forth between two random points
over a static textured background, with small distractor objects drifting at random speeds and per-pixel noise.
Appearance (shape, size, colours, position, direction, stroke length, background, noise, distractors) is drawn
from the same distribution for every class; a class fixes only two temporal factors of the actor's motion:

- tempo: the duration of one stroke from one end point to the other (fast 0.10-0.17 s, medium 0.23-0.30 s,
  slow 0.43-0.60 s);
- rhythm: continuous (the next stroke starts at once) or intermittent (a 0.33-0.53 s pause at each end point).

So no single frame reveals the class: it takes short-range motion (speed) and long-range structure (pauses)
together, the multi-temporal cue MTNet is built for (Stergiou & Poppe, IJCNN 2021, Sec. I). Timings are in
seconds and converted with the clip's fps; at 30 fps a 32-frame window always contains both a stroke and,
for intermittent classes, a pause.

The folder layout is the Kinetics one read by the csv dataset:

- ``{train,val,test}.csv``: ``<path> <label>`` lines. Paths are absolute by default, so the lists work with
  ``DATA.PATH_PREFIX`` empty from any working directory; with ``relative_paths`` they are relative to the folder,
  which can then be moved, and ``DATA.PATH_PREFIX`` must name it;
- ``classes.txt``: one class name per line, in label order;
- ``metadata.json``: the generation parameters and class definitions;
- the videos, ``{split}/{class}/{split}_{class}_{k}.mp4`` (H.264, yuv420p).
"""
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from mtnet_plugin.data.video_io import write_video

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
LIST_FILES = tuple(f"{split}.csv" for split in SPLITS)
GENERATOR_VERSION = 1

_FAST, _MEDIUM, _SLOW = (0.10, 0.17), (0.23, 0.30), (0.43, 0.60)
_NO_PAUSE, _PAUSE = (0.0, 0.0), (0.33, 0.53)
# Appearance ranges shared by all classes, as fractions of the frame height (stroke: of the shorter side).
_ACTOR_RADIUS = (0.12, 0.18)
_STROKE_LENGTH = (0.4, 0.7)
_DISTRACTOR_RADIUS = (0.03, 0.06)
_DISTRACTOR_SPEED = (0.1, 0.9)  # frame heights per second


@dataclasses.dataclass(frozen=True)
class MotionClass:
    """One class: the actor's stroke duration and pause duration ranges, in seconds."""

    name: str
    stroke_s: Tuple[float, float]
    pause_s: Tuple[float, float]
    description: str


CLASSES = (
    MotionClass("fast_continuous", _FAST, _NO_PAUSE, "quick strokes back and forth without pause (fast repetition)"),
    MotionClass("slow_continuous", _SLOW, _NO_PAUSE, "slow strokes back and forth without pause (prolonged motion)"),
    MotionClass("fast_intermittent", _FAST, _PAUSE, "brief quick moves separated by pauses"),
    MotionClass("slow_intermittent", _SLOW, _PAUSE, "prolonged slow moves separated by pauses"),
    MotionClass("medium_continuous", _MEDIUM, _NO_PAUSE, "medium-speed strokes without pause"),
    MotionClass("medium_intermittent", _MEDIUM, _PAUSE, "medium-speed moves separated by pauses"),
)


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Generation parameters; counts are clips per class.

    Attributes:
        num_classes: the first ``num_classes`` entries of ``CLASSES`` (2..6).
        num_train, num_val, num_test: clips per class in each split.
        frames: frames per video.
        height: frame height; ``width`` 0 means round(4 * height / 3) rounded to even.
        fps: frame rate of the files, used to convert the class timings from seconds to frames.
        seed: the same seed and parameters give the same videos and lists.
        noise_std: per-pixel Gaussian noise std is drawn in [0, noise_std] per clip (0..255 scale).
        max_distractors: each clip has 0..max_distractors drifting distractor objects.
        codec, crf: encoder settings passed to ``write_video``.
        relative_paths: list paths relative to the folder (set ``DATA.PATH_PREFIX`` to it) instead of absolute.
    """

    num_classes: int = 4
    num_train: int = 100
    num_val: int = 20
    num_test: int = 25
    frames: int = 48
    height: int = 32
    width: int = 0
    fps: int = 30
    seed: int = 0
    noise_std: float = 10.0
    max_distractors: int = 3
    codec: str = "libx264"
    crf: int = 20
    relative_paths: bool = False

    def __post_init__(self):
        if not 2 <= self.num_classes <= len(CLASSES):
            raise ValueError(f"num_classes must be in [2, {len(CLASSES)}], got {self.num_classes}")
        if min(self.num_train, self.num_val, self.num_test) < 0 or self.frames < 2 or self.height < 16:
            raise ValueError(f"invalid synthetic spec {self}")
        if not self.width:
            object.__setattr__(self, "width", 2 * round(2 * self.height / 3))

    @property
    def class_names(self) -> List[str]:
        return [c.name for c in CLASSES[: self.num_classes]]

    def counts(self) -> Dict[str, int]:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}

    @property
    def num_videos(self) -> int:
        return self.num_classes * sum(self.counts().values())


def spec_from_cfg(cfg) -> SyntheticSpec:
    """The ``SyntheticSpec`` described by ``cfg.SYNTHETIC`` (see ``mtnet_plugin/config/synthetic.py``)."""
    s = cfg.SYNTHETIC
    return SyntheticSpec(
        num_classes=int(s.NUM_CLASSES), num_train=int(s.NUM_TRAIN), num_val=int(s.NUM_VAL),
        num_test=int(s.NUM_TEST), frames=int(s.FRAMES), height=int(s.SIZE), width=int(s.WIDTH),
        fps=int(s.FPS), seed=int(s.SEED), noise_std=float(s.NOISE_STD), max_distractors=int(s.MAX_DISTRACTORS),
    )


# ----------------------------------------------------------------------------------------------- rendering
def _ease(u: np.ndarray) -> np.ndarray:
    """Cosine ease-in/out from 0 to 1 over u in [0, 1]: the velocity rises and falls smoothly."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(u, 0.0, 1.0))


def _stroke_profile(num_frames: int, stroke: float, pause: float, phase: float) -> np.ndarray:
    """Fraction of the way from end point A to B at each frame, (T,): eased strokes separated by pauses."""
    cycle = 2.0 * (stroke + pause)
    s = (np.arange(num_frames) + phase) % cycle
    w = np.empty(num_frames)
    out = s < stroke  # A -> B
    w[out] = _ease(s[out] / stroke)
    at_b = (s >= stroke) & (s < stroke + pause)
    w[at_b] = 1.0
    back = (s >= stroke + pause) & (s < 2 * stroke + pause)  # B -> A
    w[back] = 1.0 - _ease((s[back] - stroke - pause) / stroke)
    w[s >= 2 * stroke + pause] = 0.0
    return w


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A static textured background, (H, W, 3) float: smooth colour blotches plus oriented stripes."""
    g = int(rng.integers(3, 7))
    grid = rng.uniform(40, 200, size=3) + rng.normal(0, 35, size=(g, g, 3))
    ys, xs = np.linspace(0, g - 1, h), np.linspace(0, g - 1, w)
    y0, x0 = np.minimum(ys.astype(int), g - 2), np.minimum(xs.astype(int), g - 2)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    bg = top * (1 - fy) + bottom * fy
    theta, freq = rng.uniform(0, np.pi), rng.uniform(0.08, 0.35)
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 2 * np.pi))
    return bg + rng.uniform(0, 25) * stripes[..., None]


def _contrasting_colour(rng: np.random.Generator, against: np.ndarray, min_dist: float = 110.0) -> np.ndarray:
    colour = rng.uniform(0, 255, size=3)
    for _ in range(100):
        if np.linalg.norm(colour - against) >= min_dist:
            break
        colour = rng.uniform(0, 255, size=3)
    return colour


def _paint(canvas: np.ndarray, cy: np.ndarray, cx: np.ndarray, radius: float, shape: int, colour: np.ndarray):
    """Alpha-blend an anti-aliased object centred at (cy[t], cx[t]) into canvas (T, H, W, 3) in place."""
    t, h, w = canvas.shape[:3]
    dy = np.abs(np.arange(h)[None, :, None] - cy[:, None, None])
    dx = np.abs(np.arange(w)[None, None, :] - cx[:, None, None])
    if shape == 0:
        d = np.sqrt(dy * dy + dx * dx)
    elif shape == 1:
        d = np.maximum(dy, dx)
    else:
        d = (dy + dx) / 1.3
    alpha = np.clip(radius + 0.5 - d, 0.0, 1.0)[..., None]
    canvas *= 1.0 - alpha
    canvas += alpha * colour


def _distractor_track(rng: np.random.Generator, spec: SyntheticSpec, radius: float) -> Tuple[np.ndarray, np.ndarray]:
    """Positions (T,), (T,) of an object drifting at a constant random velocity and bouncing off the borders."""
    h, w = spec.height, spec.width
    speed = rng.uniform(*_DISTRACTOR_SPEED) * h / spec.fps  # pixels per frame
    angle = rng.uniform(0, 2 * np.pi)
    out = []
    for size, start, v in ((h, rng.uniform(radius, h - radius), speed * np.sin(angle)),
                           (w, rng.uniform(radius, w - radius), speed * np.cos(angle))):
        span = size - 2 * radius
        p = (start - radius + v * np.arange(spec.frames)) % (2 * span)  # unfold the bounces
        out.append(radius + np.where(p > span, 2 * span - p, p))
    return out[0], out[1]


def render_clip(rng: np.random.Generator, spec: SyntheticSpec, label: int) -> np.ndarray:
    """Draw one clip of class ``label``.

    Returns:
        uint8 RGB frames, (T, H, W, 3) with T = spec.frames, H = spec.height, W = spec.width.
    """
    h, w, t = spec.height, spec.width, spec.frames
    motion = CLASSES[label]
    bg = _background(rng, h, w)
    canvas = np.repeat(bg[None], t, axis=0)
    # Distractors first (behind the actor): small, class-independent constant drift.
    for _ in range(int(rng.integers(0, spec.max_distractors + 1))):
        r = rng.uniform(*_DISTRACTOR_RADIUS) * h
        cy, cx = _distractor_track(rng, spec, r)
        _paint(canvas, cy, cx, r, int(rng.integers(3)), _contrasting_colour(rng, bg.mean((0, 1)), 60.0))
    # The actor: its appearance and path are class-independent, only its timing is the class.
    r = rng.uniform(*_ACTOR_RADIUS) * h
    length = rng.uniform(*_STROKE_LENGTH) * min(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = length * np.sin(angle), length * np.cos(angle)
    fit = min(1.0, (h - 2 * r) / max(abs(dy), 1e-6), (w - 2 * r) / max(abs(dx), 1e-6))  # keep both ends inside
    dy, dx = dy * fit, dx * fit
    y_a = rng.uniform(r + max(0.0, -dy), h - r - max(0.0, dy))
    x_a = rng.uniform(r + max(0.0, -dx), w - r - max(0.0, dx))
    stroke = rng.uniform(*motion.stroke_s) * spec.fps
    pause = rng.uniform(*motion.pause_s) * spec.fps
    frac = _stroke_profile(t, stroke, pause, rng.uniform(0, 2 * (stroke + pause)))
    _paint(canvas, y_a + dy * frac, x_a + dx * frac, r, int(rng.integers(3)), _contrasting_colour(rng, bg.mean((0, 1))))
    canvas += rng.normal(0.0, rng.uniform(0, spec.noise_std), size=canvas.shape)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- the folder
def _clip_rng(seed: int, split: str, label: int, k: int) -> np.random.Generator:
    """An independent stream per clip, so a clip does not depend on the other splits' counts."""
    return np.random.default_rng([seed, SPLITS.index(split), label, k])


def has_lists(data_dir: str) -> bool:
    """Whether ``data_dir`` holds ``train.csv``, ``val.csv`` and ``test.csv``."""
    return all(os.path.isfile(os.path.join(data_dir, name)) for name in LIST_FILES)


def _write_dataset(root: str, final_root: str, spec: SyntheticSpec,
                   progress: Optional[Callable[[int, int], None]]) -> None:
    """Write everything into ``root``; absolute list paths name ``final_root``, where ``root`` will be moved."""
    total, done = spec.num_videos, 0
    for split, count in spec.counts().items():
        rows = []
        for label, name in enumerate(spec.class_names):
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
            for k in range(count):
                rel = f"{split}/{name}/{split}_{name}_{k:04d}.mp4"
                frames = render_clip(_clip_rng(spec.seed, split, label, k), spec, label)
                write_video(os.path.join(root, rel), frames, fps=spec.fps, codec=spec.codec, crf=spec.crf)
                rows.append(f"{rel if spec.relative_paths else os.path.join(final_root, rel)} {label}")
                done += 1
                if progress is not None:
                    progress(done, total)
        order = np.random.default_rng([spec.seed, SPLITS.index(split), len(CLASSES)]).permutation(len(rows))
        with open(os.path.join(root, f"{split}.csv"), "w") as f:
            f.writelines(rows[i] + "\n" for i in order)
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.writelines(name + "\n" for name in spec.class_names)
    meta = {
        "generator": "mtnet_plugin.data.synthetic",
        "version": GENERATOR_VERSION,
        "spec": dataclasses.asdict(spec),
        "classes": [dataclasses.asdict(c) for c in CLASSES[: spec.num_classes]],
        "num_videos": {split: n * spec.num_classes for split, n in spec.counts().items()},
    }
    with open(os.path.join(root, "metadata.json"), "w") as f:
        json.dump(meta, f, indent=2)


def generate_synthetic_dataset(
    out_dir: str, spec: SyntheticSpec = SyntheticSpec(), progress: Optional[Callable[[int, int], None]] = None
) -> str:
    """Write the dataset into ``out_dir`` atomically and return its absolute path.

    The files are written into a hidden temporary sibling folder that is renamed to ``out_dir`` at the end, so an
    interrupted run never leaves a folder that looks complete. If another process completes the same folder first,
    its result is kept.

    Args:
        out_dir: destination; it must not exist or be an empty folder.
        spec: what to generate.
        progress: optional ``progress(done, total)`` called after each video.

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty.
    """
    out_dir = os.path.abspath(out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir) or os.path.isfile(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose a new folder or remove it")
    if not spec.relative_paths and " " in out_dir:
        raise ValueError(f"{out_dir!r} contains a space, the list separator: use relative paths or another folder")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
    try:
        _write_dataset(tmp, out_dir, spec, progress)
        try:
            os.rename(tmp, out_dir)  # atomic; replaces an empty folder, fails on a non-empty one
        except OSError:
            if not has_lists(out_dir):
                raise
            logger.info("%s was completed by another process; keeping it", out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def ensure_synthetic_dataset(cfg) -> Optional[str]:
    """Generate the synthetic dataset into ``cfg.DATA.PATH_TO_DATA_DIR`` if ``cfg.SYNTHETIC.ENABLE`` asks for it.

    A folder that already holds ``train.csv``, ``val.csv`` and ``test.csv`` is used as it is (any dataset with the
    Kinetics layout); a missing or empty one is generated from ``cfg.SYNTHETIC``. Call it once, before the
    data loaders (and the worker processes) are started.

    Returns:
        The data folder, or None when ``SYNTHETIC.ENABLE`` is off.

    Raises:
        ValueError: ``MODEL.NUM_CLASSES`` differs from ``SYNTHETIC.NUM_CLASSES`` when generating.
        FileExistsError: the folder is not empty but has no lists (it is never overwritten).
    """
    if "SYNTHETIC" not in cfg or not cfg.SYNTHETIC.ENABLE:
        return None
    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    spec = spec_from_cfg(cfg)
    if has_lists(data_dir):
        _warn_if_other_spec(data_dir, spec)
        return data_dir
    if int(cfg.MODEL.NUM_CLASSES) != spec.num_classes:
        raise ValueError(
            f"MODEL.NUM_CLASSES={cfg.MODEL.NUM_CLASSES} but SYNTHETIC.NUM_CLASSES={spec.num_classes}: set them equal"
        )
    logger.info("Generating the synthetic dataset (%d videos) into %s: %s", spec.num_videos, data_dir, spec)
    step = max(1, spec.num_videos // 10)

    def _log(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            logger.info("synthetic dataset: %d/%d videos", done, total)

    generate_synthetic_dataset(data_dir, spec, _log)
    return data_dir


def _warn_if_other_spec(data_dir: str, spec: SyntheticSpec) -> None:
    path = os.path.join(data_dir, "metadata.json")
    if not os.path.isfile(path):
        logger.info("Using the existing dataset in %s (no metadata.json: not generated here)", data_dir)
        return
    with open(path) as f:
        found = json.load(f).get("spec", {})
    wanted = dataclasses.asdict(spec)
    diff = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
    if diff:
        logger.warning("%s was generated with other SYNTHETIC options (found, configured): %s; using it as it is; "
                       "remove the folder to regenerate", data_dir, diff)
    else:
        logger.info("Using the existing synthetic dataset in %s", data_dir)
