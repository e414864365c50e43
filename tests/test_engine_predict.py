"""Prediction on video files (mtnet_plugin/engine/predict.py, tools/predict.py): same views and numbers as the test
split, broken files reported and skipped, class names from every source, the CLI's JSON lines."""
import importlib.util
import json
import os

import pytest
import torch
import torch.nn.functional as F
import yaml

from mtnet_plugin.config import get_cfg, load_config
from mtnet_plugin.data import KineticsDataset
from mtnet_plugin.engine.checkpoint import save_checkpoint
from mtnet_plugin.engine.predict import load_class_names, parse_views, predict
from mtnet_plugin.models import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["slow", "medium", "fast"]


def tiny_cfg_dict(data_dir: str, out_dir: str) -> dict:
    """A tiny MTNet (3 classes, 6 frames so frame selection keeps 3, 32 px crops) testing on CPU."""
    return {
        "MODEL": {"MODEL_NAME": "MTNet", "ARCH": "mtnet", "NUM_CLASSES": 3, "DROPOUT_RATE": 0.0},
        "X3D": {"WIDTH_FACTOR": 0.5, "DEPTH_FACTOR": 0.2, "DIM_C1": 4, "DIM_C5": 16, "BOTTLENECK_FACTOR": 1.0},
        "DATA": {"PATH_TO_DATA_DIR": data_dir, "NUM_FRAMES": 6, "SAMPLING_RATE": 1, "TARGET_FPS": 10,
                 "TRAIN_JITTER_SCALES": [32, 40], "TRAIN_CROP_SIZE": 32, "TEST_CROP_SIZE": 32},
        "TEST": {"BATCH_SIZE": 4, "NUM_ENSEMBLE_VIEWS": 2, "NUM_SPATIAL_CROPS": 3},
        "DATA_LOADER": {"NUM_WORKERS": 0, "PIN_MEMORY": False},
        "NUM_GPUS": 0,
        "OUTPUT_DIR": out_dir,
    }


def save_tiny_checkpoint(tmp_path, data_dir: str, seed: int = 0, **sections):
    """Fixed-seed weights (BN affine and running stats drawn too, so classes differ) saved like the trainer saves.

    Returns ``(cfg_path, checkpoint_path, cfg)``.
    """
    d = tiny_cfg_dict(data_dir, str(tmp_path / "out"))
    for node, values in sections.items():
        d[node].update(values)
    cfg_path = str(tmp_path / "tiny.yaml")
    with open(cfg_path, "w") as f:
        yaml.safe_dump(d, f)
    cfg = load_config([cfg_path])
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    ckpt = save_checkpoint(cfg.OUTPUT_DIR, model, torch.optim.SGD(model.parameters(), lr=0.1), 0, cfg)
    return cfg_path, ckpt, cfg


@pytest.fixture
def setup(tmp_path, make_video_list):
    """Four tiny videos listed in test.csv, classes.txt beside them, a tiny checkpoint."""
    data_dir = make_video_list(split="test", num_videos=3, num_classes=3, num_frames=12, height=32, width=48)
    with open(os.path.join(data_dir, "classes.txt"), "w") as f:
        f.write("\n".join(NAMES) + "\n")
    cfg_path, ckpt, cfg = save_tiny_checkpoint(tmp_path, data_dir)
    with open(os.path.join(data_dir, "test.csv")) as f:
        videos = [line.split(" ")[0] for line in f.read().splitlines()]
    return {"cfg_path": cfg_path, "ckpt": ckpt, "cfg": cfg, "videos": videos, "data_dir": data_dir}


def reference_probs(cfg, ckpt_path, method):
    """Per-video class probabilities computed here: the test split's samples, one view at a time, the checkpoint
    loaded strictly, softmax per view, then mean (sum / views) or element-wise max."""
    model = build_model(cfg)
    model.load_state_dict(torch.load(ckpt_path, weights_only=True)["model_state"])
    model.eval()
    dataset = KineticsDataset(cfg, "test")
    per_video = {}
    with torch.no_grad():
        for i in range(len(dataset)):
            s = dataset[i]
            assert not s["failed"]
            per_video.setdefault(s["video_idx"], []).append(F.softmax(model(s["inputs"][None]), dim=1)[0])
    out = []
    for v in sorted(per_video):
        views = torch.stack(per_video[v])
        assert len(views) == cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
        out.append(views.mean(0) if method == "sum" else views.max(0).values)
    return out


@pytest.mark.parametrize("method", ["sum", "max"])
def test_predict_matches_the_test_pipeline_and_is_deterministic(setup, tmp_path, method):
    cfg = setup["cfg"]
    cfg.DATA.ENSEMBLE_METHOD = method
    results = predict(setup["videos"], setup["cfg_path"], setup["ckpt"], topk=2, device="cpu",
                      opts=["DATA.ENSEMBLE_METHOD", method])
    expected = reference_probs(cfg, setup["ckpt"], method)
    assert [r["video"] for r in results] == setup["videos"]
    for r, probs in zip(results, expected):
        assert set(r) == {"video", "topk", "views"} and r["views"] == 6
        assert len(r["topk"]) == 2
        ref = probs.topk(2)
        assert [t["index"] for t in r["topk"]] == ref.indices.tolist()
        assert [t["label"] for t in r["topk"]] == [NAMES[i] for i in ref.indices.tolist()]  # classes.txt
        assert [t["prob"] for t in r["topk"]] == pytest.approx(ref.values.tolist(), abs=1e-6)
        assert r["topk"][0]["prob"] >= r["topk"][1]["prob"]
    if method == "sum":  # the mean of softmax vectors is a distribution
        assert all(p.sum().item() == pytest.approx(1.0, abs=1e-5) for p in expected)
    # a second run is identical, also when the config comes from the checkpoint
    again = predict(setup["videos"], None, setup["ckpt"], topk=2, device="cpu",
                    opts=["DATA.ENSEMBLE_METHOD", method])
    assert again == results
    assert len({round(r["topk"][0]["prob"], 6) for r in results}) > 1  # the videos get different scores


