"""Synthetic multi-tempo videos: classes told apart only by the temporal structure of a motion.

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

That default class family is the preset "tempo". ``PRESETS`` holds further families, each testing another kind
of temporal structure with the same appearance model: "direction" (the way the actor crosses the frame; random
flips must be off), "duration" (how long each move lasts at a shared speed), "rate" (oscillation frequency at a
shared peak speed), "order" (quick-then-slow vs slow-then-quick strokes, each other's time reversal) and
"pauses" (where and how long the actor stops). docs/synthetic.md describes them.

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
from typing import Callable, Dict, List, Optional, Sequence, Tuple

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
    """One class: how the actor moves. ``pattern`` names the track generator (``_TRACKS``); ``stroke_s`` and
    ``pause_s`` are the stroke and end-pause duration ranges in seconds of the "strokes" pattern (the other
    patterns read their settings from ``params``, a tuple of (name, value) pairs)."""

    name: str
    stroke_s: Tuple[float, float]
    pause_s: Tuple[float, float]
    description: str
    pattern: str = "strokes"
    params: Tuple[Tuple[str, object], ...] = ()

    def param(self, key: str):
        return dict(self.params)[key]


CLASSES = (
    MotionClass("fast_continuous", _FAST, _NO_PAUSE, "quick strokes back and forth without pause (fast repetition)"),
    MotionClass("slow_continuous", _SLOW, _NO_PAUSE, "slow strokes back and forth without pause (prolonged motion)"),
    MotionClass("fast_intermittent", _FAST, _PAUSE, "brief quick moves separated by pauses"),
    MotionClass("slow_intermittent", _SLOW, _PAUSE, "prolonged slow moves separated by pauses"),
    MotionClass("medium_continuous", _MEDIUM, _NO_PAUSE, "medium-speed strokes without pause"),
    MotionClass("medium_intermittent", _MEDIUM, _PAUSE, "medium-speed moves separated by pauses"),
)

_NONE = (0.0, 0.0)
_PAUSE_STROKE = (0.20, 0.33)  # the pause family's stroke: the same range for every class
_FAST_EVENT, _SLOW_EVENT, _SHORT_GAP, _LONG_GAP = (0.10, 0.15), (0.40, 0.50), (0.07, 0.13), (0.33, 0.43)


def _sweep(name: str, angle_deg: float, description: str) -> MotionClass:
    return MotionClass(name, _NONE, _NONE, description, "sweep", (("angle_deg", angle_deg),))


def _event_pair(name: str, first: Tuple[float, float], second: Tuple[float, float], description: str) -> MotionClass:
    return MotionClass(name, _NONE, _NONE, description, "event_pair", (("first_s", first), ("second_s", second)))


# Class families. Each fixes one kind of temporal structure and draws everything else (appearance, end points,
# speeds where they are not the class, phase) from one distribution shared by its classes.
PRESETS: Dict[str, Tuple[MotionClass, ...]] = {
    # tempo x rhythm: stroke duration (fast / slow / medium) and whether the actor pauses at the end points.
    "tempo": CLASSES,
    # direction: the actor crosses the frame left to right, right to left, top to bottom or bottom to top
    # (+-15 degrees) and re-enters on the other side. Direction is the label: horizontal flips must be off.
    "direction": (
        _sweep("left_to_right", 0.0, "crosses the frame from left to right, again and again"),
        _sweep("right_to_left", 180.0, "crosses the frame from right to left, again and again"),
        _sweep("top_to_bottom", 90.0, "crosses the frame from top to bottom, again and again"),
        _sweep("bottom_to_top", 270.0, "crosses the frame from bottom to top, again and again"),
    ),
    # duration: each move lasts 0.07-0.13 s, 0.20-0.27 s or 0.37-0.45 s at the same speed (1.2-1.6 frame heights
    # per second, so the distance covered grows with it), in a half-cycle of the same 0.5-0.6 s for every class.
    "duration": tuple(
        MotionClass(name, _NONE, _NONE, desc, "moves", (("move_s", move),))
        for name, move, desc in (
            ("brief_moves", (0.07, 0.13), "short moves at a shared speed, then stillness"),
            ("medium_moves", (0.20, 0.27), "medium-length moves at a shared speed, then stillness"),
            ("long_moves", (0.37, 0.45), "long moves at a shared speed, then short stillness"),
        )
    ),
    # rate: a sinusoidal oscillation at 0.8-1.0, 1.6-2.0 or 3.2-4.0 Hz whose peak speed is the same for every
    # class (1.2-1.6 frame heights per second; the amplitude shrinks as the rate grows).
    "rate": tuple(
        MotionClass(name, _NONE, _NONE, desc, "oscillation", (("rate_hz", rate),))
        for name, rate, desc in (
            ("slow_oscillation", (0.8, 1.0), "a wide swing about once a second"),
            ("medium_oscillation", (1.6, 2.0), "a swing about twice a second"),
            ("fast_oscillation", (3.2, 4.0), "a small quick shake 3-4 times a second"),
        )
    ),
    # order: a quick stroke and a slow stroke in a repeating cycle; the short gap follows the quick stroke
    # (quick-then-slow) or the slow one (slow-then-quick). The two classes are each other's time reversal, so
    # they have the same speeds, durations and pauses: only the order of events tells them apart.
    "order": (
        _event_pair("quick_then_slow", _FAST_EVENT, _SLOW_EVENT, "a quick stroke, a short gap, a slow stroke back, "
                    "a long gap"),
        _event_pair("slow_then_quick", _SLOW_EVENT, _FAST_EVENT, "a slow stroke, a short gap, a quick stroke back, "
                    "a long gap"),
    ),
    # pauses: strokes of one shared duration (0.20-0.33 s) with no pause, a short (0.10-0.17 s) or long (0.40-0.53 s)
    # pause at each end point, or a 0.27-0.40 s pause halfway along each stroke.
    "pauses": (
        MotionClass("no_pause", _PAUSE_STROKE, _NONE, "strokes back and forth without pause"),
        MotionClass("short_end_pause", _PAUSE_STROKE, (0.10, 0.17), "a short pause at each end point"),
        MotionClass("long_end_pause", _PAUSE_STROKE, (0.40, 0.53), "a long pause at each end point"),
        MotionClass("mid_stroke_pause", _PAUSE_STROKE, _NONE, "a pause halfway along each stroke", "strokes",
                    (("mid_pause_s", (0.27, 0.40)),)),
    ),
}
DEFAULT_PRESET = "tempo"
# Presets whose label is a direction in the image: horizontal flips (DATA.RANDOM_FLIP) would change the label.
FLIP_SENSITIVE_PRESETS = ("direction",)


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Generation parameters; counts are clips per class.

    Attributes:
        num_classes: the first ``num_classes`` classes of the preset (2..its number of classes).
        num_train, num_val, num_test: clips per class in each split.
        frames: frames per video.
        height: frame height; ``width`` 0 means round(4 * height / 3) rounded to even.
        fps: frame rate of the files, used to convert the class timings from seconds to frames.
        seed: the same seed and parameters give the same videos and lists.
        noise_std: per-pixel Gaussian noise std is drawn in [0, noise_std] per clip (0..255 scale).
        max_distractors: each clip has 0..max_distractors drifting distractor objects.
        codec, crf: encoder settings passed to ``write_video``.
        relative_paths: list paths relative to the folder (set ``DATA.PATH_PREFIX`` to it) instead of absolute.
        preset: the class family, a key of ``PRESETS`` ("tempo", the default, is ``CLASSES``).
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
    preset: str = DEFAULT_PRESET

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown synthetic preset {self.preset!r}; valid: {', '.join(PRESETS)}")
        if not 2 <= self.num_classes <= len(self.classes):
            raise ValueError(f"num_classes must be in [2, {len(self.classes)}] for preset {self.preset!r}, "
                             f"got {self.num_classes}")
        if min(self.num_train, self.num_val, self.num_test) < 0 or self.frames < 2 or self.height < 16:
            raise ValueError(f"invalid synthetic spec {self}")
        if not self.width:
            object.__setattr__(self, "width", 2 * round(2 * self.height / 3))

    @property
    def classes(self) -> Tuple[MotionClass, ...]:
        """The preset's classes, all of them (the data set uses the first ``num_classes``)."""
        return PRESETS[self.preset]

    @property
    def class_names(self) -> List[str]:
        return [c.name for c in self.classes[: self.num_classes]]

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
        preset=str(s.get("PRESET", DEFAULT_PRESET)),
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


