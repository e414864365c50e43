"""Scanning video lists for files the runtime cannot use, with the runtime's own decoder (``tools/check_videos.py``).

Each listed file is opened with :class:`~mtnet_plugin.data.decoder.VideoReader` (the reader training uses) and gets
one verdict, the first problem found, in this order:

``malformed``   the list line itself does not parse (``video_list.parse_line``: no label, bad label, ...).
``missing``     the file does not exist.
``empty``       the file has 0 bytes.
``undecodable`` not a media file PyAV opens, a header without frames, or the first / last frames do not decode
                (a truncated download: the header promises frames that are not there).
``audio_only``  the file has no video stream.
``too_short``   fewer frames than one clip spans at the configured sampling (``DATA.NUM_FRAMES x
                DATA.SAMPLING_RATE`` frames at ``DATA.TARGET_FPS``, converted to the video's fps): the runtime would
                repeat the last frame (PySlowFast semantics), so the clip is not what the config asks for.
``resolution``  the frame size differs from ``expect_size`` or its short side is below ``min_short_side``.
``segment``     the line's segment (``path#t=START,END``, video_list.py) is not inside the video: it starts at or
                after the video's end, or ends more than one frame after it. A segment inside the video that is
                shorter than one clip is ``too_short``.

Only the first and the last frames are decoded (a few frames each, after a seek), so a scan costs about two seeks a
file; damage in the middle of a file is not seen. The runtime itself skips and names broken files while training
(``kinetics.py``); this tool finds them before a run.
"""
import json
import logging
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from iopath.common.file_io import g_pathmgr

from .decoder import VideoDecodeError, VideoReader
from .sampling import clip_size_frames, segment_frames
from .video_list import VideoListError, iter_list_lines, parse_line

logger = logging.getLogger(__name__)

PROBLEM_KINDS = ("malformed", "missing", "empty", "undecodable", "audio_only", "too_short", "resolution", "segment")

# Frames decoded at each end of a file: a small window, so that a variable frame rate (frame indices computed from
# timestamps at the average rate) does not make a good file look truncated.
_END_WINDOW_MIN, _END_WINDOW_MAX = 2, 15


@dataclass(frozen=True)
class CheckSpec:
    """What a usable video must satisfy.

    Attributes:
        num_frames, sampling_rate, target_fps: one clip's sampling (``DATA.NUM_FRAMES``, ``DATA.SAMPLING_RATE``,
            ``DATA.TARGET_FPS``); ``num_frames = 0`` skips the length check.
        expect_size: required ``(height, width)``, or None.
        min_short_side: required minimum of ``min(height, width)``, or None.
    """

    num_frames: int = 0
    sampling_rate: int = 1
    target_fps: float = 30.0
    expect_size: Optional[Tuple[int, int]] = None
    min_short_side: Optional[int] = None


@dataclass
class ListLine:
    """One non-blank line of a list: where it is, its text, and the resolved video path (None if malformed)."""

    list_file: str
    line: int
    text: str
    path: Optional[str]
    error: str = ""
    start: Optional[float] = None
    end: Optional[float] = None


