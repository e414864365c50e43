"""Kinetics-style video lists: ``{DATA.PATH_TO_DATA_DIR}/{split}.csv`` with one ``path<SEP>label`` per line.

Format (PySlowFast's, extended as docs/data.md describes): no header; blank lines are skipped;
``<SEP>`` is ``DATA.PATH_LABEL_SEPARATOR`` (default one space).

- ``path<SEP>label``: the label is always the **last** field and the path is everything before the last separator,
  so ``my video.mp4 3`` is the file ``my video.mp4`` with label 3.
- ``path<SEP>fn<SEP>label`` (PySlowFast's three-field form; ``fn`` is ignored) is recognised when the line has
  exactly three fields and the first one ends in a file extension (``v.mp4 17 4``).
- ``"path"<SEP>label``: a path in double quotes is taken verbatim (``""`` is a literal quote); this is how
  :func:`format_line` writes paths that contain the separator or a quote.
- A segment: the path may end in ``#t=START,END`` (seconds, the W3C Media Fragments temporal syntax, e.g.
  ``long.mp4#t=12.5,14.5 7``); ``#t=START`` runs to the end of the video. Clips are then sampled only inside the
  segment (``kinetics.py``). A file whose own name ends in ``#t=<number>`` cannot be listed.

Relative paths are joined to ``DATA.PATH_PREFIX``; absolute paths (and URIs) are kept. Unlike PySlowFast, a line
without a label, with a non-integer, negative or out-of-range label, an unterminated quote, a bad segment, or bytes
that are not UTF-8 is an error at load time that names ``file:line``. Files are read through iopath.
"""
import math
import os
import re
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

from iopath.common.file_io import g_pathmgr

SPLITS = ("train", "val", "test")

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_SEGMENT = re.compile(r"^(.*)#t=" + _NUMBER + r"?(?:," + _NUMBER + r")?$", re.DOTALL)
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{2,5}$")


@dataclass(frozen=True)
class VideoEntry:
    """One list line: the resolved video ``path``, its ``label``, where it came from (``source`` = file:line) and
    an optional segment ``[start, end)`` in seconds (None: from the start / to the end of the video)."""

    path: str
    label: int
    source: str
    start: Optional[float] = None
    end: Optional[float] = None

    @property
    def has_segment(self) -> bool:
        return self.start is not None or self.end is not None


class VideoListError(ValueError):
    """A malformed list file; the message starts with ``file:line``."""


