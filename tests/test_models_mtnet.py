"""MTNet builder (mtnet_plugin/models/mtnet.py): X3D with MTBlocks (Sec. III-C, spec #13-16)."""
import math

import pytest
import torch
from torch import nn

from mtnet_plugin.layers import MTBlock, MTConv, PeepholeLSTM
from mtnet_plugin.models import create_mtnet, create_x3d, model_stats
from mtnet_plugin.models.build import build_model

from test_models_build import tiny_cfg


# Stem 8, stages 8/16/32/64 wide, inner 18/36/72/144, blocks 1/1/3/2.
TINY = dict(num_classes=4, width_factor=1.0, depth_factor=0.5, dim_c1=8, dim_c5=16, dropout_rate=0.0)


def _blocks(model):
    for i in range(2, 6):
        yield from getattr(model, f"s{i}").children()


def _gru_params(c, layers=2):
    # Per layer: weight_ih (3C x C), weight_hh (3C x C), two biases (3C).
    return layers * (2 * 3 * c * c + 2 * 3 * c)


def test_structure_is_x3d_with_mtblocks():
    torch.manual_seed(0)
    mt, x3d = create_mtnet(**TINY), create_x3d(**TINY)
    for b_mt, b_x in zip(_blocks(mt), _blocks(x3d)):
        assert isinstance(b_mt.branch2, MTBlock)
        assert b_mt.has_shortcut == b_x.has_shortcut
        if b_mt.has_shortcut:  # spec #13: shortcut conv + BN as X3D
            assert b_mt.branch1.weight.shape == b_x.branch1.weight.shape
    # Stem and head are X3D's (spec #13).
    for part in ("s1", "head"):
        shapes_mt = [(k, v.shape) for k, v in getattr(mt, part).state_dict().items()]
        shapes_x = [(k, v.shape) for k, v in getattr(x3d, part).state_dict().items()]
        assert shapes_mt == shapes_x


def test_delta_one_is_x3d_without_se_plus_sr():
    # delta = 1: every MTConv is Conv3d + BN + ReLU with X3D's shapes; SE goes (spec #14) and SR comes with one
    # 2-layer GRU of width dim_out per block (spec #15-16).
    mt = create_mtnet(delta=1.0, **TINY)
    plain = create_x3d(se_ratio=0.0, **TINY)
    widths = [b.branch2.conv_c.out_channels for b in _blocks(mt)]
    expected = sum(p.numel() for p in plain.parameters()) + sum(_gru_params(c) for c in widths)
    assert sum(p.numel() for p in mt.parameters()) == expected
    assert all(not m.has_prolonged for m in mt.modules() if isinstance(m, MTConv))


def test_options_reach_every_block():
    mt = create_mtnet(delta=0.5, p_input="split", cell="lstm", sr_layers=1, lp_kernel="1x1x1", **TINY)
    for block in _blocks(mt):
        branch = block.branch2
        assert isinstance(branch.sr.rnn, nn.LSTM) and branch.sr.rnn.num_layers == 1
        a = branch.conv_a
        assert a.local_channels == a.out_channels // 2
        assert a.p_in_channels == a.in_channels - a.in_channels // 2  # split: the last (1 - delta) share
        assert a.conv_lp.kernel_size == (1, 1, 1)
    peep = create_mtnet(cell="lstm_peephole", **TINY)
    assert all(isinstance(b.branch2.sr.rnn, PeepholeLSTM) for b in _blocks(peep))
    with pytest.raises(TypeError, match="dleta"):
        create_mtnet(dleta=0.5, **TINY)
    from mtnet_plugin.models import create_mtblock

    with pytest.raises(TypeError, match="unknown MTNet options"):
        create_mtblock(dim_in=4, dim_inner=8, dim_out=4, dleta=0.5)
    with pytest.raises(TypeError, match="block"):
        create_mtnet(block=None, **TINY)
    with pytest.raises(ValueError, match="delta"):
        create_mtnet(delta=0.0, **TINY)