class _SwallowDecoderWarnings(logging.Filter):
    """Drops the decoder's per-frame warnings while a file is being checked (the verdict says what matters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


def _kind_of_open_error(path: str) -> str:
    """missing / empty / undecodable, from the file system (remote URIs: undecodable)."""
    local = path if "://" not in path else None
    if local is not None and not os.path.exists(local):
        return "missing"
    if local is not None and os.path.isfile(local) and os.path.getsize(local) == 0:
        return "empty"
    return "undecodable"


def check_video(path: str, spec: CheckSpec = CheckSpec()) -> Optional[Tuple[str, str]]:
    """The first problem of one video file, or None if the runtime can use it.

    Args:
        path: local path or iopath URI.
        spec: the sampling and size requirements.

    Returns:
        ``(kind, message)`` with ``kind`` in :data:`PROBLEM_KINDS`, or None.
    """
    return _check_video_info(path, spec)[0]


def _check_video_info(path: str, spec: CheckSpec, whole_video_length: bool = True):
    """``(verdict, (fps, num_frames) or None)``: :func:`check_video` plus what segment checks need.

    ``whole_video_length=False`` skips the too-short check of the whole video (every line of it has a segment,
    which is checked instead).

    Args:
        path: local path or iopath URI.
        spec: the sampling and size requirements.

    Returns:
        ``(kind, message)`` with ``kind`` in :data:`PROBLEM_KINDS`, or None.
    """
    decoder_logger = logging.getLogger(VideoReader.__module__)
    quiet = _SwallowDecoderWarnings()
    decoder_logger.addFilter(quiet)
    try:
        try:
            reader = VideoReader(path)
        except VideoDecodeError as e:
            return (_kind_of_open_error(path), e.reason), None
        except Exception as e:  # a reader bug or an exotic container must not stop the scan
            return ("undecodable", f"cannot open ({type(e).__name__}: {e})"), None
        with reader:
            info = reader.info
            if not info.has_video:
                return ("audio_only", "no video stream (audio-only or data file)"), None
            n = info.num_frames
            window = min(max(_END_WINDOW_MIN, n // 50), _END_WINDOW_MAX)
            for first, last, where in ((0, min(n - 1, window), "first"), (max(0, n - 1 - window), n - 1, "last")):
                try:
                    reader.frames(list(range(first, last + 1)))
                except VideoDecodeError as e:
                    return ("undecodable", f"the {where} frames ({first}..{last} of {n}) do not decode: "
                                           f"{e.reason}"), None
                except Exception as e:  # a decoder error of any type on bad input is a verdict, not a crash
                    return ("undecodable", f"the {where} frames do not decode ({type(e).__name__}: {e})"), None
        facts = (info.fps, n)
        if spec.num_frames > 0 and whole_video_length:
            size = clip_size_frames(spec.num_frames, spec.sampling_rate, spec.target_fps, info.fps)
            if n < size:
                return ("too_short", f"{n} frames at {info.fps:g} fps, {_clip_words(spec, size)}"), facts
        if spec.expect_size is not None and (info.height, info.width) != tuple(spec.expect_size):
            h, w = spec.expect_size
            return ("resolution", f"{info.height}x{info.width} (HxW), expected {h}x{w}"), facts
        if spec.min_short_side is not None and min(info.height, info.width) < spec.min_short_side:
            return ("resolution", f"{info.height}x{info.width} (HxW): short side below {spec.min_short_side}"), facts
        return None, facts
    finally:
        decoder_logger.removeFilter(quiet)


def _clip_words(spec: CheckSpec, size: float) -> str:
    return (f"one clip spans {math.ceil(size)} ({spec.num_frames} frames x sampling rate {spec.sampling_rate} at "
            f"{spec.target_fps:g} fps)")


def check_segment(start: Optional[float], end: Optional[float], fps: float, num_frames: int,
                  spec: CheckSpec = CheckSpec()) -> Optional[Tuple[str, str]]:
    """The problem of a segment ``[start, end)`` seconds of a video with ``num_frames`` at ``fps``, or None.

    ``segment`` when it starts at or after the video's end or ends more than one frame after it; ``too_short``
    when it holds fewer frames than one clip spans (with ``spec.num_frames > 0``).
    """
    duration = num_frames / fps
    words = f"#t={'' if start is None else f'{start:g}'}{'' if end is None else f',{end:g}'}"
    try:
        _, count = segment_frames(start, end, fps, num_frames)
    except ValueError:
        return "segment", f"segment {words} starts at or after the video's end ({duration:.3f} s)"
    if end is not None and end > duration + 1.0 / fps:
        return "segment", f"segment {words} ends after the video's end ({duration:.3f} s)"
    if spec.num_frames > 0:
        size = clip_size_frames(spec.num_frames, spec.sampling_rate, spec.target_fps, fps)
        if count < size:
            return "too_short", f"segment {words}: {count} frames at {fps:g} fps, {_clip_words(spec, size)}"
    return None


def read_list_lines(list_file: str, *, separator: str = " ", prefix: str = "",
                    num_classes: Optional[int] = None) -> List[ListLine]:
    """Every non-blank line of a list, parsed as the dataset parses it; malformed lines keep their error.

    Raises:
        FileNotFoundError: the list does not exist.
    """
    lines = []
    for number, text in iter_list_lines(list_file):
        try:
            entry = parse_line(text, separator, prefix, num_classes, f"{list_file}:{number}")
            lines.append(ListLine(list_file, number, text, entry.path, start=entry.start, end=entry.end))
        except VideoListError as e:
            lines.append(ListLine(list_file, number, text, None, str(e)))
    return lines


def _check_isolated(path: str, spec: CheckSpec, whole: bool):
    """``_check_video_info`` in a fresh process, so that a decoder crash (segfault) is a verdict about this file."""
    with ProcessPoolExecutor(max_workers=1) as pool:
        try:
            return pool.submit(_check_video_info, path, spec, whole).result()
        except BrokenProcessPool:
            return ("undecodable", "the decoder crashed (its process died) on this file"), None


def _progress(total: int, enabled: bool):
    """A progress bar with ETA on stderr (tqdm), or a no-op."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="video", desc="checking videos", file=sys.stderr, dynamic_ncols=True)


