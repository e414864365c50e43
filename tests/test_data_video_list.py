"""Kinetics-style list parsing: separator, prefix, absolute paths, malformed lines -> file:line errors."""
import os

import pytest

from mtnet_plugin.data.video_list import VideoListError, format_line, list_path, parse_line, read_video_list


def _write(tmp_path, text, name="train.csv"):
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_space_separated_with_prefix_and_absolute_paths(tmp_path):
    path = _write(tmp_path, "a/x.mp4 0\n/abs/y.mp4 3\n\nz.mp4 1\n")
    entries = read_video_list(path, separator=" ", prefix="/data/k400")
    assert [(e.path, e.label) for e in entries] == [("/data/k400/a/x.mp4", 0), ("/abs/y.mp4", 3),
                                                    ("/data/k400/z.mp4", 1)]
    assert entries[2].source == f"{path}:4"  # the blank line 3 is skipped but still counted


def test_custom_separator_keeps_spaces_in_paths(tmp_path):
    path = _write(tmp_path, "my clip.mp4,2\r\nother.mp4,0\n")
    entries = read_video_list(path, separator=",")
    assert [(e.path, e.label) for e in entries] == [("my clip.mp4", 2), ("other.mp4", 0)]


def test_three_field_form_uses_the_last_field(tmp_path):
    path = _write(tmp_path, "v.mp4 17 4\n")
    assert read_video_list(path)[0].label == 4


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("c.mp4", "no label"),
        ("c.mp4 x", "not an integer"),
        ("c.mp4 -1", "negative"),
        ("c.mp4 5", "NUM_CLASSES"),
        ('"c.mp4 1', "unterminated quoted path"),
        ("c.mp4#t=5,2 1", "ends before it starts"),
        ("c.mp4 1.5", "not an integer"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line, message):
    path = _write(tmp_path, f"a.mp4 0\nb.mp4 1\n{bad_line}\nd.mp4 2\n")
    with pytest.raises(VideoListError) as e:
        read_video_list(path, num_classes=5)
    assert str(e.value).startswith(f"{path}:3: ") and message in str(e.value)


def test_wrong_separator_reports_the_first_line(tmp_path):
    path = _write(tmp_path, "a.mp4,0\n")
    with pytest.raises(VideoListError, match=r":1: no label"):
        read_video_list(path, separator=" ")


def test_missing_and_empty_lists(tmp_path):
    with pytest.raises(FileNotFoundError, match="val.csv"):
        read_video_list(list_path(str(tmp_path), "val"))
    with pytest.raises(VideoListError, match="no videos"):
        read_video_list(_write(tmp_path, "\n\n"))
    with pytest.raises(ValueError):
        list_path(str(tmp_path), "training")


def test_paths_with_spaces_take_the_last_field_as_label(tmp_path):
    path = _write(tmp_path, "my video.mp4 3\ntrain/playing guitar/abc_000010_000020.mp4 1\n"
                            "train/blowing out candles/x.mp4 2\nv.mp4 17 4\n")
    entries = read_video_list(path, prefix="/k400")
    assert [(e.path, e.label) for e in entries] == [
        ("/k400/my video.mp4", 3), ("/k400/train/playing guitar/abc_000010_000020.mp4", 1),
        ("/k400/train/blowing out candles/x.mp4", 2), ("/k400/v.mp4", 4)]  # the last: PySlowFast's path fn label


def test_quoted_paths_round_trip_through_format_line(tmp_path):
    names = ['a b.mp4', 'x.mp4 17', 'say "hi".mp4', '"q.mp4', 'plain.mp4', 'c,d.mp4']
    for sep in (" ", ","):
        text = "".join(format_line(n, i, sep) + "\n" for i, n in enumerate(names))
        path = _write(tmp_path, text, f"q{ord(sep)}.csv")
        assert [(e.path, e.label) for e in read_video_list(path, separator=sep)] == [
            (n, i) for i, n in enumerate(names)]
    assert format_line("plain.mp4", 2) == "plain.mp4 2"  # nothing quoted that need not be
    with pytest.raises(ValueError, match="segment"):
        format_line("odd#t=3", 0)


def test_segments_parse_and_round_trip(tmp_path):
    lines = ["long.mp4#t=12.5,14.5 7", '"my long.mp4#t=3,9" 1', "tail.mp4#t=20 2", "head.mp4#t=,4.25 0",
             "hash#tag.mp4 5"]
    entries = read_video_list(_write(tmp_path, "\n".join(lines) + "\n"))
    assert [(e.path, e.label, e.start, e.end) for e in entries] == [
        ("long.mp4", 7, 12.5, 14.5), ("my long.mp4", 1, 3.0, 9.0), ("tail.mp4", 2, 20.0, None),
        ("head.mp4", 0, None, 4.25), ("hash#tag.mp4", 5, None, None)]
    assert [e.has_segment for e in entries] == [True, True, True, True, False]
    for e in entries:
        back = parse_line(format_line(e.path, e.label, " ", e.start, e.end), " ", "", None, "x:1")
        assert (back.path, back.label, back.start, back.end) == (e.path, e.label, e.start, e.end)


def test_non_utf8_list_names_file_and_line(tmp_path):
    path = os.path.join(str(tmp_path), "train.csv")
    with open(path, "wb") as f:
        f.write("a.mp4 0\nb.mp4 1\n".encode() + "caf\u00e9/c.mp4 2\n".encode("latin-1"))
    with pytest.raises(VideoListError) as e:
        read_video_list(path)
    assert str(e.value).startswith(f"{path}:3: not UTF-8 text (byte 0xe9 at column 4)")
    with open(path, "wb") as f:  # the same name in UTF-8 loads
        f.write("caf\u00e9/c.mp4 2\n".encode())
    assert read_video_list(path)[0].path == "caf\u00e9/c.mp4"
