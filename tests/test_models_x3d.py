"""X3D builder (mtnet_plugin/models/x3d.py, heads.py): geometry vs PySlowFast's X3D, head, init, inputs."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtnet_plugin.models import X3DHead, create_x3d
from mtnet_plugin.models.x3d import round_repeats, round_width


# Tiny X3D: stem 4, stages 4/8/16/32 wide, inner 9/18/36/72, blocks 1/1/3/2.
TINY = dict(num_classes=5, width_factor=1.0, depth_factor=0.5, dim_c1=4, dim_c5=16, dropout_rate=0.0)


def _blocks(stage):
    return list(stage.children())


@pytest.fixture(scope="module")
def x3d_m():
    torch.manual_seed(0)
    return create_x3d(num_classes=400)  # X3D-M / X3D-S (same network)


def test_round_width_matches_pyslowfast_rounding():
    # Hand values: 12 * 2 = 24; 24 * 2 rounded to 8 = 48; SE widths 54/16 -> min 8, 216/16 = 13.5 -> 16,
    # 432/16 = 27 -> 24 is < 0.9 * 27 so 32; falsy multiplier returns the width.
    assert round_width(12, 2.0) == 24
    assert round_width(24, 2.0, divisor=8) == 48
    assert round_width(54, 1 / 16, min_width=8, divisor=8) == 8
    assert round_width(216, 1 / 16, min_width=8, divisor=8) == 16
    assert round_width(432, 1 / 16, min_width=8, divisor=8) == 32
    assert round_width(7, 0) == 7
    assert [round_repeats(b, 2.2) for b in (1, 2, 5, 3)] == [3, 5, 11, 7]
    assert [round_repeats(b, 5.0) for b in (1, 2, 5, 3)] == [5, 10, 25, 15]


def test_x3d_m_geometry_and_parameter_count(x3d_m):
    # PySlowFast's X3D-M with 400 classes: 3,794,322 parameters, 568 state_dict entries.
    assert sum(p.numel() for p in x3d_m.parameters()) == 3_794_322
    assert len(x3d_m.state_dict()) == 568
    stem = x3d_m.s1.pathway0_stem
    assert stem.conv_xy.weight.shape == (24, 3, 1, 3, 3) and stem.conv_xy.stride == (1, 2, 2)
    assert stem.conv.weight.shape == (24, 1, 5, 1, 1) and stem.conv.groups == 24
    stages = [x3d_m.s2, x3d_m.s3, x3d_m.s4, x3d_m.s5]
    assert [len(_blocks(s)) for s in stages] == [3, 5, 11, 7]
    for stage, width, inner, se in zip(stages, (24, 48, 96, 192), (54, 108, 216, 432), (8, 8, 16, 32)):
        for j, block in enumerate(_blocks(stage)):
            b = block.branch2
            assert b.a.weight.shape[:2] == (inner, width if j else b.a.weight.shape[1])
            assert b.b.groups == inner and b.b.kernel_size == (3, 3, 3)
            assert b.b.stride == ((1, 2, 2) if j == 0 else (1, 1, 1))
            assert b.c.weight.shape[:2] == (width, inner)
            assert isinstance(b.b_relu, nn.SiLU)
            assert hasattr(b, "se") == (j % 2 == 0)
            if j % 2 == 0:
                assert b.se.fc1.out_channels == se
            # Shortcut conv + BN only on the first block (res2's changes the stride only).
            assert block.has_shortcut == (j == 0) and hasattr(block, "branch1_bn") == (j == 0)
    head = x3d_m.head
    assert head.conv_5.weight.shape[:2] == (432, 192)
    assert head.lin_5.weight.shape[:2] == (2048, 432) and head.lin_5.bias is None
    assert head.projection.weight.shape == (400, 2048)


def test_x3d_l_parameter_count():
    model = create_x3d(num_classes=400, depth_factor=5.0)
    assert sum(p.numel() for p in model.parameters()) == 6_153_432
    assert [len(_blocks(getattr(model, f"s{i}"))) for i in range(2, 6)] == [5, 10, 25, 15]


def test_tiny_forward_backward_shapes_and_logits():
    torch.manual_seed(0)
    model = create_x3d(**TINY)
    x = torch.randn(2, 3, 4, 32, 32)
    feats = model.s5(model.s4(model.s3(model.s2(model.s1(x)))))
    assert feats.shape == (2, 32, 4, 1, 1)  # no temporal stride, crop / 32
    out = model(x)
    assert out.shape == (2, 5)
    out.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())

    model.eval()
    with torch.no_grad():
        logits = model(x)
        feats = model.s5(model.s4(model.s3(model.s2(model.s1(x)))))
        # Independent head reference: conv_5 + BN + ReLU, global mean, lin_5 + ReLU, linear; no softmax.
        h = model.head
        z = F.relu(F.batch_norm(F.conv3d(feats, h.conv_5.weight), h.conv_5_bn.running_mean,
                                h.conv_5_bn.running_var, h.conv_5_bn.weight, h.conv_5_bn.bias, eps=1e-5))
        z = F.relu(F.conv3d(z.mean(dim=(2, 3, 4), keepdim=True), h.lin_5.weight)).flatten(1)
        ref = F.linear(z, h.projection.weight, h.projection.bias)
    torch.testing.assert_close(logits, ref)
    assert not torch.allclose(logits.sum(1), torch.ones(2))
    torch.testing.assert_close(h.activate(logits), logits.softmax(1))


def test_adaptive_head_any_crop_and_clip_length_and_list_input():
    torch.manual_seed(0)
    model = create_x3d(**TINY).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        for shape in [(1, 3, 4, 48, 48), (1, 3, 7, 64, 40), (1, 3, 4, 16, 16), (1, 3, 1, 32, 32)]:
            assert model(torch.randn(shape)).shape == (1, 5)
        torch.testing.assert_close(model([x]), model(x))
    with pytest.raises(ValueError, match="one pathway"):
        model([x, x])


def test_head_pools_globally():
    torch.manual_seed(0)
    head = X3DHead(dim_in=6, dim_inner=8, dim_out=10, num_classes=3, dropout_rate=0.0).eval()
    x = torch.randn(2, 6, 3, 5, 4)
    with torch.no_grad():
        # Duplicating the input along W (tiling) leaves a global average unchanged.
        torch.testing.assert_close(head(x), head(torch.cat([x, x], dim=4)))
    with pytest.raises(ValueError, match="softmax"):
        X3DHead(dim_in=6, dim_inner=8, dim_out=10, num_classes=3, act="relu")


@pytest.mark.parametrize("zero_final", [True, False])
def test_init_matches_x3d(zero_final):
    torch.manual_seed(0)
    model = create_x3d(num_classes=64, width_factor=1.0, depth_factor=0.5, dim_c1=4, dim_c5=512,
                       fc_init_std=0.02, zero_init_final_bn=zero_final)
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm3d):
            final = name.endswith("branch2.c_bn")
            assert torch.all(m.weight == (0.0 if final and zero_final else 1.0)), name
            assert torch.all(m.bias == 0)
        if isinstance(m, nn.Conv3d) and m.bias is not None:
            assert torch.all(m.bias == 0)
    proj = model.head.projection
    assert torch.all(proj.bias == 0)
    assert abs(proj.weight.std().item() - 0.02) < 0.02 * 0.05  # 32k samples
    # MSRA fill: std = sqrt(2 / fan_out), fan_out = C_out * k (lin_5: 512 x 72 x 1).
    lin5 = model.head.lin_5.weight
    assert abs(lin5.std().item() - math.sqrt(2 / 512)) < math.sqrt(2 / 512) * 0.05
