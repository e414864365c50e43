"""tools/make_lists.py on small excerpts of each data set's official annotation layout (written here): the lists
written must equal hand-written golden files, missing videos are reported, malformed lines name file:line, and the
lists load in the runtime's own parser with the labels intended."""
import importlib.util
import json
import os

import pytest

from mtnet_plugin.data.video_list import read_video_list

TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "make_lists.py")


def _cli():
    spec = importlib.util.spec_from_file_location("make_lists_cli", TOOL)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli.main


def _touch(root, *names):
    for name in names:
        path = os.path.join(str(root), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()


def _write(path, text, mode="w"):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), mode) as f:
        f.write(text)
    return str(path)


def _read(out, name):
    with open(os.path.join(str(out), name)) as f:
        return f.read()


def _run(argv, capsys):
    code = _cli()(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- UCF-101 ----------------------------------------------------------------------------------------------------

CLASS_IND = "1 ApplyEyeMakeup\r\n2 ApplyLipstick\r\n3 HandstandPushups\r\n"
TRAIN01 = ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nApplyLipstick/v_ApplyLipstick_g08_c01.avi 2\r\n"
           "HandstandPushups/v_HandStandPushups_g08_c01.avi 3\r\n")
TEST01 = ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\nApplyLipstick/v_ApplyLipstick_g01_c01.avi\r\n"
          "HandstandPushups/v_HandStandPushups_g01_c01.avi\r\n")


@pytest.fixture
def ucf(tmp_path):
    ann = tmp_path / "ucfTrainTestlist"
    _write(ann / "classInd.txt", CLASS_IND)
    _write(ann / "trainlist01.txt", TRAIN01)
    _write(ann / "testlist01.txt", TEST01)
    videos = tmp_path / "UCF-101"
    for text in (TRAIN01, TEST01):
        _touch(videos, *[line.split()[0] for line in text.splitlines()])
    return str(ann), str(videos)


def test_ucf101_golden(ucf, tmp_path, capsys):
    ann, videos = ucf
    out = tmp_path / "lists"
    code, stdout, _ = _run(["ucf101", "--annotations", ann, "--videos", videos, "--out", str(out)], capsys)
    assert code == 0
    v = videos
    assert _read(out, "train.csv") == (f"{v}/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0\n"
                                       f"{v}/ApplyLipstick/v_ApplyLipstick_g08_c01.avi 1\n"
                                       f"{v}/HandstandPushups/v_HandStandPushups_g08_c01.avi 2\n")
    test = (f"{v}/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 0\n{v}/ApplyLipstick/v_ApplyLipstick_g01_c01.avi 1\n"
            f"{v}/HandstandPushups/v_HandStandPushups_g01_c01.avi 2\n")
    assert _read(out, "test.csv") == test and _read(out, "val.csv") == test
    assert _read(out, "classes.txt") == "ApplyEyeMakeup\nApplyLipstick\nHandstandPushups\n"
    assert "3 classes" in stdout and "MODEL.NUM_CLASSES 3" in stdout and "val.csv is the test list" in stdout
    # the runtime reads them with NUM_CLASSES 3 (the 1-based label 3 of the official file no longer fails)
    assert [e.label for e in read_video_list(str(out / "train.csv"), num_classes=3)] == [0, 1, 2]


def test_ucf101_reports_missing_videos_and_leaves_them_out(ucf, tmp_path, capsys):
    ann, videos = ucf
    os.remove(os.path.join(videos, "ApplyLipstick/v_ApplyLipstick_g01_c01.avi"))
    out = tmp_path / "lists"
    code, stdout, _ = _run(["ucf101", "--annotations", ann, "--videos", videos, "--out", str(out)], capsys)
    assert code == 0
    assert "1 annotated videos are missing on disk (1 val, 1 test)" not in stdout  # val is a copy, counted once
    assert "1 annotated videos are missing on disk (1 test)" in stdout
    assert f"{ann}/testlist01.txt:2" in stdout
    assert len(_read(out, "test.csv").splitlines()) == 2
    assert _read(out, "missing.txt") == (f"test\t{ann}/testlist01.txt:2\t"
                                         f"{videos}/ApplyLipstick/v_ApplyLipstick_g01_c01.avi\n")


