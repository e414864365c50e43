"""check_videos: the scan names exactly the planted bad files, writes a cleaned list, survives a decoder crash."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

import fault_files
from mtnet_plugin.config import get_cfg
from mtnet_plugin.data import check
from mtnet_plugin.data.check import CheckSpec, check_args_from_cfg, check_video, check_video_lists, run_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "check_videos.py")

# What the scan must say about each planted kind (4 frames x rate 2 at 10 fps: a clip spans 8 frames; size 32x48).
EXPECTED_KIND = {
    "missing": "missing",
    "empty": "empty",
    "truncated": "undecodable",
    "truncated_faststart": "undecodable",
    "text": "undecodable",
    "audio_only": "audio_only",
    "one_frame": "too_short",
    "odd_size": "resolution",
}
USABLE = ("vfr", "wrong_ext")  # odd, but fine for this spec: never named


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Good clips and one bad file of each kind, listed in a mixed order; returns (folder, list lines)."""
    folder = str(tmp_path_factory.mktemp("check"))
    good = [fault_files.good_video(os.path.join(folder, f"good_{i}.mp4"), seed=i) for i in range(3)]
    bad = fault_files.plant(os.path.join(folder, "bad"), tuple(EXPECTED_KIND) + USABLE)
    order = [good[0], bad["missing"], bad["vfr"], bad["empty"], bad["truncated"], good[1], bad["text"],
             bad["audio_only"], bad["wrong_ext"], bad["one_frame"], bad["odd_size"], bad["truncated_faststart"],
             good[2]]
    lines = [f"{os.path.relpath(p, folder)} {i % 2}" for i, p in enumerate(order)]
    return folder, lines, bad


