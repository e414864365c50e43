"""mtnet_plugin.layers.MTBlock: structure, shapes, gradients, X3D-bottleneck equivalence at delta = 1,
autocast and tracing."""
import dataclasses
import inspect
import warnings

import pytest
import torch
from pytorchvideo.models.x3d import create_x3d_bottleneck_block
from torch import nn

from mtnet_plugin.layers import MTBlock, MTBlockOptions, MTConv, SqueezeRecursion


def test_constructor_is_keyword_only_with_the_documented_defaults():
    params = inspect.signature(MTBlock).parameters
    assert all(p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD) for p in params.values())
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    assert defaults == dict(temporal_kernel=3, spatial_stride=1, channelwise=True, options=None)
    # The options' defaults live in MTBlockOptions only (the paper's text; docs/spec-decisions.md).
    assert dataclasses.asdict(MTBlockOptions()) == dict(
        delta=0.875, p_input="full", lp_kernel="same", pool="softpool", symmetric_pool=False, selection="lowest",
        norm_eps=1e-5, norm_momentum=0.1, cell="gru", sr_layers=2, last_act=True, zero_init="sr",
    )
    m = MTBlock(dim_in=8, dim_inner=16, dim_out=8)
    assert m.options == MTBlockOptions() and m.conv_b.delta == 0.875 and m.sr.cell == "gru"
    with pytest.raises(TypeError):
        MTBlock(8, 16, 8)
    with pytest.raises(TypeError, match="unknown MTNet options"):
        MTBlock(dim_in=8, dim_inner=16, dim_out=8, dleta=0.5)


def test_structure_follows_the_x3d_bottleneck():
    m = MTBlock(dim_in=8, dim_inner=18, dim_out=12, temporal_kernel=5, spatial_stride=2, delta=0.75,
                cell="lstm", sr_layers=1, norm_eps=1e-3, norm_momentum=0.05)
    a, b, c = m.conv_a, m.conv_b, m.conv_c
    assert all(isinstance(v, MTConv) for v in (a, b, c)) and isinstance(m.sr, SqueezeRecursion)
    assert (a.in_channels, a.out_channels, a.conv_local.kernel_size) == (8, 18, (1, 1, 1))
    assert b.channelwise and b.conv_local.kernel_size == (5, 3, 3) and b.conv_local.stride == (1, 2, 2)
    assert b.conv_local.padding == (2, 1, 1) and b.conv_p.stride == (1, 2, 2)
    assert (c.in_channels, c.out_channels) == (18, 12) and isinstance(c.act, nn.ReLU)
    assert m.sr.channels == 12 and m.sr.cell == "lstm" and m.sr.num_layers == 1
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm3d)]
    assert all(bn.eps == 1e-3 and bn.momentum == 0.05 for bn in bns)
    # Default zero_init "sr": SR is the part a builder zeroes, no BN is marked.
    assert m.sr.transform_final and not any(getattr(bn, "transform_final_bn", False) for bn in bns)
    old = MTBlock(dim_in=8, dim_inner=18, dim_out=12, zero_init="final_bn", last_act=False)
    final = {id(bn) for bn in old.modules() if getattr(bn, "transform_final_bn", False)}
    assert final == {id(old.conv_c.bn_local), id(old.conv_c.bn_lp), id(old.conv_c.bn_p)}
    assert not getattr(old.sr, "transform_final", False)
    with pytest.raises(ValueError, match="zero_init"):
        MTBlock(dim_in=8, dim_inner=18, dim_out=12, zero_init="bn")
    dense = MTBlock(dim_in=8, dim_inner=16, dim_out=8, channelwise=False, last_act=False)
    assert not dense.conv_b.channelwise and dense.conv_b.conv_local.groups == 1
    assert isinstance(dense.conv_c.act, nn.Identity)


@pytest.mark.parametrize("stride,channelwise,t,hw", [(1, True, 4, (8, 8)), (2, True, 5, (9, 7)),
                                                     (2, False, 1, (6, 5)), (1, False, 2, (7, 7))])