def _segments_profile(num_frames: int, segments: Sequence[Tuple[float, float, float, bool]],
                      phase: float) -> np.ndarray:
    """A cyclic profile (T,): segments of (duration in frames, start value, end value, eased) played in a loop
    from ``phase`` frames into the cycle; eased segments use ``_ease``, the others move at constant speed."""
    cycle = sum(seg[0] for seg in segments)
    s = (np.arange(num_frames) + phase) % cycle
    w = np.zeros(num_frames)
    start = 0.0
    for duration, w0, w1, eased in segments:
        inside = (s >= start) & (s < start + duration)
        u = (s[inside] - start) / max(duration, 1e-9)
        w[inside] = w0 + (w1 - w0) * (_ease(u) if eased else u)
        start += duration
    return w


def _end_points(rng: np.random.Generator, spec: SyntheticSpec, r: float, length: float):
    """A random stroke of ``length`` pixels (shortened to fit) whose both ends keep the actor inside the frame.
    Returns (y_a, x_a, dy, dx): end point A and the vector to end point B."""
    h, w = spec.height, spec.width
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = length * np.sin(angle), length * np.cos(angle)
    fit = min(1.0, (h - 2 * r) / max(abs(dy), 1e-6), (w - 2 * r) / max(abs(dx), 1e-6))  # keep both ends inside
    dy, dx = dy * fit, dx * fit
    y_a = rng.uniform(r + max(0.0, -dy), h - r - max(0.0, dy))
    x_a = rng.uniform(r + max(0.0, -dx), w - r - max(0.0, dx))
    return y_a, x_a, dy, dx