def test_cli_names_exactly_the_planted_files(planted, tmp_path):
    folder, lines, bad = planted
    listing = tmp_path / "all.csv"
    listing.write_text("\n".join(lines[:6]) + "\n\n" + "\n".join(lines[6:]) + "\n")  # a blank line in between
    report_file, clean = tmp_path / "report.json", tmp_path / "clean.csv"
    proc = subprocess.run(
        [sys.executable, TOOL, str(listing), "--prefix", folder, "--num-frames", "4", "--sampling-rate", "2",
         "--target-fps", "10", "--expect-size", "32x48", "--workers", "2", "--json", str(report_file),
         "--write-clean", str(clean)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(report_file.read_text())
    assert report["checked"] == len(lines)
    named = {b["path"]: b["kind"] for b in report["bad"]}
    assert named == {bad[k]: kind for k, kind in EXPECTED_KIND.items()}
    # line numbers count the blank line; the problem text says why
    by_path = {b["path"]: b for b in report["bad"]}
    assert by_path[bad["missing"]]["line"] == 2 and by_path[bad["text"]]["line"] == 8
    assert "0 bytes" in by_path[bad["empty"]]["problem"]
    assert "one clip spans 8" in by_path[bad["one_frame"]]["problem"]
    assert "33x47" in by_path[bad["odd_size"]]["problem"]
    assert "last frames" in by_path[bad["truncated_faststart"]]["problem"]
    assert report["counts"] == {"missing": 1, "empty": 1, "undecodable": 3, "audio_only": 1, "too_short": 1,
                                "resolution": 1}
    # the clean list: the other lines, verbatim and in order
    keep = [ln for ln in lines if os.path.join(folder, ln.split(" ")[0]) not in named]
    assert clean.read_text().splitlines() == keep
    for path in named:
        assert os.path.relpath(path, folder) in proc.stdout
    assert f"checked {len(lines)} lines" in proc.stdout and f"{len(named)} bad" in proc.stdout


@pytest.mark.parametrize("num_frames, expect_short", [(4, False), (3, True)])
def test_too_short_is_one_frame_less_than_a_clip(tmp_path, num_frames, expect_short):
    # 4 frames x rate 3 at 30 fps span 0.4 s = 4 frames of a 10 fps video (hand-computed)
    path = fault_files.good_video(str(tmp_path / "v.mp4"), num_frames=num_frames, fps=10)
    verdict = check_video(path, CheckSpec(num_frames=4, sampling_rate=3, target_fps=30))
    assert (verdict is not None and verdict[0] == "too_short") == expect_short
    assert check_video(path, CheckSpec()) is None  # no sampling given: length unchecked


def test_resolution_checks(tmp_path):
    path = fault_files.good_video(str(tmp_path / "v.mp4"), height=32, width=48)
    assert check_video(path, CheckSpec(expect_size=(32, 48))) is None
    assert check_video(path, CheckSpec(expect_size=(48, 32)))[0] == "resolution"
    assert check_video(path, CheckSpec(min_short_side=32)) is None
    assert check_video(path, CheckSpec(min_short_side=33))[0] == "resolution"


def test_malformed_lines_duplicates_and_separator_are_kept_apart(planted, tmp_path):
    folder, _, bad = planted
    good = os.path.join(folder, "good_0.mp4")
    text = [f"{good},7,1", f"{bad['empty']},0", "no_label_here", f"{good},x", "", f"{bad['empty']},1",
            f"{good},id,3"]
    listing = tmp_path / "comma.csv"
    listing.write_text("\n".join(text) + "\n")
    report = check_video_lists([str(listing)], separator=",", num_classes=2)
    got = [(b["line"], b["kind"]) for b in report["bad"]]
    # line 1: 3 fields, label 1 -> fine; line 7: label 3 >= 2 classes; the empty file twice, checked once
    assert got == [(2, "empty"), (3, "malformed"), (4, "malformed"), (6, "empty"), (7, "malformed")]
    assert report["checked"] == 6 and report["videos"] == 2
    assert "comma.csv:3" in report["bad"][1]["problem"]
    out = tmp_path / "clean" / "comma.csv"
    run_check([str(listing)], write_clean=str(out), separator=",", num_classes=2)
    assert out.read_text() == f"{good},7,1\n"


def test_spec_from_a_run_config(planted):
    folder, lines, bad = planted
    cfg = get_cfg()
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 4, 3, 10  # 12 frames at 10 fps
    cfg.DATA.PATH_PREFIX = folder
    args = check_args_from_cfg(cfg)
    assert args["spec"] == CheckSpec(4, 3, 10.0) and args["prefix"] == folder
    # good clips have exactly 12 frames: still fine; the one-frame clip is short
    assert check_video(os.path.join(folder, "good_0.mp4"), args["spec"]) is None
    assert check_video(bad["one_frame"], args["spec"])[0] == "too_short"


def _crash_on_poison(path, spec, whole=True):
    """A checker whose process dies on one file (as a decoder segfault would)."""
    if path.endswith("poison.mp4"):
        os._exit(3)
    return _REAL_CHECK(path, spec, whole)


_REAL_CHECK = check._check_video_info


def test_a_decoder_crash_is_a_verdict_about_that_file(planted, tmp_path, monkeypatch):
    folder, _, bad = planted
    poison = fault_files.good_video(str(tmp_path / "poison.mp4"), seed=1)
    listing = tmp_path / "l.csv"
    entries = [(os.path.join(folder, "good_0.mp4"), 0), (poison, 1), (bad["empty"], 0),
               (os.path.join(folder, "good_1.mp4"), 1)]
    fault_files.write_list(str(listing), entries)
    monkeypatch.setattr(check, "_check_video_info", _crash_on_poison)  # the forked workers inherit the patch
    report = check_video_lists([str(listing)], workers=2)
    assert {b["path"]: b["kind"] for b in report["bad"]} == {poison: "undecodable", bad["empty"]: "empty"}
    assert "crashed" in report["bad"][0]["problem"]


def test_progress_bar_counts_every_file_with_a_rate(planted, tmp_path, capsys):
    folder, _, _ = planted
    listing = tmp_path / "l.csv"
    fault_files.write_list(str(listing), [(os.path.join(folder, f"good_{i}.mp4"), 0) for i in range(3)])
    report = run_check([str(listing)], progress=True)
    err = capsys.readouterr().err
    assert report["bad"] == [] and "checking videos" in err and "3/3" in err


def test_cli_takes_sampling_prefix_and_classes_from_a_run_config(planted, tmp_path):
    folder, _, bad = planted
    cfg_file = fault_files.write_yaml(str(tmp_path / "run.yaml"), {
        "DATA": {"NUM_FRAMES": 4, "SAMPLING_RATE": 3, "TARGET_FPS": 10, "PATH_PREFIX": folder},  # 12 frames
        "MODEL": {"NUM_CLASSES": 2}})
    listing = tmp_path / "l.csv"
    listing.write_text("good_0.mp4 1\ngood_1.mp4 5\nbad/one_frame.mp4 0\n")
    spec = importlib.util.spec_from_file_location("check_videos_cli", TOOL)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    report_file = tmp_path / "r.json"
    status = cli.main([str(listing), "--cfg", cfg_file, "--workers", "0", "--json", str(report_file)])
    report = json.loads(report_file.read_text())
    assert status == 1
    assert [(b["line"], b["kind"]) for b in report["bad"]] == [(2, "malformed"), (3, "too_short")]
    assert "one clip spans 12" in report["bad"][1]["problem"] and report["bad"][1]["path"] == bad["one_frame"]
    # an explicit flag wins over the config: 1 frame per clip makes the one-frame clip usable
    status = cli.main([str(listing), "--cfg", cfg_file, "--workers", "0", "--num-frames", "1", "--sampling-rate",
                       "1", "--json", str(report_file)])
    assert [b["kind"] for b in json.loads(report_file.read_text())["bad"]] == ["malformed"]


def test_byte_order_mark_and_crlf_line_ends_are_not_part_of_the_path(planted, tmp_path):
    folder, _, bad = planted
    listing = tmp_path / "excel.csv"
    good = os.path.join(folder, "good_0.mp4")
    listing.write_bytes(f"\ufeff{good} 0\r\n{bad['empty']} 1\r\n".encode("utf-8"))
    report = run_check([str(listing)], write_clean=str(tmp_path / "clean.csv"))
    assert [(b["line"], b["path"], b["kind"]) for b in report["bad"]] == [(2, bad["empty"], "empty")]
    assert (tmp_path / "clean.csv").read_text() == f"{good} 0\n"


def test_cli_missing_list_is_a_one_line_error(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("check_videos_cli", TOOL)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main([str(tmp_path / "nope.csv"), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"check_videos: error: video list not found: {tmp_path / 'nope.csv'}"