def test_views_override_and_topk_bounded_by_classes(setup):
    results = predict(setup["videos"][:2], setup["cfg_path"], setup["ckpt"], topk=10, views="1x1", device="cpu")
    assert [r["views"] for r in results] == [1, 1]
    for r in results:
        assert sorted(t["index"] for t in r["topk"]) == [0, 1, 2]
        assert sum(t["prob"] for t in r["topk"]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="views"):
        predict(setup["videos"][:1], setup["cfg_path"], setup["ckpt"], views="ten")


def test_broken_files_are_reported_and_the_others_still_run(setup, tmp_path):
    corrupt = str(tmp_path / "corrupt.mp4")
    with open(corrupt, "wb") as f:
        f.write(os.urandom(2048))
    missing = str(tmp_path / "missing.mp4")
    good = setup["videos"][:2]
    videos = [good[0], corrupt, missing, good[1]]
    results = predict(videos, setup["cfg_path"], setup["ckpt"], topk=3, views="1x1", device="cpu")
    assert [r["video"] for r in results] == videos
    for bad in (results[1], results[2]):
        assert set(bad) == {"video", "error"} and bad["video"] in bad["error"]
    assert "not found" in results[2]["error"]
    alone = predict(good, setup["cfg_path"], setup["ckpt"], topk=3, views="1x1", device="cpu")
    assert [results[0], results[3]] == alone


def test_checkpoint_that_does_not_fit_the_config_is_an_error(setup):
    with pytest.raises(ValueError, match="does not fit"):
        predict(setup["videos"][:1], setup["cfg_path"], setup["ckpt"], opts=["MODEL.NUM_CLASSES", "4"])


def test_class_names_sources(tmp_path):
    cfg = get_cfg()
    cfg.MODEL.NUM_CLASSES = 3
    assert load_class_names(cfg) == ["0", "1", "2"]  # fallback: the index
    assert load_class_names(cfg, {"class_names": ["a", "b", "c"]}) == ["a", "b", "c"]  # stored in the checkpoint
    (tmp_path / "classes.txt").write_text("x\ny\nz\n")
    cfg.DATA.PATH_TO_DATA_DIR = str(tmp_path)
    assert load_class_names(cfg) == ["x", "y", "z"]  # the data folder's classes.txt
    names_json = tmp_path / "names.json"
    names_json.write_text(json.dumps({"run": 2, "walk": 0, "jump": 1}))  # PySlowFast's {name: id}
    cfg.TENSORBOARD.CLASS_NAMES_PATH = str(names_json)
    assert load_class_names(cfg, {"class_names": ["a", "b", "c"]}) == ["walk", "jump", "run"]
    short = tmp_path / "short.txt"
    short.write_text("only\n")
    assert load_class_names(cfg, class_names=str(short)) == ["only", "1", "2"]  # explicit file wins
    assert load_class_names(cfg, class_names=["p", "q", "r"]) == ["p", "q", "r"]
    with pytest.raises(ValueError):
        load_class_names(cfg, class_names=["p"])
    with pytest.raises(FileNotFoundError):
        load_class_names(cfg, class_names=str(tmp_path / "nope.txt"))


def test_parse_views():
    assert parse_views("10x3") == (10, 3) and parse_views("1X1") == (1, 1)
    for bad in ("10", "0x3", "ax3", "1x2x3"):
        with pytest.raises(ValueError):
            parse_views(bad)


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_json_prints_one_object_per_video(setup, tmp_path, capsys):
    tool = _tool("predict")
    corrupt = str(tmp_path / "corrupt.mp4")
    with open(corrupt, "wb") as f:
        f.write(b"\x00not a video" * 50)
    videos = setup["videos"][:2] + [corrupt]
    common = ["--cfg", setup["cfg_path"], "--checkpoint", setup["ckpt"], "--views", "1x1", "--device", "cpu"]
    code = tool.main(videos + common + ["--topk", "2", "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1  # one video failed
    objs = [json.loads(line) for line in lines]
    assert [o["video"] for o in objs] == videos
    expected = predict(videos[:2], setup["cfg_path"], setup["ckpt"], topk=2, views="1x1", device="cpu")
    assert objs[:2] == json.loads(json.dumps(expected))
    assert set(objs[2]) == {"video", "error"} and corrupt in objs[2]["error"]
    assert tool.main(videos[:1] + common + ["--topk", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{videos[0]} (1 views)") and expected[0]["topk"][0]["label"] in text
    assert tool.main(videos[:1] + ["--cfg", setup["cfg_path"], "--checkpoint", str(tmp_path / "none.pyth")]) == 2
