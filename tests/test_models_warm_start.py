"""X3D -> MTNet warm start (MTNET.INIT_FROM_X3D): on a randomly initialised PySlowFast-layout X3D state dict, every
mapped tensor equals its X3D source (whole, or the local branch's first channels), the rest keeps MTNet's
initialisation, and the counts add up."""
import json
import os
import re

import pytest
import torch

from mtnet_plugin.config import ConfigError, load_config, validate_cfg
from mtnet_plugin.models import build_model, create_mtnet, create_x3d
from mtnet_plugin.models.warm_start import init_from_x3d, map_x3d_state
from test_engine_trainer import tiny_cfg

SIZE = dict(width_factor=2.0, depth_factor=0.5, dim_c1=12, dim_c5=32, bottleneck_factor=2.25)


def _random_x3d(num_classes=3, seed=0):
    torch.manual_seed(seed)
    x3d = create_x3d(num_classes=num_classes, **SIZE)
    state = x3d.state_dict()
    for k, v in state.items():  # every tensor random, BN statistics too: equality then means "copied"
        if v.is_floating_point():
            v.copy_(torch.rand_like(v) + 0.5 if "running_var" in k else torch.randn_like(v))
        else:
            v.fill_(7)
    return state


def _expected_target(name):
    """The rule of docs/ecosystem.md, written out independently of the module."""
    m = re.match(r"(.*\.branch2)\.([abc])(_bn)?\.(\w+)$", name)
    if m is None:
        return name
    return f"{m[1]}.conv_{m[2]}.{'bn_local' if m[3] else 'conv_local'}.{m[4]}"


@pytest.mark.parametrize("delta", [0.875, 0.5])
def test_every_mapped_tensor_equals_its_x3d_source(delta):
    x3d = _random_x3d()
    torch.manual_seed(1)
    mtnet = create_mtnet(num_classes=3, delta=delta, **SIZE)
    fresh = {k: v.clone() for k, v in mtnet.state_dict().items()}
    report = init_from_x3d(mtnet, x3d)
    state = mtnet.state_dict()
    checked = set()
    for name, value in x3d.items():
        if ".branch2.se." in name:
            continue
        target = _expected_target(name)
        got = state[target]
        assert got.shape <= value.shape
        assert torch.equal(got, value[tuple(slice(0, n) for n in got.shape)]), target
        if target != name and value.dim() >= 1:
            # the local branch's share: floor(delta * C) output channels
            assert got.shape[0] == int(delta * value.shape[0] + 1e-9), target
        checked.add(target)
    assert checked == set(state) - set(report["from_scratch"])
    for name in report["from_scratch"]:  # prolonged branches and SR: untouched
        assert re.search(r"\.(conv_p|conv_lp|bn_p|bn_lp)\.|\.sr\.", name), name
        assert torch.equal(state[name], fresh[name])
    se = [k for k in x3d if ".branch2.se." in k]
    c = report["counts"]
    assert c["not_copied"] == len(se) > 0
    assert c["copied"] + c["local"] + c["not_copied"] == len(x3d)
    assert c["copied"] + c["local"] + c["from_scratch"] == len(state)
    assert c["copied"] == len([k for k in x3d if ".branch2." not in k])
    assert all(" <- " in line for line in report["local"])


def test_another_class_count_keeps_the_head_projection_fresh():
    x3d = _random_x3d(num_classes=400)
    torch.manual_seed(1)
    mtnet = create_mtnet(num_classes=3, **SIZE)
    before = mtnet.head.projection.weight.clone()
    report = init_from_x3d(mtnet, x3d)
    assert torch.equal(mtnet.head.projection.weight, before)
    assert torch.equal(mtnet.head.conv_5.weight, x3d["head.conv_5.weight"])
    assert sum("head.projection" in line for line in report["not_copied"]) == 2


def test_an_x3d_of_another_size_is_refused():
    torch.manual_seed(0)
    other = create_x3d(num_classes=3, **{**SIZE, "width_factor": 1.0}).state_dict()
    with pytest.raises(ValueError, match="same width and depth"):
        init_from_x3d(create_mtnet(num_classes=3, **SIZE), other)


def test_init_from_x3d_key_starts_a_run_from_the_checkpoint(tmp_path):
    x3d_cfg = tiny_cfg(tmp_path, str(tmp_path))
    torch.manual_seed(0)
    x3d = build_model(x3d_cfg)
    for p in x3d.parameters():
        p.data.normal_()
    path = str(tmp_path / "x3d.pyth")
    torch.save({"epoch": 9, "model_state": x3d.state_dict()}, path)
    from mtnet_plugin.engine import Trainer

    cfg = tiny_cfg(tmp_path, str(tmp_path), MODEL={"ARCH": "mtnet"}, MTNET={"INIT_FROM_X3D": path})
    trainer = Trainer(cfg)
    model = trainer.model
    assert trainer.start_epoch == 0
    assert torch.equal(model.s1.pathway0_stem.conv_xy.weight, x3d.s1.pathway0_stem.conv_xy.weight)
    local = model.s3.pathway0_res0.branch2.conv_a.conv_local.weight
    assert torch.equal(local, x3d.s3.pathway0_res0.branch2.a.weight[: local.shape[0]])
    with open(os.path.join(cfg.OUTPUT_DIR, "init_from_x3d.json")) as f:
        saved = json.load(f)
    assert saved["source"] == path and saved["counts"]["local"] > 0
    bad = load_config([])
    bad.MTNET.INIT_FROM_X3D, bad.TRAIN.CHECKPOINT_FILE_PATH = path, path
    with pytest.raises(ConfigError, match="MTNET.INIT_FROM_X3D"):
        validate_cfg(bad, check_devices=False)
