"""Pinned state-dict layouts: refactoring the builders must not rename, add or drop a parameter or buffer.

Checkpoints of ours and PySlowFast's X3D checkpoints load by name with ``strict=True``, so the sorted list of
``name:shape`` entries of every preset (and of a tiny MTNet under each option that changes its layout) is pinned
here as a count, a parameter count and a SHA-256 prefix. Shapes do not depend on the input size.
"""
import hashlib

import pytest
import torch

from mtnet_plugin.models import create_mtnet, create_x3d, preset


def _signature(model: torch.nn.Module):
    """(state-dict entries, parameters, sha256 prefix of the sorted ``name:shape`` lines)."""
    state = model.state_dict()
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(state.items()))
    return len(state), sum(p.numel() for p in model.parameters()), hashlib.sha256(text.encode()).hexdigest()[:16]


# S and M are one network (same width and depth, different inputs): equal rows are expected.
PRESETS = {
    "X3D_S": (568, 3_794_322, "543c76e2b6a50fba"),
    "X3D_M": (568, 3_794_322, "543c76e2b6a50fba"),
    "X3D_L": (1146, 6_153_432, "e541186ee3116279"),
    "MTNet_S": (1652, 8_593_905, "a825e3db00806ebd"),
    "MTNet_M": (1652, 8_593_905, "a825e3db00806ebd"),
    "MTNet_L": (3450, 16_599_331, "d7af89209350b889"),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_layout_is_pinned(name):
    assert _signature(preset(name, num_classes=400)) == PRESETS[name]


# Stem 8, stages 8/16/32/64 wide, blocks 1/1/3/2.
TINY = dict(num_classes=4, width_factor=1.0, depth_factor=0.5, dim_c1=8, dim_c5=16, dropout_rate=0.0)
TINY_MTNET = [
    ({}, (474, 235_485, "7adc7d2be9686014")),
    ({"delta": 1.0}, (222, 220_998, "890c15212daadb0c")),  # no P branch: conv_local + bn_local only
    ({"cell": "lstm_peephole", "sr_layers": 1}, (446, 187_909, "229dcc7d09b3493d")),
    ({"p_input": "split", "lp_kernel": "1x1x1"}, (474, 230_438, "ebc8ffe593dc3d35")),
    ({"symmetric_pool": True, "selection": "none", "pool": "avg"}, (474, 235_485, "7adc7d2be9686014")),
    ({"last_act": False, "cell": "lstm"}, (474, 282_813, "c142e8b71703ffe6")),
]


@pytest.mark.parametrize("options,expected", TINY_MTNET, ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_tiny_mtnet_layout_per_option_is_pinned(options, expected):
    assert _signature(create_mtnet(**TINY, **options)) == expected


def _pyslowfast_x3d_keys(depth_factor: float):
    """The state-dict names of PySlowFast's X3D (slowfast/models/video_model_builder.py ``X3D``), written out
    from its layout rules: stem ``conv_xy``/``conv``/``bn``; per stage ceil(depth * (1, 2, 5, 3)) blocks, the
    first with a ``branch1`` conv + BN shortcut; SE on blocks 0, 2, 4, ...; head conv_5 + BN, lin_5 (no BN: X3D.BN_LIN5
    False), projection."""
    import math

    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["s1.pathway0_stem.conv_xy.weight", "s1.pathway0_stem.conv.weight"]
    keys += [f"s1.pathway0_stem.bn.{b}" for b in bn]
    for stage, basis in enumerate((1, 2, 5, 3), start=2):
        for j in range(int(math.ceil(depth_factor * basis))):
            p = f"s{stage}.pathway0_res{j}."
            if j == 0:
                keys += [p + "branch1.weight"] + [p + f"branch1_bn.{b}" for b in bn]
            for conv in ("a", "b", "c"):
                keys += [p + f"branch2.{conv}.weight"] + [p + f"branch2.{conv}_bn.{b}" for b in bn]
            if j % 2 == 0:
                keys += [p + f"branch2.se.{fc}.{w}" for fc in ("fc1", "fc2") for w in ("weight", "bias")]
    keys += ["head.conv_5.weight"] + [f"head.conv_5_bn.{b}" for b in bn] + ["head.lin_5.weight"]
    keys += ["head.projection.weight", "head.projection.bias"]
    return keys


@pytest.mark.parametrize("depth_factor", [2.2, 5.0], ids=["X3D_S_M", "X3D_L"])
def test_pyslowfast_x3d_layout_loads_strictly(depth_factor):
    torch.manual_seed(0)
    source = create_x3d(num_classes=400, depth_factor=depth_factor)
    keys = _pyslowfast_x3d_keys(depth_factor)
    assert sorted(source.state_dict()) == sorted(keys)
    # A checkpoint written in that layout (other values) loads strictly and every tensor arrives.
    checkpoint = {k: torch.rand_like(v.float()).to(v.dtype) if v.is_floating_point() else v + 3
                  for k, v in source.state_dict().items()}
    target = create_x3d(num_classes=400, depth_factor=depth_factor)
    target.load_state_dict({k: checkpoint[k] for k in keys}, strict=True)
    for k, v in target.state_dict().items():
        assert torch.equal(v, checkpoint[k]), k