def _track_strokes(rng: np.random.Generator, spec: SyntheticSpec, motion: MotionClass, r: float):
    """Back and forth between two end points: eased strokes, optional pauses at the ends or mid-stroke."""
    y_a, x_a, dy, dx = _end_points(rng, spec, r, rng.uniform(*_STROKE_LENGTH) * min(spec.height, spec.width))
    stroke = rng.uniform(*motion.stroke_s) * spec.fps
    pause = rng.uniform(*motion.pause_s) * spec.fps
    mid = dict(motion.params).get("mid_pause_s")
    if mid is None:
        frac = _stroke_profile(spec.frames, stroke, pause, rng.uniform(0, 2 * (stroke + pause)))
    else:
        m, half = rng.uniform(*mid) * spec.fps, stroke / 2
        segments = [(half, 0.0, 0.5, True), (m, 0.5, 0.5, False), (half, 0.5, 1.0, True), (pause, 1.0, 1.0, False),
                    (half, 1.0, 0.5, True), (m, 0.5, 0.5, False), (half, 0.5, 0.0, True), (pause, 0.0, 0.0, False)]
        frac = _segments_profile(spec.frames, segments, rng.uniform(0, 2 * (stroke + pause + m)))
    return y_a + dy * frac, x_a + dx * frac


def _track_moves(rng: np.random.Generator, spec: SyntheticSpec, motion: MotionClass, r: float):
    """Constant-speed moves of the class's duration, then stillness, in a half-cycle of 0.5-0.6 s."""
    move = rng.uniform(*motion.param("move_s")) * spec.fps
    speed = rng.uniform(1.0, 1.4) * spec.height / spec.fps  # pixels per frame, the same range for every class
    half = rng.uniform(0.5, 0.6) * spec.fps
    y_a, x_a, dy, dx = _end_points(rng, spec, r, speed * move)
    segments = [(move, 0.0, 1.0, False), (half - move, 1.0, 1.0, False),
                (move, 1.0, 0.0, False), (half - move, 0.0, 0.0, False)]
    frac = _segments_profile(spec.frames, segments, rng.uniform(0, 2 * half))
    return y_a + dy * frac, x_a + dx * frac


def _track_oscillation(rng: np.random.Generator, spec: SyntheticSpec, motion: MotionClass, r: float):
    """A sinusoid along a random axis at the class's rate; peak speed 1.2-1.6 frame heights per second."""
    rate = rng.uniform(*motion.param("rate_hz")) / spec.fps  # cycles per frame
    peak_speed = rng.uniform(1.2, 1.6) * spec.height / spec.fps
    amplitude = peak_speed / (2 * np.pi * rate)
    y_a, x_a, dy, dx = _end_points(rng, spec, r, 2 * amplitude)
    frac = 0.5 + 0.5 * np.sin(2 * np.pi * rate * np.arange(spec.frames) + rng.uniform(0, 2 * np.pi))
    return y_a + dy * frac, x_a + dx * frac


