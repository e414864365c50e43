"""Every config file shipped in configs/ loads and validates (against the registered models)."""
import glob
import os

import pytest
import yaml

from mtnet_plugin.config import load_config, validate_cfg
from mtnet_plugin.models import MODEL_REGISTRY, registered_names
from mtnet_plugin.models.build import model_name_from_config

ROOT = os.path.join(os.path.dirname(__file__), "..", "configs")
FILES = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "**", "*.yaml"), recursive=True))


def test_the_configs_the_issue_asks_for_exist():
    for folder in ("HACS", "Kinetics", "Kinetics700", "MiT"):
        for size in "SML":
            assert f"{folder}/MTNet_{size}.yaml" in FILES
    for size in "SML":
        assert f"UCF101/MTNet_{size}_finetune.yaml" in FILES
        assert f"Kinetics/X3D_{size}.yaml" in FILES and f"HACS/X3D_{size}.yaml" in FILES


def _leaves(data, prefix=""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        elif key != "_BASE_":
            yield f"{prefix}{key}", value


def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b)
    return a == b


@pytest.mark.parametrize("name", [f for f in FILES if "_base_" in f.split(os.sep)])
def test_base_fragment_loads_with_the_values_it_sets(name):
    path = os.path.join(ROOT, name)
    cfg = load_config([path])
    with open(path) as f:
        values = dict(_leaves(yaml.safe_load(f) or {}))
    assert values, f"{name} sets nothing"
    for key, value in values.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert _same(node, value), f"{name}: {key} is {node!r} after loading, the file says {value!r}"


@pytest.mark.parametrize("name", [f for f in FILES if "_base_" not in f.split(os.sep)])
def test_config_loads_and_validates(name):
    cfg = load_config([os.path.join(ROOT, name)])
    validate_cfg(cfg, check_devices=False, model_name=model_name_from_config(cfg),
                 registered_models=registered_names(MODEL_REGISTRY))


# The paper's datasets; configs/Synthetic is the CPU demo, sized for minutes, not the paper's protocol.
@pytest.mark.parametrize("name", [f for f in FILES if "MTNet" in f and not f.startswith("Synthetic")])
def test_mtnet_configs_follow_the_paper_protocol(name):
    cfg = load_config([os.path.join(ROOT, name)])
    folder = name.split(os.sep)[0]
    stride = {"HACS": 2, "Kinetics": 5, "Kinetics700": 5, "MiT": 3, "UCF101": 4}[folder]
    assert cfg.MODEL.ARCH == "mtnet" and model_name_from_config(cfg) == "MTNet"
    assert cfg.DATA.SAMPLING_RATE == stride
    assert cfg.TRAIN.BATCH_SIZE == 64 and cfg.TRAIN.MIXED_PRECISION
    assert cfg.MULTIGRID.LONG_CYCLE and cfg.MULTIGRID.SHORT_CYCLE
    assert (cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS) == (10, 3)
    assert (cfg.SOLVER.MOMENTUM, cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.LR_POLICY) == (0.9, 5e-5, "cosine")
    size = name.split("MTNet_")[1][0]
    frames, crop = {"S": (13, 160), "M": (16, 224), "L": (16, 312)}[size]  # spec decision 18
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE) == (frames, crop)
    if folder == "UCF101":
        assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.WARMUP_EPOCHS, cfg.SOLVER.MAX_EPOCH) == (0.01, 0.0, 150)
        assert cfg.SOLVER.CONV_WEIGHT_LR_MULT == 0.1
    else:
        assert cfg.SOLVER.MAX_EPOCH == 400 and cfg.SOLVER.WARMUP_EPOCHS > 0
        assert cfg.SOLVER.BASE_LR == pytest.approx(0.1 * 64 / 128)  # spec decision 20


@pytest.mark.parametrize("name", [f for f in FILES if "_base_" not in f.split(os.sep)])
def test_each_file_names_the_paper_table(name):
    with open(os.path.join(ROOT, name)) as f:
        assert "Table" in f.read()