def list_path(data_dir: str, split: str) -> str:
    """``{data_dir}/{split}.csv`` for split in train | val | test."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return os.path.join(data_dir, f"{split}.csv")


def _split_quoted(line: str, separator: str, where: str) -> Tuple[str, List[str]]:
    """``"path"<SEP>rest`` -> (path, fields of rest)."""
    chars, i = [], 1
    while True:
        j = line.find('"', i)
        if j < 0:
            raise VideoListError(f"{where}: unterminated quoted path (a line starting with '\"' needs a closing "
                                 f"'\"'): {line!r}")
        chars.append(line[i:j])
        if line.startswith('""', j):
            chars.append('"')
            i = j + 2
            continue
        rest = line[j + 1:]
        break
    if not rest.startswith(separator):
        raise VideoListError(f"{where}: expected {separator!r} (DATA.PATH_LABEL_SEPARATOR) after the quoted path, "
                             f"got {rest[:10]!r}: {line!r}")
    return "".join(chars), rest[len(separator):].split(separator)


def _split_fields(line: str, separator: str, where: str) -> Tuple[str, str]:
    """(path text, label text) of a line by the rules of the module docstring."""
    if line.startswith('"'):
        path, rest = _split_quoted(line, separator, where)
        if len(rest) > 2 or not rest[-1]:
            raise VideoListError(f"{where}: expected a label (or 'fn{separator}label') after the quoted path: "
                                 f"{line!r}")
        return path, rest[-1]
    fields = line.split(separator)
    if len(fields) == 1:
        raise VideoListError(f"{where}: no label (expected 'path{separator}label' with separator "
                             f"{separator!r}, DATA.PATH_LABEL_SEPARATOR): {line!r}")
    if len(fields) == 3 and _EXTENSION.search(fields[0]):
        return fields[0], fields[2]  # PySlowFast's 'path fn label'
    return separator.join(fields[:-1]), fields[-1]


def _parse_segment(path: str, where: str, line: str) -> Tuple[str, Optional[float], Optional[float]]:
    match = _SEGMENT.match(path)
    if not match or (match.group(2) is None and match.group(3) is None):
        return path, None, None
    path, start_text, end_text = match.groups()
    start = float(start_text) if start_text is not None else None
    end = float(end_text) if end_text is not None else None
    if start is not None and end is not None and not end > start:
        raise VideoListError(f"{where}: segment #t={start_text},{end_text} ends before it starts: {line!r}")
    if not all(v is None or math.isfinite(v) for v in (start, end)):
        raise VideoListError(f"{where}: segment times must be finite seconds: {line!r}")
    return path, start, end


def parse_line(line: str, separator: str, prefix: str, num_classes: Optional[int], where: str) -> VideoEntry:
    """Parse one non-blank line; ``where`` (``file:line``) prefixes every error."""
    path, label_text = _split_fields(line, separator, where)
    path, start, end = _parse_segment(path, where, line)
    if not path:
        raise VideoListError(f"{where}: empty path: {line!r}")
    try:
        label = int(label_text)
    except ValueError:
        raise VideoListError(f"{where}: label {label_text!r} is not an integer: {line!r}") from None
    if label < 0:
        raise VideoListError(f"{where}: negative label {label}: {line!r}")
    if num_classes is not None and label >= num_classes:
        raise VideoListError(f"{where}: label {label} >= MODEL.NUM_CLASSES ({num_classes}): {line!r}")
    return VideoEntry(os.path.join(prefix, path), label, where, start, end)


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def format_line(path: str, label: int, separator: str = " ", start: Optional[float] = None,
                end: Optional[float] = None) -> str:
    """The list line :func:`parse_line` reads back as ``(path, label, start, end)`` (no line end).

    The path is quoted when it contains the separator or starts with a quote; a segment is written as
    ``#t=START,END`` (times in seconds, at most 3 decimals).

    Raises:
        ValueError: the path's own name ends in ``#t=<number>`` (it would read back as a segment).
    """
    if _parse_segment(path, "", "")[1:] != (None, None):
        raise ValueError(f"cannot list {path!r}: its name ends in text that reads as a segment (#t=...)")
    text = path
    if start is not None or end is not None:
        text += "#t=" + ("" if start is None else _seconds(start)) + ("" if end is None else "," + _seconds(end))
    if separator in text or text.startswith('"'):
        text = '"' + text.replace('"', '""') + '"'
    return f"{text}{separator}{int(label)}"


def iter_list_lines(path: str, missing_hint: str = "") -> Iterator[Tuple[int, str]]:
    """Yield ``(line_number, text)`` for every non-blank line of a list file (local path or iopath URI).

    Line ends (LF or CRLF) are dropped, and so is a UTF-8 byte-order mark at the start of the file, which
    spreadsheet programs write into "CSV UTF-8" files and which would otherwise stick to the first path.

    Raises:
        FileNotFoundError: the list does not exist (``missing_hint`` is appended to the message).
        VideoListError: a line is not UTF-8 text (names ``file:line`` and the byte).
    """
    if not g_pathmgr.exists(path):
        raise FileNotFoundError(f"video list not found: {path}{missing_hint}")
    with g_pathmgr.open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise VideoListError(
                    f"{path}:{number}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); save the "
                    f"list as UTF-8 (e.g. iconv -f latin1 -t utf-8): {raw[:120]!r}") from None
            line = line.rstrip("\r\n")
            if number == 1:
                line = line.lstrip("\ufeff")
            if line.strip():
                yield number, line


def read_video_list(path: str, *, separator: str = " ", prefix: str = "",
                    num_classes: Optional[int] = None) -> List[VideoEntry]:
    """Read and check a whole list file.

    Args:
        path: the csv file (local path or iopath URI).
        separator: ``DATA.PATH_LABEL_SEPARATOR``.
        prefix: ``DATA.PATH_PREFIX``.
        num_classes: ``MODEL.NUM_CLASSES``; labels must be below it (None: not checked).

    Raises:
        FileNotFoundError: the list does not exist.
        VideoListError: a malformed line (``file:line`` in the message), or a list without any entry.
    """
    entries = [
        parse_line(line, separator, prefix, num_classes, f"{path}:{number}")
        for number, line in iter_list_lines(path, " (DATA.PATH_TO_DATA_DIR)")
    ]
    if not entries:
        raise VideoListError(f"{path}: the list holds no videos")
    return entries
