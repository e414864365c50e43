"""Converting the public data sets' annotation files into our list layout (``tools/make_lists.py``).

Each reader turns one data set's official files into :class:`~mtnet_plugin.data.video_list.VideoEntry` s per split and the class names in label order;
:func:`write_lists` writes ``train.csv`` / ``val.csv`` / ``test.csv`` (``video_list.format_line``: ``path label``,
with ``#t=START,END`` for a clip inside a longer video) and ``classes.txt`` (one name per line in label order: what
``engine/class_names.py`` reads from ``DATA.PATH_TO_DATA_DIR``), and reports the videos missing on disk.
The layouts read (docs/data.md has the details and the commands):

- ``ucf101``: ``classInd.txt`` (``1 ApplyEyeMakeup``), ``trainlist0N.txt`` (``Class/v_..._gXX_cYY.avi 1``, 1-based
  labels) and ``testlist0N.txt`` (``Class/v_....avi``, no label: the class is the folder). UCF-101 has no
  validation split: ``val.csv`` is the test list.
- ``kinetics``: the official csv files (header ``label,youtube_id,time_start,time_end,split[,is_cc]``). A video is
  found under the root as ``{youtube_id}_{start:06d}_{end:06d}.<ext>`` (the trimmed clip the usual downloaders
  write, in any sub-folder), or as ``{youtube_id}.<ext>`` (the whole video: the line gets the segment).
- ``hacs``: HACS Clips (``classname,youtube_id,subset,start,end,label``; label 1 is a positive clip, -1 a
  negative one, which is left out) and/or HACS Segments json (``{"database": {id: {"subset", "annotations":
  [{"label", "segment": [s, e]}]}}}``). Videos are ``v_{youtube_id}.<ext>`` or ``{youtube_id}.<ext>`` in any
  sub-folder of the root; every line carries its segment.
- ``mit``: Moments in Time ``trainingSet.csv`` / ``validationSet.csv`` (``class/file.mp4,class,...``, no header) and
  optionally ``moments_categories.txt`` (``name,index``); videos under ``ROOT/training/`` and ``ROOT/validation/``.
  The validation set is also written as the test list.
- ``folder``: one sub-folder per class (``ROOT/class/*.mp4``), or ``ROOT/{train,val,test}/class/*.mp4``; classes in
  sorted order. Without split folders a fixed share of each class (every k-th file in sorted order) goes to val, and
  the test list is the val list.

A malformed annotation line stops with :class:`AnnotationError` naming ``file:line``.
"""
import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .video_list import VideoEntry, format_line


FORMATS = ("ucf101", "kinetics", "hacs", "mit", "folder")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp",
                    ".ogv", ".ts")
CLASS_FILE = "classes.txt"
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validate": "val",
                "validation": "val", "test": "test", "testing": "test"}


class AnnotationError(ValueError):
    """A malformed annotation file; the message starts with ``file:line``."""


@dataclass
class Lists:
    """A converted data set: ``splits`` {train|val|test: items}, the class names in label order, and what is off.

    ``missing`` holds ``(split, source, what was looked for)`` of annotated videos not found on disk (left out of
    the lists); ``skipped`` counts annotation rows left out on purpose, by reason; ``notes`` are lines for the user.
    """

    splits: Dict[str, List[VideoEntry]]
    classes: List[str]
    missing: List[Tuple[str, str, str]] = field(default_factory=list)
    skipped: Dict[str, int] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