def _check_paths(paths: Dict[str, bool], spec: CheckSpec, workers: int, progress: bool) -> Dict[str, tuple]:
    """``{path: (verdict, (fps, num_frames) or None)}`` of distinct paths, in ``workers`` processes (0 or 1: in this
    process). ``paths`` maps each path to whether its whole length is checked (False: only segments of it are
    listed)."""
    verdicts: Dict[str, tuple] = {}
    bar = _progress(len(paths), progress)
    try:
        if workers <= 1:
            for path, whole in paths.items():
                verdicts[path] = _check_video_info(path, spec, whole)
                if bar is not None:
                    bar.update(1)
            return verdicts
        try:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(_check_video_info, path, spec, whole): path for path, whole in paths.items()}
                for future in as_completed(futures):
                    verdicts[futures[future]] = future.result()
                    if bar is not None:
                        bar.update(1)
        except BrokenProcessPool:
            left = [p for p in paths if p not in verdicts]
            logger.warning("a checking process died (decoder crash?); checking the %d remaining files one process "
                           "each", len(left))
            for path in left:
                verdicts[path] = _check_isolated(path, spec, paths[path])
                if bar is not None:
                    bar.update(1)
        return verdicts
    finally:
        if bar is not None:
            bar.close()


def check_video_lists(list_files: Iterable[str], *, separator: str = " ", prefix: str = "",
                      spec: CheckSpec = CheckSpec(), num_classes: Optional[int] = None, workers: int = 0,
                      progress: bool = False) -> dict:
    """Check every video of the lists (each distinct path once).

    Args:
        list_files: Kinetics-style lists (``path<separator>label`` lines).
        separator: ``DATA.PATH_LABEL_SEPARATOR``.
        prefix: ``DATA.PATH_PREFIX``, joined to relative paths.
        spec: sampling and size requirements (:class:`CheckSpec`).
        num_classes: ``MODEL.NUM_CLASSES``: a label at or above it makes the line ``malformed`` (None: unchecked).
        workers: parallel processes (0 or 1: this process).
        progress: show a progress bar with ETA on stderr.

    Returns:
        ``{"checked": number of list lines, "videos": distinct files checked, "bad": [{"list", "line", "path",
        "kind", "problem"}], "counts": {kind: number of bad lines}, "lists": [...]}``; ``bad`` is in list order.
    """
    list_files = list(list_files)
    lines: List[ListLine] = []
    for list_file in list_files:
        lines.extend(read_list_lines(list_file, separator=separator, prefix=prefix, num_classes=num_classes))
    paths: Dict[str, bool] = {}  # path -> some line lists the whole video (its length is then checked)
    for ln in lines:
        if ln.path is not None:
            paths[ln.path] = paths.get(ln.path, False) or (ln.start is None and ln.end is None)
    start = time.perf_counter()
    verdicts = _check_paths(paths, spec, workers, progress)
    bad = []
    for ln in lines:
        if ln.path is None:
            verdict = ("malformed", ln.error)
        else:
            verdict, facts = verdicts[ln.path]
            if verdict is not None and verdict[0] == "too_short" and not (ln.start is None and ln.end is None):
                verdict = None  # the whole video's length: this line only uses its segment
            if verdict is None and facts is not None and not (ln.start is None and ln.end is None):
                verdict = check_segment(ln.start, ln.end, facts[0], facts[1], spec)
        if verdict is not None:
            bad.append({"list": ln.list_file, "line": ln.line, "path": ln.path if ln.path is not None else ln.text,
                        "kind": verdict[0], "problem": verdict[1]})
    counts = {kind: sum(1 for b in bad if b["kind"] == kind) for kind in PROBLEM_KINDS}
    logger.info("checked %d lines (%d files) in %.1f s: %d bad", len(lines), len(paths),
                time.perf_counter() - start, len(bad))
    return {"checked": len(lines), "videos": len(paths), "bad": bad,
            "counts": {k: v for k, v in counts.items() if v}, "lists": list_files}