def _track_event_pair(rng: np.random.Generator, spec: SyntheticSpec, motion: MotionClass, r: float):
    """A cycle of: the first stroke (A to B), a short gap, the second stroke back, a long gap."""
    y_a, x_a, dy, dx = _end_points(rng, spec, r, rng.uniform(*_STROKE_LENGTH) * min(spec.height, spec.width))
    first, second = (rng.uniform(*motion.param(k)) * spec.fps for k in ("first_s", "second_s"))
    short, long = rng.uniform(*_SHORT_GAP) * spec.fps, rng.uniform(*_LONG_GAP) * spec.fps
    segments = [(first, 0.0, 1.0, True), (short, 1.0, 1.0, False), (second, 1.0, 0.0, True), (long, 0.0, 0.0, False)]
    frac = _segments_profile(spec.frames, segments, rng.uniform(0, first + short + second + long))
    return y_a + dy * frac, x_a + dx * frac


def _track_sweep(rng: np.random.Generator, spec: SyntheticSpec, motion: MotionClass, r: float):
    """Repeated crossings of the frame in the class's direction (+-15 degrees) at 1.2-2.0 frame heights per
    second: the actor leaves on one side and re-enters on the other."""
    h, w = spec.height, spec.width
    angle = np.deg2rad(motion.param("angle_deg") + rng.uniform(-15.0, 15.0))
    uy, ux = np.sin(angle), np.cos(angle)  # image y points down: 90 degrees is top to bottom
    speed = rng.uniform(1.2, 2.0) * h / spec.fps
    span = abs(w * ux) + abs(h * uy) + 2 * r  # from fully outside on one side to fully outside on the other
    offset = rng.uniform(-0.3, 0.3) * min(h, w)  # across the direction of motion
    s = (rng.uniform(0, span) + speed * np.arange(spec.frames)) % span - span / 2
    return h / 2 + uy * s + ux * offset, w / 2 + ux * s - uy * offset


_TRACKS: Dict[str, Callable] = {
    "strokes": _track_strokes, "moves": _track_moves, "oscillation": _track_oscillation,
    "event_pair": _track_event_pair, "sweep": _track_sweep,
}


def render_clip(rng: np.random.Generator, spec: SyntheticSpec, label: int) -> np.ndarray:
    """Draw one clip of class ``label`` of ``spec.preset``.

    Returns:
        uint8 RGB frames, (T, H, W, 3) with T = spec.frames, H = spec.height, W = spec.width.
    """
    h, w, t = spec.height, spec.width, spec.frames
    motion = spec.classes[label]
    bg = _background(rng, h, w)
    canvas = np.repeat(bg[None], t, axis=0)
    # Distractors first (behind the actor): small, class-independent constant drift.
    for _ in range(int(rng.integers(0, spec.max_distractors + 1))):
        r = rng.uniform(*_DISTRACTOR_RADIUS) * h
        cy, cx = _distractor_track(rng, spec, r)
        _paint(canvas, cy, cx, r, int(rng.integers(3)), _contrasting_colour(rng, bg.mean((0, 1)), 60.0))
    # The actor: its appearance is class-independent, only its track's temporal structure is the class.
    r = rng.uniform(*_ACTOR_RADIUS) * h
    cy, cx = _TRACKS[motion.pattern](rng, spec, motion, r)
    _paint(canvas, cy, cx, r, int(rng.integers(3)), _contrasting_colour(rng, bg.mean((0, 1))))
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
        "classes": [dataclasses.asdict(c) for c in spec.classes[: spec.num_classes]],
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
        ValueError: ``MODEL.NUM_CLASSES`` differs from ``SYNTHETIC.NUM_CLASSES`` when generating, or a preset whose
            label is a direction is asked for with ``DATA.RANDOM_FLIP`` on.
        FileExistsError: the folder is not empty but has no lists (it is never overwritten).
    """
    if "SYNTHETIC" not in cfg or not cfg.SYNTHETIC.ENABLE:
        return None
    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    spec = spec_from_cfg(cfg)
    if spec.preset in FLIP_SENSITIVE_PRESETS and cfg.DATA.get("RANDOM_FLIP", False):
        raise ValueError(f"SYNTHETIC.PRESET {spec.preset!r} labels a direction in the image, which a random "
                         "horizontal flip changes: set DATA.RANDOM_FLIP False (configs/Synthetic/Direction/ does)")
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
    found.setdefault("preset", DEFAULT_PRESET)  # written before presets existed: the tempo classes
    wanted = dataclasses.asdict(spec)
    diff = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
    if diff:
        logger.warning("%s was generated with other SYNTHETIC options (found, configured): %s; using it as it is; "
                       "remove the folder to regenerate", data_dir, diff)
    else:
        logger.info("Using the existing synthetic dataset in %s", data_dir)