def _read_text(path: str) -> List[str]:
    """The lines of a text file (UTF-8, BOM and CRLF accepted); a non-UTF-8 byte names ``file:line``."""
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise AnnotationError(f"{path}:{number}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None
        lines.append(text.rstrip("\r").lstrip("\ufeff") if number == 1 else text.rstrip("\r"))
    return lines


def _csv_rows(path: str) -> Iterable[Tuple[int, List[str]]]:
    """``(line number, fields)`` of every non-blank csv row (quoted fields allowed)."""
    for number, text in enumerate(_read_text(path), start=1):
        if text.strip():
            try:
                yield number, next(csv.reader(io.StringIO(text)))
            except csv.Error as e:
                raise AnnotationError(f"{path}:{number}: {e}: {text!r}") from None


def _float(text: str, where: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise AnnotationError(f"{where}: {what} {text!r} is not a number") from None


class _VideoIndex:
    """Video files under a root, by file name without extension (first found in sorted walk order)."""

    def __init__(self, root: str):
        self.root = root
        self.by_stem: Dict[str, str] = {}
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                stem, ext = os.path.splitext(name)
                if ext.lower() in VIDEO_EXTENSIONS:
                    self.by_stem.setdefault(stem, os.path.join(folder, name))

    def find(self, *stems: str) -> Tuple[Optional[str], int]:
        """``(path, position in stems)`` of the first stem present, or ``(None, -1)``."""
        for i, stem in enumerate(stems):
            if stem in self.by_stem:
                return self.by_stem[stem], i
        return None, -1


def _class_table(names: Sequence[str]) -> Dict[str, int]:
    return {name: i for i, name in enumerate(names)}


def read_class_file(path: str) -> List[str]:
    """Class names in label order from ``classInd.txt`` (``1 name``), ``moments_categories.txt`` (``name,0``),
    a json ``{name: index}``, or one name per line."""
    if path.endswith(".json"):
        with open(path) as f:
            mapping = json.load(f)
        return [name for name, _ in sorted(mapping.items(), key=lambda kv: int(kv[1]))]
    pairs, plain = [], []
    for number, text in enumerate(_read_text(path), start=1):
        text = text.strip()
        if not text:
            continue
        m = re.fullmatch(r"(\d+)\s+(.+)", text) or re.fullmatch(r"(.+?),\s*(\d+)", text)
        if m and m.group(1).isdigit():
            pairs.append((int(m.group(1)), m.group(2).strip(), number))
        elif m:
            pairs.append((int(m.group(2)), m.group(1).strip(), number))
        else:
            plain.append(text)
    if pairs and plain:
        raise AnnotationError(f"{path}: mixes 'index name' lines with plain names")
    if not pairs:
        return plain
    base = min(i for i, _, _ in pairs)
    names: List[Optional[str]] = [None] * len(pairs)
    for index, name, number in pairs:
        if not 0 <= index - base < len(pairs) or names[index - base] is not None:
            raise AnnotationError(f"{path}:{number}: class index {index} repeated or out of 0..{len(pairs)} range")
        names[index - base] = name
    return names  # type: ignore[return-value]


# -- UCF-101 ------------------------------------------------------------------------------------------------------

def read_ucf101(annotations: str, videos: str, split: int = 1) -> Lists:
    """UCF-101's official split ``split`` (1, 2 or 3) from the ``ucfTrainTestlist`` folder ``annotations``."""
    if split not in (1, 2, 3):
        raise ValueError(f"UCF-101 has splits 1, 2, 3; got {split}")
    classes = read_class_file(os.path.join(annotations, "classInd.txt"))
    by_lower = {c.lower(): i for i, c in enumerate(classes)}
    out = Lists({"train": [], "val": [], "test": []}, classes)
    for name, split_name in ((f"trainlist0{split}.txt", "train"), (f"testlist0{split}.txt", "test")):
        path = os.path.join(annotations, name)
        for number, text in enumerate(_read_text(path), start=1):
            if not text.strip():
                continue
            where = f"{path}:{number}"
            fields = text.split()
            rel = fields[0]
            folder = rel.split("/")[0]
            if folder.lower() not in by_lower:
                raise AnnotationError(f"{where}: class folder {folder!r} is not in classInd.txt: {text!r}")
            label = by_lower[folder.lower()]
            if len(fields) == 2:
                try:
                    given = int(fields[1]) - 1
                except ValueError:
                    raise AnnotationError(f"{where}: label {fields[1]!r} is not an integer: {text!r}") from None
                if given != label:
                    raise AnnotationError(f"{where}: label {fields[1]} (1-based) is class {given + 1} of "
                                          f"classInd.txt, but the folder {folder!r} is class {label + 1}: {text!r}")
            elif len(fields) != 1:
                raise AnnotationError(f"{where}: expected 'Class/video.avi [label]': {text!r}")
            _add(out, split_name, os.path.join(videos, rel), label, where)
    out.splits["val"] = list(out.splits["test"])
    out.notes.append("UCF-101 has no validation split: val.csv is the test list")
    return out


def _add(out: Lists, split: str, path: str, label: int, where: str, start=None, end=None) -> None:
    if os.path.exists(path):
        out.splits[split].append(VideoEntry(path, label, where, start, end))
    else:
        out.missing.append((split, where, path))


# -- Kinetics -----------------------------------------------------------------------------------------------------

def _header(path: str, rows, required: Sequence[str]) -> Tuple[Dict[str, int], list]:
    rows = list(rows)
    if not rows:
        raise AnnotationError(f"{path}: empty annotation file")
    number, head = rows[0]
    columns = {h.strip(): i for i, h in enumerate(head)}
    missing = [c for c in required if c not in columns]
    if missing:
        raise AnnotationError(f"{path}:{number}: header {head} lacks {missing} (expected {list(required)})")
    return columns, rows[1:]


def _row_split(row: Sequence[str], columns: Dict[str, int], key: str, where: str) -> str:
    """The split (train | val | test) named in column ``key`` of a csv row that has every header field."""
    if len(row) < len(columns):
        raise AnnotationError(f"{where}: {len(row)} fields, the header has {len(columns)}: {row}")
    split = _SPLIT_NAMES.get(row[columns[key]].strip())
    if split is None:
        raise AnnotationError(f"{where}: unknown {key} {row[columns[key]]!r}")
    return split


def read_kinetics(csv_files: Sequence[str], videos: str, classes: Optional[Sequence[str]] = None) -> Lists:
    """Kinetics-400/600/700 from the official csv files (see the module docstring for the file names looked up)."""
    parsed = []
    for path in csv_files:
        columns, rows = _header(path, _csv_rows(path), ("youtube_id", "time_start", "time_end", "split"))
        for number, row in rows:
            where = f"{path}:{number}"
            split = _row_split(row, columns, "split", where)
            label = row[columns["label"]].strip() if "label" in columns else ""
            start = _float(row[columns["time_start"]], where, "time_start")
            end = _float(row[columns["time_end"]], where, "time_end")
            parsed.append((split, row[columns["youtube_id"]].strip(), start, end, label, where))
    names = list(classes) if classes is not None else sorted({p[4] for p in parsed if p[4]})
    table = _class_table(names)
    index = _VideoIndex(videos)
    out = Lists({"train": [], "val": [], "test": []}, names)
    for split, vid, start, end, label, where in parsed:
        if not label:
            out.skipped["no label (held-out test)"] = out.skipped.get("no label (held-out test)", 0) + 1
            continue
        if label not in table:
            raise AnnotationError(f"{where}: class {label!r} is not in the class list")
        clip = f"{vid}_{int(start):06d}_{int(end):06d}"
        path, which = index.find(clip, vid)
        if path is None:
            out.missing.append((split, where, f"{clip}.* or {vid}.*"))
            continue
        if which == 0:
            out.splits[split].append(VideoEntry(path, table[label], where))
        else:
            out.splits[split].append(VideoEntry(path, table[label], where, start, end))
    return out


# -- HACS ---------------------------------------------------------------------------------------------------------

def read_hacs(clips_csv: Optional[str], segments_json: Optional[str], videos: str,
              classes: Optional[Sequence[str]] = None) -> Lists:
    """HACS Clips (positive clips) and/or HACS Segments (every annotated segment); see the module docstring."""
    if not clips_csv and not segments_json:
        raise ValueError("hacs needs the clips csv, the segments json, or both")
    rows = []  # (split, youtube id, start, end, class name, where)
    skipped: Dict[str, int] = {}
    if clips_csv:
        columns, body = _header(clips_csv, _csv_rows(clips_csv),
                                ("classname", "youtube_id", "subset", "start", "end", "label"))
        for number, row in body:
            where = f"{clips_csv}:{number}"
            split = _row_split(row, columns, "subset", where)
            flag = row[columns["label"]].strip()
            if flag not in ("1", "-1"):
                raise AnnotationError(f"{where}: label {flag!r} is neither 1 (positive) nor -1 (negative)")
            if flag == "-1":
                skipped["negative clip (label -1)"] = skipped.get("negative clip (label -1)", 0) + 1
                continue
            rows.append((split, row[columns["youtube_id"]].strip(), _float(row[columns["start"]], where, "start"),
                         _float(row[columns["end"]], where, "end"), row[columns["classname"]].strip(), where))
    if segments_json:
        try:
            with open(segments_json) as f:
                database = json.load(f)["database"]
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
            raise AnnotationError(f"{segments_json}: not a HACS segments json ({type(e).__name__}: {e})") from None
        for vid, video in database.items():
            where = f"{segments_json}: {vid}"
            split = _SPLIT_NAMES.get(str(video.get("subset", "")))
            if split is None:
                raise AnnotationError(f"{where}: unknown subset {video.get('subset')!r}")
            annotations = video.get("annotations") or []
            if not annotations:
                skipped["video without annotations"] = skipped.get("video without annotations", 0) + 1
            for k, ann in enumerate(annotations):
                try:
                    start, end = (float(v) for v in ann["segment"])
                    name = str(ann["label"])
                except (KeyError, TypeError, ValueError):
                    raise AnnotationError(f"{where}: annotation {k} is not {{'label', 'segment': [s, e]}}: "
                                          f"{ann}") from None
                rows.append((split, vid[2:] if vid.startswith("v_") else vid, start, end, name, f"{where}[{k}]"))
    names = list(classes) if classes is not None else sorted({r[4] for r in rows})
    table = _class_table(names)
    index = _VideoIndex(videos)
    out = Lists({"train": [], "val": [], "test": []}, names, skipped=skipped)
    for split, vid, start, end, name, where in rows:
        if name not in table:
            raise AnnotationError(f"{where}: class {name!r} is not in the class list")
        path, _ = index.find(f"v_{vid}", vid)
        if path is None:
            out.missing.append((split, where, f"v_{vid}.* or {vid}.*"))
            continue
        out.splits[split].append(VideoEntry(path, table[name], where, start, end))
    if not out.splits["test"] and out.splits["val"]:
        out.splits["test"] = list(out.splits["val"])
        out.notes.append("no labelled testing subset: test.csv is the validation list")
    return out


# -- Moments in Time ----------------------------------------------------------------------------------------------

def read_mit(csv_files: Sequence[str], videos: str, classes: Optional[Sequence[str]] = None) -> Lists:
    """Moments in Time: ``trainingSet.csv`` -> train (videos in ``ROOT/training``), ``validationSet.csv`` -> val and
    test (``ROOT/validation``)."""
    rows = []
    for path in csv_files:
        base = os.path.basename(path).lower()
        if base.startswith("training"):
            split, folder = "train", "training"
        elif base.startswith("validation"):
            split, folder = "val", "validation"
        else:
            raise ValueError(f"{path}: a Moments in Time csv is trainingSet.csv or validationSet.csv")
        for number, row in _csv_rows(path):
            where = f"{path}:{number}"
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise AnnotationError(f"{where}: expected 'class/file.mp4,class,...': {row}")
            rows.append((split, os.path.join(videos, folder, row[0].strip()), row[1].strip(), where))
    names = list(classes) if classes is not None else sorted({r[2] for r in rows})
    table = _class_table(names)
    out = Lists({"train": [], "val": [], "test": []}, names)
    for split, path, name, where in rows:
        if name not in table:
            raise AnnotationError(f"{where}: class {name!r} is not in the class list")
        _add(out, split, path, table[name], where)
    out.splits["test"] = list(out.splits["val"])
    out.notes.append("Moments in Time's test labels are not public: test.csv is the validation list")
    return out


# -- one folder per class -----------------------------------------------------------------------------------------

def _videos_in(folder: str) -> List[str]:
    found = []
    for sub, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(sub, f) for f in sorted(files) if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS]
    return found


def read_folder(videos: str, val_fraction: float = 0.2) -> Lists:
    """``ROOT/class/*`` (a share of each class to val, every k-th file) or ``ROOT/{train,val,test}/class/*``."""
    if not os.path.isdir(videos):
        raise FileNotFoundError(f"video folder not found: {videos}")
    split_dirs = {s: os.path.join(videos, s) for s in ("train", "val", "test")
                  if os.path.isdir(os.path.join(videos, s))}
    if "train" in split_dirs:
        train_dir = split_dirs["train"]
        names = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
        table = _class_table(names)
        out = Lists({"train": [], "val": [], "test": []}, names)
        for split, root in split_dirs.items():
            for name in sorted(os.listdir(root)):
                if not os.path.isdir(os.path.join(root, name)):
                    continue
                if name not in table:
                    raise AnnotationError(f"{os.path.join(root, name)}: class folder not in {split_dirs['train']}")
                for path in _videos_in(os.path.join(root, name)):
                    out.splits[split].append(VideoEntry(path, table[name], path))
        if "test" not in split_dirs:
            out.splits["test"] = list(out.splits["val"])
            out.notes.append("no test/ folder: test.csv is the val list")
        return out
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    names = sorted(d for d in os.listdir(videos) if os.path.isdir(os.path.join(videos, d)))
    if not names:
        raise AnnotationError(f"{videos}: no class sub-folders")
    out = Lists({"train": [], "val": [], "test": []}, names)
    for label, name in enumerate(names):
        files = _videos_in(os.path.join(videos, name))
        if not files:
            out.notes.append(f"class folder {name!r} holds no video")
        step = round(1 / val_fraction) if val_fraction > 0 else 0
        for i, path in enumerate(files):
            to_val = step > 0 and i % step == step - 1
            out.splits["val" if to_val else "train"].append(VideoEntry(path, label, path))
    out.splits["test"] = list(out.splits["val"])
    out.notes.append(f"every {round(1 / val_fraction) if val_fraction else 0}-th video of each class (sorted by "
                     "name) is in val.csv; test.csv is the val list")
    return out


# -- writing ------------------------------------------------------------------------------------------------------

def write_lists(lists: Lists, out_dir: str, separator: str = " ") -> Dict[str, str]:
    """Write ``{split}.csv`` for the non-empty splits, ``classes.txt`` and, if any, ``missing.txt``.

    Returns:
        ``{name: path}`` of the files written.
    """
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for split, items in lists.splits.items():
        if not items:
            continue
        path = os.path.join(out_dir, f"{split}.csv")
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(format_line(it.path, it.label, separator, it.start, it.end) + "\n" for it in items))
        written[split] = path
    path = os.path.join(out_dir, CLASS_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(name + "\n" for name in lists.classes))
    written["classes"] = path
    missing = os.path.join(out_dir, "missing.txt")
    if lists.missing:
        with open(missing, "w", encoding="utf-8") as f:
            f.write("".join(f"{split}\t{where}\t{what}\n" for split, where, what in lists.missing))
        written["missing"] = missing
    elif os.path.exists(missing):
        os.remove(missing)
    return written


def summary(lists: Lists, written: Dict[str, str]) -> str:
    """Lines for the user: counts per split, classes, missing videos (the first few), skipped rows, notes."""
    out = [f"{len(lists.classes)} classes -> {written['classes']}"]
    for split in ("train", "val", "test"):
        if split in written:
            out.append(f"{split}: {len(lists.splits[split])} videos -> {written[split]}")
    if lists.missing:
        per_split = {s: sum(1 for m in lists.missing if m[0] == s) for s in ("train", "val", "test")}
        counts = ", ".join(f"{n} {s}" for s, n in per_split.items() if n)
        out.append(f"{len(lists.missing)} annotated videos are missing on disk ({counts}); left out, listed in "
                   f"{written['missing']}:")
        out += [f"  {where}: {what}" for _, where, what in lists.missing[:5]]
        if len(lists.missing) > 5:
            out.append(f"  ... and {len(lists.missing) - 5} more")
    for reason, n in lists.skipped.items():
        out.append(f"skipped {n} rows: {reason}")
    out += lists.notes
    return "\n".join(out)