def write_clean_list(list_file: str, bad: Iterable[dict], out_file: str) -> int:
    """Copy ``list_file`` to ``out_file`` without the lines named in ``bad`` (same text, same separator).

    Blank lines are dropped too. Returns the number of lines written.
    """
    drop = {b["line"] for b in bad if b["list"] == list_file}
    kept = []
    with g_pathmgr.open(list_file, "r") as f:
        for number, raw in enumerate(f, start=1):
            text = raw.rstrip("\r\n")
            if number == 1:
                text = text.lstrip("\ufeff")
            if text.strip() and number not in drop:
                kept.append(text)
    folder = os.path.dirname(out_file)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with g_pathmgr.open(out_file, "w") as f:
        f.write("".join(t + "\n" for t in kept))
    return len(kept)


def check_args_from_cfg(cfg) -> dict:
    """``check_video_lists`` keyword arguments a run's config implies (sampling, separator, prefix, classes)."""
    d = cfg.DATA
    return {
        "spec": CheckSpec(int(d.NUM_FRAMES), int(d.SAMPLING_RATE), float(d.TARGET_FPS)),
        "separator": d.PATH_LABEL_SEPARATOR,
        "prefix": d.PATH_PREFIX,
        "num_classes": int(cfg.MODEL.NUM_CLASSES),
    }


def clean_list_paths(list_files: Sequence[str], out: str) -> Dict[str, str]:
    """Where each list's cleaned copy goes: ``out`` itself for one list, ``out/<basename>`` for several."""
    if len(list_files) == 1:
        return {list_files[0]: out}
    names = [os.path.basename(f) for f in list_files]
    if len(set(names)) != len(names):
        raise ValueError(f"--write-clean with several lists needs distinct file names, got {names}")
    return {f: os.path.join(out, name) for f, name in zip(list_files, names)}


def run_check(list_files: Sequence[str], *, json_file: Optional[str] = None, write_clean: Optional[str] = None,
              **kwargs) -> dict:
    """:func:`check_video_lists`, then optionally the JSON report and the cleaned lists (what the CLI does).

    Args:
        list_files: the lists.
        json_file: write the report here (``checked``, ``bad`` with ``path``/``line``/``problem``, ``counts``).
        write_clean: cleaned list path (one list) or folder (several lists; same file names).
        **kwargs: passed to :func:`check_video_lists`.

    Returns:
        The report, plus ``clean_lists`` ``{list: cleaned copy}`` when ``write_clean`` is given.
    """
    list_files = list(list_files)
    report = check_video_lists(list_files, **kwargs)
    if write_clean:
        targets = clean_list_paths(list_files, write_clean)
        report["clean_lists"] = {}
        for list_file, out in targets.items():
            kept = write_clean_list(list_file, report["bad"], out)
            report["clean_lists"][list_file] = out
            logger.info("wrote %s (%d lines)", out, kept)
    if json_file:
        folder = os.path.dirname(json_file)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(json_file, "w") as f:
            json.dump(report, f, indent=1)
    return report


def format_report(report: dict) -> str:
    """Human-readable lines: one per bad list line (``list:line: path: kind: problem``) and a summary."""
    out = [f"{b['list']}:{b['line']}: {b['path']}: {b['kind']}: {b['problem']}" for b in report["bad"]]
    counts = ", ".join(f"{n} {kind}" for kind, n in report["counts"].items())
    out.append(f"checked {report['checked']} lines ({report['videos']} files): {len(report['bad'])} bad"
               + (f" ({counts})" if counts else ""))
    for list_file, clean in report.get("clean_lists", {}).items():
        out.append(f"cleaned copy of {list_file}: {clean}")
    return "\n".join(out)
