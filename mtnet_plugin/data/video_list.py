"""Kinetics-style video lists: ``{DATA.PATH_TO_DATA_DIR}/{split}.csv`` with one ``path<SEP>label`` per line.

Format (PySlowFast's, facts file §6.1): no header; each line is split on ``DATA.PATH_LABEL_SEPARATOR`` exactly
(default one space); 2 fields are ``path label``, 3 fields ``path id label`` (the middle field is ignored).
Relative paths are joined to ``DATA.PATH_PREFIX``; absolute paths (and URIs) are kept. Blank lines are skipped.
Unlike PySlowFast, a line without a label, with a non-integer, negative or out-of-range label, or with too many
fields is an error at load time that names ``file:line``. Files are read through iopath.
"""
import os
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

from iopath.common.file_io import g_pathmgr

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VideoEntry:
    """One list line: the resolved video ``path``, its ``label`` and where it came from (``source`` = file:line)."""

    path: str
    label: int
    source: str


class VideoListError(ValueError):
    """A malformed list file; the message starts with ``file:line``."""


def list_path(data_dir: str, split: str) -> str:
    """``{data_dir}/{split}.csv`` for split in train | val | test."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return os.path.join(data_dir, f"{split}.csv")


def parse_line(line: str, separator: str, prefix: str, num_classes: Optional[int], where: str) -> VideoEntry:
    """Parse one non-blank line; ``where`` (``file:line``) prefixes every error."""
    fields = line.split(separator)
    if len(fields) == 1:
        raise VideoListError(f"{where}: no label (expected 'path{separator}label' with separator "
                             f"{separator!r}, DATA.PATH_LABEL_SEPARATOR): {line!r}")
    if len(fields) > 3:
        raise VideoListError(f"{where}: {len(fields)} fields when split on {separator!r} (expected path and label; "
                             f"does the path contain the separator?): {line!r}")
    path, label_text = fields[0], fields[-1]
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
    return VideoEntry(os.path.join(prefix, path), label, where)


def iter_list_lines(path: str, missing_hint: str = "") -> Iterator[Tuple[int, str]]:
    """Yield ``(line_number, text)`` for every non-blank line of a list file (local path or iopath URI).

    Line ends (LF or CRLF) are dropped, and so is a UTF-8 byte-order mark at the start of the file, which
    spreadsheet programs write into "CSV UTF-8" files and which would otherwise stick to the first path.

    Raises:
        FileNotFoundError: the list does not exist (``missing_hint`` is appended to the message).
    """
    if not g_pathmgr.exists(path):
        raise FileNotFoundError(f"video list not found: {path}{missing_hint}")
    with g_pathmgr.open(path, "r") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
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
