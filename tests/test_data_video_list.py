"""Kinetics-style list parsing: separator, prefix, absolute paths, malformed lines -> file:line errors."""
import os

import pytest

from mtnet_plugin.data.video_list import VideoListError, list_path, read_video_list


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
        ("c d e.mp4 1", "fields"),
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
