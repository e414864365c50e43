"""Every YAML under configs/ builds a network in which every trainable parameter learns.

Each file is built with only the input made small (frames, crop sizes) and the class count changed; then two SGD
steps on random clips. A ``_base_`` fragment that names no model (dataset, protocol and geometry fragments) is
built over ``_base_/mtnet.yaml``. Files that build the same network (the same model arguments, e.g.
HACS/MTNet_L.yaml and MiT/MTNet_L.yaml once their inputs and classes are made small) share one check. After the second backward pass every trainable parameter must have a finite gradient that is not
zero everywhere. One step is not enough by design: a zero-initialised residual branch (X3D's final BN, MTBlock's
Squeeze and Recursion, docs/spec-decisions.md "zero-initialised blocks") passes a gradient to its other parameters
once the first step has moved its zeroed weights.
"""
import glob
import os

import pytest
import torch

from mtnet_plugin.config import load_config
from mtnet_plugin.models import MODEL_REGISTRY, build_model, registered_names
from mtnet_plugin.models.build import get_registered, model_name_from_config

ROOT = os.path.join(os.path.dirname(__file__), "..", "configs")
FILES = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "**", "*.yaml"), recursive=True))
SMALL = ["DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "MODEL.NUM_CLASSES", "3"]


def params_without_gradient(cfg, steps: int = 2, seed: int = 0) -> "list[str]":
    """Names of trainable parameters whose gradient after ``steps`` SGD steps is missing, non-finite or all 0."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    size = cfg.DATA.TRAIN_CROP_SIZE
    for _ in range(steps):
        clips = torch.randn(2, 3, cfg.DATA.NUM_FRAMES, size, size)
        labels = torch.randint(0, cfg.MODEL.NUM_CLASSES, (2,))
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(clips), labels).backward()
        optimizer.step()
    return [name for name, p in model.named_parameters() if p.requires_grad and (
        p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any())]


_CHECKED = {}


def small_config(name: str):
    """The file's config with SMALL applied; over _base_/mtnet.yaml when the file names no registered model."""
    path = os.path.join(ROOT, name)
    cfg = load_config([path], SMALL)
    if model_name_from_config(cfg) not in registered_names(MODEL_REGISTRY):
        cfg = load_config([path, os.path.join(ROOT, "_base_", "mtnet.yaml")], SMALL)
    return cfg


def test_every_shipped_config_is_covered():
    assert len(FILES) >= 35  # 20 paper configs, 2 demo configs, 13 _base_ fragments (and the recipes)
    assert "HACS/MTNet_M.yaml" in FILES and "_base_/x3d_S.yaml" in FILES


@pytest.mark.parametrize("name", FILES)
def test_every_trainable_parameter_gets_a_gradient(name):
    cfg = small_config(name)
    model_name = model_name_from_config(cfg)
    key = (model_name, repr(sorted(get_registered(MODEL_REGISTRY, model_name).from_config(cfg).items())))
    if key not in _CHECKED:
        _CHECKED[key] = (name, params_without_gradient(cfg), sum(p.requires_grad for p in build_model(cfg).parameters()))
    first, dead, total = _CHECKED[key]
    assert not dead, (f"{name} (the network of {first}): {len(dead)} of {total} trainable parameters get no "
                      f"gradient, e.g. {dead[:5]}")