@pytest.mark.parametrize("zero_final,target", [(True, "sr"), (False, "sr"), (True, "final_bn"), (False, "final_bn")])
def test_init(zero_final, target):
    torch.manual_seed(0)
    mt = create_mtnet(zero_init_final_bn=zero_final, zero_init=target, last_act=target == "sr", fc_init_std=0.01,
                      **TINY)
    for block in _blocks(mt):
        c = block.branch2.conv_c
        for bn in (c.bn_local, c.bn_lp, c.bn_p):
            assert torch.all(bn.weight == (0.0 if zero_final and target == "final_bn" else 1.0))
        assert torch.all(block.branch2.conv_a.bn_local.weight == 1.0)
        # The recurrent unit keeps torch's uniform(-1/sqrt(C), 1/sqrt(C)) init, not normal(0, 0.01), except for
        # the top layer's candidate rows that zero-init "sr" zeroes (weight_ih rows 2C..3C and their biases).
        rnn = block.branch2.sr.rnn
        hidden = rnn.hidden_size
        bound = 1 / math.sqrt(hidden)
        w = torch.cat([p.flatten() for p in rnn.parameters()])
        assert w.abs().max() <= bound
        lower = torch.cat([p.flatten() for n, p in rnn.named_parameters() if n.endswith("l0")])
        assert lower.std() > 0.8 * bound / math.sqrt(3)
        top = rnn.weight_ih_l1[2 * hidden : 3 * hidden]
        zeroed = zero_final and target == "sr"
        assert bool((top == 0).all()) == zeroed and bool((rnn.bias_hh_l1[2 * hidden :] == 0).all()) == zeroed
    conv = mt.s5.pathway0_res0.branch2.conv_a.conv_local.weight
    fan_out = conv.shape[0] * conv[0, 0].numel()
    assert abs(conv.std().item() - math.sqrt(2 / fan_out)) < 0.1 * math.sqrt(2 / fan_out)


def test_tiny_forward_backward_logits_and_list_input():
    torch.manual_seed(0)
    mt = create_mtnet(**TINY)
    x = torch.randn(2, 3, 5, 33, 31)  # odd T, H, W
    out = mt([x])
    assert out.shape == (2, 4)
    out.square().sum().backward()
    assert all(p.grad is not None for p in mt.parameters())
    # Zero-initialised (default target "sr"): the top layer's candidate rows of every SR get a gradient at once.
    for block in _blocks(mt):
        rnn = block.branch2.sr.rnn
        assert rnn.weight_ih_l1.grad[2 * rnn.hidden_size : 3 * rnn.hidden_size].any()
    mt.eval()
    with torch.no_grad():
        torch.testing.assert_close(mt(x), mt([x]))
        assert mt(torch.randn(1, 3, 8, 48, 40)).shape == (1, 4)


def test_from_config_reads_the_mtnet_node():
    cfg = tiny_cfg("X3D", "mtnet")
    cfg.MTNET.CELL, cfg.MTNET.DELTA, cfg.MTNET.SR_LAYERS, cfg.MTNET.LAST_MTCONV_ACT = "rnn", 0.75, 1, False
    model = build_model(cfg)
    assert type(model).__name__ == "MTNet"
    for block in _blocks(model):
        b = block.branch2
        assert isinstance(b.sr.rnn, nn.RNN) and b.sr.rnn.num_layers == 1
        assert b.conv_b.delta == 0.75 and isinstance(b.conv_c.act, nn.Identity)


def test_jit_trace_matches_eager():
    torch.manual_seed(0)
    mt = create_mtnet(**TINY).eval()
    for m in mt.modules():  # non-trivial BN statistics and affine parameters
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 6, 32, 32)
    with torch.no_grad():
        traced = torch.jit.trace(mt, (x,), check_trace=False)
        torch.testing.assert_close(traced(x), mt(x))
        y = torch.randn(1, 3, 6, 32, 32)  # other values, same shape: the selected frames may differ
        torch.testing.assert_close(traced(y), mt(y))


def test_flops_reuse_of_repeated_blocks_is_exact():
    torch.manual_seed(0)
    mt = create_mtnet(**TINY)  # s4 holds 3 blocks, s5 2: repeated blocks to reuse
    full = model_stats(mt, (4, 32, 32))
    assert full["unsupported_ops"] == {}
    fast = model_stats(mt, (4, 32, 32), reuse_repeated_blocks=True)
    assert fast["gflops_by_op"] == full["gflops_by_op"] and fast["gflops"] == full["gflops"]


@pytest.mark.parametrize(
    "options",
    [
        {"cell": "lstm_peephole", "pool": "avg", "selection": "highest"},
        {"cell": "rnn", "pool": "max", "symmetric_pool": True, "selection": "none"},
        {"cell": "lstm", "pool": "stochastic", "p_input": "split", "lp_kernel": "1x1x1"},
        {"p_input": "split_io", "delta": 0.5},
    ],
)
def test_flops_of_every_option_have_no_unsupported_ops(options):
    torch.manual_seed(0)
    mt = create_mtnet(**TINY, **options)
    stats = model_stats(mt, (4, 32, 32), reuse_repeated_blocks=True)
    assert stats["unsupported_ops"] == {} and stats["gflops"] > 0