def test_forward_backward_shapes(stride, channelwise, t, hw):
    torch.manual_seed(0)
    m = MTBlock(dim_in=8, dim_inner=16, dim_out=12, spatial_stride=stride, channelwise=channelwise, delta=0.75)
    x = torch.randn(2, 8, t, *hw, requires_grad=True)
    out = m(x)
    assert out.shape == (2, 12, t, -(-hw[0] // stride), -(-hw[1] // stride))
    out.square().mean().backward()
    assert x.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        if t == 1 and "weight_hh" in name:  # h_0 = 0 and a single step: the recurrent weights are unused
            assert p.grad.abs().sum() == 0
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_zero_final_bn_makes_the_branch_zero():
    m = MTBlock(dim_in=8, dim_inner=16, dim_out=8, zero_init="final_bn")
    for mod in m.modules():
        if getattr(mod, "transform_final_bn", False):
            nn.init.zeros_(mod.weight)
    out = m(torch.randn(2, 8, 4, 6, 6))
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("last_act", [True, False])
def test_zero_init_sr_starts_as_zero_and_every_parameter_learns(last_act):
    """The default zero-init target: branch output exactly 0, and after one SGD step every parameter of the block
    gets a nonzero gradient (with zeroed final BNs + ReLU, none but the BN weights ever would)."""
    torch.manual_seed(0)
    m = MTBlock(dim_in=8, dim_inner=16, dim_out=8, last_act=last_act)
    m.sr.zero_init_output()
    x = torch.randn(4, 8, 4, 6, 6)
    assert torch.equal(m(x), torch.zeros(4, 8, 4, 6, 6))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    target = torch.randn(4, 8, 4, 6, 6)
    for _ in range(2):
        opt.zero_grad()
        (m(x) - target).square().mean().backward()
        opt.step()
    dead = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead


def test_delta_one_is_the_x3d_bottleneck_with_relu_followed_by_sr():
    torch.manual_seed(0)
    m = MTBlock(dim_in=6, dim_inner=12, dim_out=8, spatial_stride=2, delta=1.0, last_act=False).eval()
    ref = create_x3d_bottleneck_block(dim_in=6, dim_inner=12, dim_out=8, conv_kernel_size=(3, 3, 3),
                                      conv_stride=(1, 2, 2), se_ratio=0.0, inner_act=nn.ReLU).eval()
    n_ref = sum(p.numel() for p in ref.parameters())
    assert sum(p.numel() for n, p in m.named_parameters() if not n.startswith("sr.")) == n_ref
    pairs = [(m.conv_a.conv_local, ref.conv_a), (m.conv_b.conv_local, ref.conv_b), (m.conv_c.conv_local, ref.conv_c)]
    for mine, theirs in pairs:
        theirs.weight.data.copy_(mine.weight)
    gen = torch.Generator().manual_seed(2)
    for mine, theirs in [(m.conv_a.bn_local, ref.norm_a), (m.conv_b.bn_local, ref.norm_b[0]),
                         (m.conv_c.bn_local, ref.norm_c)]:
        mine.weight.data = torch.rand(mine.num_features, generator=gen) + 0.5
        mine.bias.data = torch.randn(mine.num_features, generator=gen)
        mine.running_var = torch.rand(mine.num_features, generator=gen) + 0.5
        theirs.load_state_dict(mine.state_dict())
    x = torch.randn(2, 6, 4, 9, 8)
    torch.testing.assert_close(m(x), m.sr(ref(x)))


def test_autocast_bfloat16_runs():
    torch.manual_seed(0)
    m = MTBlock(dim_in=8, dim_inner=16, dim_out=8, spatial_stride=2, delta=0.75).eval()
    x = torch.randn(2, 8, 6, 8, 8)
    ref = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.05


@pytest.mark.parametrize("cell", ["gru", "lstm_peephole"])
def test_jit_trace_matches_eager(cell):
    torch.manual_seed(0)
    m = MTBlock(dim_in=8, dim_inner=16, dim_out=8, spatial_stride=2, delta=0.75, cell=cell).eval()
    x1, x2 = torch.randn(2, 8, 6, 9, 8), torch.randn(2, 8, 6, 9, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(m, (x1,), check_trace=False)
    with torch.jit.optimized_execution(False):
        for x in (x1, x2):
            torch.testing.assert_close(traced(x), m(x))