@pytest.mark.parametrize("bad, message", [
    ("ApplyLipstick/v_ApplyLipstick_g09_c01.avi 1\n", "label 1 (1-based) is class 1 of classInd.txt, but the folder "
                                                      "'ApplyLipstick' is class 2"),
    ("Archery/v_Archery_g01_c01.avi 4\n", "class folder 'Archery' is not in classInd.txt"),
    ("ApplyLipstick/v_ApplyLipstick_g09_c01.avi two\n", "label 'two' is not an integer"),
])
def test_ucf101_malformed_line_names_file_and_line(ucf, tmp_path, capsys, bad, message):
    ann, videos = ucf
    _write(os.path.join(ann, "trainlist01.txt"), TRAIN01 + bad)
    code, _, err = _run(["ucf101", "--annotations", ann, "--videos", videos, "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert f"{ann}/trainlist01.txt:4: {message}" in err


# -- Kinetics ---------------------------------------------------------------------------------------------------

K_TRAIN = ("label,youtube_id,time_start,time_end,split,is_cc\n"
           "abseiling,--07WQ2iBlw,1,11,train,0\n"
           "playing guitar,-0G4Eaz6Isw,25,35,train,0\n"
           '"massaging person\'s head",0Xxx3XtvKzM,140,150,train,1\n'
           "abseiling,missingvid1,3,13,train,0\n")
K_VAL = "label,youtube_id,time_start,time_end,split\nplaying guitar,zZzuntrimd,30,40,val\n"


def test_kinetics_golden(tmp_path, capsys):
    root = tmp_path / "k400"
    _touch(root, "train/abseiling/--07WQ2iBlw_000001_000011.mp4",
           "train/playing guitar/-0G4Eaz6Isw_000025_000035.mp4",
           "train/massaging person's head/0Xxx3XtvKzM_000140_000150.mkv",
           "raw/zZzuntrimd.webm")  # an untrimmed download: the line gets the segment
    train = _write(tmp_path / "ann" / "train.csv", K_TRAIN)
    val = _write(tmp_path / "ann" / "validate.csv", K_VAL)
    out = tmp_path / "lists"
    code, stdout, _ = _run(["kinetics", "--csv", train, val, "--videos", str(root), "--out", str(out)], capsys)
    assert code == 0
    r = str(root)
    assert _read(out, "classes.txt") == "abseiling\nmassaging person's head\nplaying guitar\n"
    assert _read(out, "train.csv") == (f"{r}/train/abseiling/--07WQ2iBlw_000001_000011.mp4 0\n"
                                       f'"{r}/train/playing guitar/-0G4Eaz6Isw_000025_000035.mp4" 2\n'
                                       f"\"{r}/train/massaging person's head/0Xxx3XtvKzM_000140_000150.mkv\" 1\n")
    assert _read(out, "val.csv") == f"{r}/raw/zZzuntrimd.webm#t=30,40 2\n"
    assert "1 annotated videos are missing on disk (1 train)" in stdout
    assert f"{train}:5: missingvid1_000003_000013.* or missingvid1.*" in stdout
    entries = read_video_list(str(out / "train.csv"), num_classes=3)
    assert [(os.path.basename(e.path), e.label) for e in entries] == [
        ("--07WQ2iBlw_000001_000011.mp4", 0), ("-0G4Eaz6Isw_000025_000035.mp4", 2),
        ("0Xxx3XtvKzM_000140_000150.mkv", 1)]
    (seg,) = read_video_list(str(out / "val.csv"))
    assert (seg.start, seg.end, seg.label) == (30.0, 40.0, 2)


def test_kinetics_class_order_file_and_bad_rows(tmp_path, capsys):
    root = tmp_path / "k"
    _touch(root, "--07WQ2iBlw_000001_000011.mp4")
    classes = _write(tmp_path / "names.json", json.dumps({"playing guitar": 0, "abseiling": 1,
                                                          "massaging person's head": 2}))
    train = _write(tmp_path / "train.csv", K_TRAIN)
    out = tmp_path / "o"
    assert _run(["kinetics", "--csv", train, "--videos", str(root), "--out", str(out), "--classes", classes],
                capsys)[0] == 0
    assert _read(out, "train.csv") == f"{root}/--07WQ2iBlw_000001_000011.mp4 1\n"
    bad = _write(tmp_path / "bad.csv", K_TRAIN + "abseiling,xyz,ten,20,train,0\n")
    code, _, err = _run(["kinetics", "--csv", bad, "--videos", str(root), "--out", str(out)], capsys)
    assert code == 2 and f"{bad}:6: time_start 'ten' is not a number" in err
    bad = _write(tmp_path / "bad2.csv", "youtube_id,start,end\n")
    code, _, err = _run(["kinetics", "--csv", bad, "--videos", str(root), "--out", str(out)], capsys)
    assert code == 2 and f"{bad}:1: header" in err and "time_start" in err


# -- HACS -------------------------------------------------------------------------------------------------------

HACS_CSV = ("classname,youtube_id,subset,start,end,label\n"
            "Archery,--0edUL8zmA,training,29.5,31.5,1\n"
            "Archery,--0edUL8zmA,training,91.0,93.0,-1\n"
            "Playing guitarra,-0Mst1yQ9uA,validation,12.25,14.25,1\n"
            "Archery,nothere,training,1,3,1\n")
HACS_JSON = {"database": {
    "--0edUL8zmA": {"subset": "training", "duration": 120.0, "url": "",
                    "annotations": [{"label": "Archery", "segment": [10.0, 20.5]}]},
    "-0Mst1yQ9uA": {"subset": "testing", "duration": 30.0, "url": ""}}}


def test_hacs_clips_and_segments_golden(tmp_path, capsys):
    root = tmp_path / "hacs"
    _touch(root, "Archery/v_--0edUL8zmA.mp4", "Playing guitarra/v_-0Mst1yQ9uA.mp4")
    clips = _write(tmp_path / "HACS_clips_v1.1.1.csv", HACS_CSV)
    segs = _write(tmp_path / "HACS_segments_v1.1.1.json", json.dumps(HACS_JSON))
    out = tmp_path / "lists"
    code, stdout, _ = _run(["hacs", "--clips", clips, "--segments", segs, "--videos", str(root), "--out", str(out)],
                           capsys)
    assert code == 0
    r = str(root)
    assert _read(out, "classes.txt") == "Archery\nPlaying guitarra\n"
    assert _read(out, "train.csv") == (f"{r}/Archery/v_--0edUL8zmA.mp4#t=29.5,31.5 0\n"
                                       f"{r}/Archery/v_--0edUL8zmA.mp4#t=10,20.5 0\n")
    assert _read(out, "val.csv") == f'"{r}/Playing guitarra/v_-0Mst1yQ9uA.mp4#t=12.25,14.25" 1\n'
    assert _read(out, "test.csv") == _read(out, "val.csv")
    assert "skipped 1 rows: negative clip (label -1)" in stdout
    assert f"{clips}:5: v_nothere.* or nothere.*" in stdout
    bad = _write(tmp_path / "bad.csv", HACS_CSV + "Archery,x,training,1,3,yes\n")
    code, _, err = _run(["hacs", "--clips", bad, "--videos", str(root), "--out", str(out)], capsys)
    assert code == 2 and f"{bad}:6: label 'yes' is neither 1 (positive) nor -1" in err


# -- Moments in Time ----------------------------------------------------------------------------------------------

def test_mit_golden(tmp_path, capsys):
    root = tmp_path / "Moments_in_Time_Raw"
    _touch(root, "training/applauding/flickr-0-0-1.mp4", "training/barking/yt-abc_12.mp4",
           "validation/barking/yt-def_3.mp4")
    train = _write(tmp_path / "trainingSet.csv", "applauding/flickr-0-0-1.mp4,applauding,3,0\n"
                                                 "barking/yt-abc_12.mp4,barking,4,1\n")
    val = _write(tmp_path / "validationSet.csv",
                 "barking/yt-def_3.mp4,barking,4,0\napplauding/gone.mp4,applauding,3,0\n")
    cats = _write(tmp_path / "moments_categories.txt", "applauding,0\nbarking,1\nzooming,2\n")
    out = tmp_path / "lists"
    code, stdout, _ = _run(["mit", "--csv", train, val, "--classes", cats, "--videos", str(root), "--out", str(out)],
                           capsys)
    assert code == 0
    r = str(root)
    assert _read(out, "classes.txt") == "applauding\nbarking\nzooming\n"
    assert _read(out, "train.csv") == (f"{r}/training/applauding/flickr-0-0-1.mp4 0\n"
                                       f"{r}/training/barking/yt-abc_12.mp4 1\n")
    assert _read(out, "val.csv") == f"{r}/validation/barking/yt-def_3.mp4 1\n" == _read(out, "test.csv")
    assert f"{val}:2: {r}/validation/applauding/gone.mp4" in stdout
    bad = _write(tmp_path / "trainingSet_bad.csv", "applauding/x.mp4\n")
    code, _, err = _run(["mit", "--csv", bad, "--videos", str(root), "--out", str(out)], capsys)
    assert code == 2 and f"{bad}:1: expected 'class/file.mp4,class,...'" in err


# -- one folder per class -----------------------------------------------------------------------------------------

def test_folder_golden(tmp_path, capsys):
    root = tmp_path / "myset"
    _touch(root, "cat/a.mp4", "cat/b.mp4", "cat/c.avi", "cat/notes.txt", "dog walking/x.mp4", "dog walking/y.mp4")
    out = tmp_path / "lists"
    code, _, _ = _run(["folder", "--videos", str(root), "--out", str(out), "--val-fraction", "0.5"], capsys)
    assert code == 0
    r = str(root)
    assert _read(out, "classes.txt") == "cat\ndog walking\n"
    assert _read(out, "train.csv") == f'{r}/cat/a.mp4 0\n{r}/cat/c.avi 0\n"{r}/dog walking/x.mp4" 1\n'
    assert _read(out, "val.csv") == f'{r}/cat/b.mp4 0\n"{r}/dog walking/y.mp4" 1\n' == _read(out, "test.csv")
    # with split folders, they are used as they are
    split_root = tmp_path / "split"
    _touch(split_root, "train/cat/a.mp4", "train/dog/b.mp4", "val/dog/c.mp4")
    out2 = tmp_path / "lists2"
    assert _run(["folder", "--videos", str(split_root), "--out", str(out2)], capsys)[0] == 0
    s = str(split_root)
    assert _read(out2, "train.csv") == f"{s}/train/cat/a.mp4 0\n{s}/train/dog/b.mp4 1\n"
    assert _read(out2, "val.csv") == f"{s}/val/dog/c.mp4 1\n"


def test_non_utf8_annotation_names_file_and_line(ucf, tmp_path, capsys):
    ann, videos = ucf
    _write(os.path.join(ann, "testlist01.txt"), TEST01.encode() + "Caf\u00e9/v.avi\n".encode("latin-1"), "wb")
    code, _, err = _run(["ucf101", "--annotations", ann, "--videos", videos, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and f"{ann}/testlist01.txt:4: not UTF-8 text (byte 0xe9)" in err
