"""mtnet_plugin.layers.MTConv (Eq. 1-4): plain-conv equivalence at delta = 1, shapes, a functional
reference of the dataflow, gradients, autocast and tracing."""
import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtnet_plugin.layers import MTConv, split_channels
from mtnet_plugin.ops import POOL_METHODS, select_frames, softpool_spatial, triplet_cosine_select


def _randomize_bn(module, gen):
    for m in module.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.weight.data = torch.rand(m.num_features, generator=gen, dtype=m.weight.dtype) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=gen, dtype=m.bias.dtype) * 0.1
            m.running_mean = torch.randn(m.num_features, generator=gen, dtype=m.running_mean.dtype) * 0.1
            m.running_var = torch.rand(m.num_features, generator=gen, dtype=m.running_var.dtype) + 0.5


@pytest.mark.parametrize("groups,cin,cout", [(1, 6, 10), (8, 8, 8)])
def test_delta_one_is_a_plain_conv_block(groups, cin, cout):
    torch.manual_seed(0)
    m = MTConv(cin, cout, (3, 3, 3), stride=(1, 2, 2), padding=1, groups=groups, delta=1.0)
    ref = nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride=(1, 2, 2), padding=1, groups=groups, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(),
    )
    assert not m.has_prolonged
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in ref.parameters())
    ref[0].weight.data.copy_(m.conv_local.weight)
    _randomize_bn(m, torch.Generator().manual_seed(1))
    ref[1].load_state_dict(m.bn_local.state_dict())
    x = torch.randn(2, cin, 4, 7, 6)
    for train in (True, False):
        m.train(train), ref.train(train)
        torch.testing.assert_close(m(x), ref(x))


@pytest.mark.parametrize("delta", [0, 0.0, -0.5, 1.5, float("nan"), "0.5"])
def test_invalid_delta_is_a_clear_error(delta):
    with pytest.raises(ValueError, match="delta"):
        MTConv(4, 8, 1, delta=delta)


def test_channel_split_and_empty_branches():
    assert split_channels(8, 0.875) == (7, 1)
    assert split_channels(54, 0.875) == (47, 7)
    assert split_channels(100, 0.29) == (29, 71)  # no float-rounding loss of a channel
    assert split_channels(12, 1.0) == (12, 0)
    with pytest.raises(ValueError, match="no local channels"):
        MTConv(4, 4, 1, delta=0.2)  # floor(0.8) = 0
    m = MTConv(4, 8, 1, delta=0.5)
    assert (m.local_channels, m.prolonged_channels) == (4, 4)
    with pytest.raises(ValueError, match="groups"):
        MTConv(8, 8, 3, groups=2)
    for bad in (dict(p_input="half"), dict(lp_kernel="3x3x3"), dict(pool="median"), dict(selection="random")):
        with pytest.raises(ValueError, match=next(iter(bad))):
            MTConv(4, 8, 1, **bad)
    with pytest.raises(ValueError, match="selection='none'"):
        MTConv(4, 8, 1, symmetric_pool=True)


@pytest.mark.parametrize("lp_kernel,lp_taps", [("same", 27), ("1x1x1", 1)])
def test_split_io_weight_shapes_and_parameter_count(lp_kernel, lp_taps):
    # C_in = 8, C~ = 8, delta = 3/4, 3x3x3: L reads input channels 0..5 and writes C_L = 6, P reads 6..7 and
    # writes C_P = 2, w_LP maps C_L = 6 -> C_P = 2. By hand: 27 * (6*6 + 2*2) + lp_taps * 6*2 + BN 2 * (6 + 2 + 2).
    m = MTConv(8, 8, 3, padding=1, delta=0.75, p_input="split_io", lp_kernel=lp_kernel)
    assert m.conv_local.weight.shape == (6, 6, 3, 3, 3)
    assert m.conv_p.weight.shape == (2, 2, 3, 3, 3)
    assert m.conv_lp.weight.shape == ((2, 6, 3, 3, 3) if lp_kernel == "same" else (2, 6, 1, 1, 1))
    expected = 27 * (6 * 6 + 2 * 2) + lp_taps * 6 * 2 + 2 * (6 + 2 + 2)
    assert expected == (1424 if lp_kernel == "same" else 1112)
    assert sum(p.numel() for p in m.parameters()) == expected
    # The same layer in the other modes: "full" L 8->6, P 8->2; "split" L 8->6, P 2->2.
    full = MTConv(8, 8, 3, padding=1, delta=0.75, p_input="full", lp_kernel=lp_kernel)
    split = MTConv(8, 8, 3, padding=1, delta=0.75, p_input="split", lp_kernel=lp_kernel)
    assert sum(p.numel() for p in full.parameters()) == 27 * (8 * 6 + 8 * 2) + lp_taps * 12 + 20
    assert sum(p.numel() for p in split.parameters()) == 27 * (8 * 6 + 2 * 2) + lp_taps * 12 + 20
    # Channelwise convs split their channels the same way in every mode: 27 * (6 + 2) + 6*2 + BN.
    cw = MTConv(8, 8, 3, padding=1, groups=8, delta=0.75, p_input="split_io")
    assert sum(p.numel() for p in cw.parameters()) == 27 * 8 + 12 + 20
    # The input share is Eq. 1 on C_in: 10 inputs at delta 0.7 -> L reads 7, P reads 3.
    odd = MTConv(10, 8, 1, delta=0.7, p_input="split_io")
    assert (odd.conv_local.in_channels, odd.conv_p.in_channels, odd.p_in_channels) == (7, 3, 3)


def test_split_io_local_branch_ignores_the_prolonged_inputs():
    # L's output must not depend on the last C_in - floor(delta * C_in) input channels, and P's must.
    torch.manual_seed(0)
    m = MTConv(8, 8, 3, padding=1, delta=0.75, p_input="split_io").eval()
    x = torch.randn(1, 8, 6, 8, 8)
    y = x.clone()
    y[:, 6:] += torch.randn(1, 2, 6, 8, 8)
    with torch.no_grad():
        a, b = m(x), m(y)
    torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=0)
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-3


def test_split_io_needs_both_input_shares():
    with pytest.raises(ValueError, match="split_io.*delta=0.5.*0 input channels to L"):
        MTConv(1, 8, 1, delta=0.5, p_input="split_io")  # floor(0.5 * 1) = 0


def _plain_shape(x, cout, k, s, p):
    return F.conv3d(x, torch.zeros(cout, x.shape[1], *k), stride=s, padding=p).shape


HW = [(8, 8), (7, 9), (1, 5)]
SHAPE_CASES = [(kind, s, HW[i % 3], t) for i, (kind, s, t) in
               enumerate(itertools.product(["dense", "channelwise"], [1, 2], [1, 2, 5, 8]))]


@pytest.mark.parametrize("kind,stride,hw,t", SHAPE_CASES)
def test_output_shape_equals_plain_conv(kind, stride, hw, t):
    cin, cout = (8, 8) if kind == "channelwise" else (5, 8)
    k, s, p = (3, 3, 3), (1, stride, stride), (1, 1, 1)
    x = torch.randn(2, cin, t, *hw)
    m = MTConv(cin, cout, k, stride=s, padding=p, groups=cout if kind == "channelwise" else 1, delta=0.75)
    assert m(x).shape == _plain_shape(x, cout, k, s, p)


@pytest.mark.parametrize(
    "opts",
    [dict(p_input="split"), dict(p_input="split_io"), dict(lp_kernel="1x1x1"), dict(selection="highest"),
     dict(selection="none"),
     dict(activation=False)]
    + [dict(pool=p) for p in POOL_METHODS]
    + [dict(pool=p, symmetric_pool=True, selection="none") for p in POOL_METHODS],
)
@pytest.mark.parametrize("stride", [1, 2])
def test_options_keep_the_shape_and_train(opts, stride):
    x = torch.randn(2, 6, 5, 7, 5)
    k, s, p = (3, 3, 3), (1, stride, stride), 1
    m = MTConv(6, 8, k, stride=s, padding=p, delta=0.5, **opts)
    out = m(x)
    assert out.shape == _plain_shape(x, 8, k, s, (p, p, p))
    out.square().mean().backward()
    for name, prm in m.named_parameters():
        assert prm.grad is not None and prm.grad.abs().sum() > 0, name


def test_unusual_padding_and_one_by_one_kernels():
    x = torch.randn(1, 4, 6, 10, 10)
    for k, s, p in [((1, 1, 1), (1, 1, 1), 0), ((1, 1, 1), (1, 2, 2), 0), ((3, 3, 3), (1, 1, 1), 0),
                    ((5, 3, 3), (1, 2, 2), (2, 1, 1))]:
        m = MTConv(4, 8, k, stride=s, padding=p, delta=0.5)
        pp = p if isinstance(p, tuple) else (p,) * 3
        assert m(x).shape == _plain_shape(x, 8, k, s, pp), (k, s, p)


def _local_input(m, x):
    """What L reads: the first C_L channels (channelwise), the first floor(delta * C_in) ("split_io") or all."""
    if m.channelwise:
        return x[:, : m.local_channels]
    if m.p_input == "split_io":
        return x[:, : int(m.delta * x.shape[1])]
    return x


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _reference(m, x):
    """Eq. 1-4 written out with functional ops, eval-mode BN, for dense and channelwise MTConvs."""
    cl, cp = m.local_channels, m.prolonged_channels
    cw = m.channelwise
    conv = m.conv_local
    a_l = F.relu(_bn(F.conv3d(_local_input(m, x), conv.weight, None, conv.stride, conv.padding,
                              groups=cl if cw else 1), m.bn_local))
    x_p = x[:, -cp:] if cw else x[:, x.shape[1] - m.p_in_channels:]
    pooled_in, pooled_l = softpool_spatial(x_p), softpool_spatial(a_l)
    idx = triplet_cosine_select(pooled_in)  # once, from the input (spec #5)
    s_in, s_l = select_frames(pooled_in, idx), select_frames(pooled_l, idx)
    lp_pad = tuple(k // 2 for k in m.conv_lp.kernel_size)  # w_LP keeps the pooled a_L's size
    z_lp = _bn(F.conv3d(s_l, m.conv_lp.weight, None, 1, lp_pad), m.bn_lp)
    z_p = _bn(F.conv3d(s_in, m.conv_p.weight, None, conv.stride, conv.padding, groups=cp if cw else 1), m.bn_p)
    a_p = F.interpolate(F.relu(z_lp) + F.relu(z_p), size=a_l.shape[2:], mode="trilinear", align_corners=False)
    return torch.cat([a_l, a_p], 1)


@pytest.mark.parametrize(
    "cin,cout,groups,opts,stride",
    [(6, 8, 1, {}, 1), (6, 8, 1, dict(p_input="split"), 2), (6, 8, 1, dict(lp_kernel="1x1x1"), 2),
     (8, 8, 8, {}, 1), (8, 8, 8, {}, 2), (6, 8, 1, dict(p_input="split_io"), 2),
     (8, 8, 8, dict(p_input="split_io"), 1)],
)
def test_matches_functional_reference(cin, cout, groups, opts, stride):
    gen = torch.Generator().manual_seed(3)
    m = MTConv(cin, cout, 3, stride=(1, stride, stride), padding=1, groups=groups, delta=0.75, **opts).double()
    _randomize_bn(m, gen)
    m.eval()
    x = torch.randn(2, cin, 6, 9, 8, generator=gen, dtype=torch.float64)
    if opts.get("p_input") == "split":
        assert m.p_in_channels == cin - int(0.75 * cin)
    if groups > 1:
        assert m.conv_lp.kernel_size == (1, 1, 1) and m.conv_p.groups == 2 and m.conv_local.groups == 6
    torch.testing.assert_close(m(x), _reference(m, x))


def test_selection_indices_come_from_the_input_and_apply_to_both():
    m = MTConv(4, 8, 3, padding=1, delta=0.5).eval()
    seen = {}
    m.downsample.register_forward_hook(lambda mod, inp, out: seen.update(inp=inp, out=out))
    x = torch.randn(1, 4, 8, 6, 6)
    m(x)
    (a_in, a_l), (p_in, p_l) = seen["inp"], seen["out"]
    idx = triplet_cosine_select(softpool_spatial(a_in))
    assert p_in.shape[2] == 4 and torch.equal(p_l, select_frames(softpool_spatial(a_l), idx))


def test_stochastic_pool_samples_in_training_only():
    m = MTConv(4, 8, 3, padding=1, delta=0.5, pool="stochastic")
    x = torch.rand(2, 4, 4, 8, 8)
    m.train()
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(1)
    assert not torch.equal(a, m(x))
    m.eval()
    assert torch.equal(m(x), m(x))


def test_autocast_bfloat16_runs_with_fp32_ops():
    m = MTConv(6, 8, 3, padding=1, delta=0.5)
    x = torch.randn(2, 6, 5, 8, 8)
    seen = {}
    m.downsample.register_forward_hook(lambda mod, inp, out: seen.update(out=out))
    ref = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert seen["out"][0].dtype == torch.float32  # SoftPool of the fp32 input stayed fp32
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.1)


@pytest.mark.parametrize("groups", [1, 8])
def test_jit_trace_matches_eager(groups):
    m = MTConv(8, 8, 3, stride=(1, 2, 2), padding=1, groups=groups, delta=0.75).eval()
    x1, x2 = torch.randn(2, 8, 6, 9, 8), torch.randn(2, 8, 6, 9, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(m, (x1,), check_trace=False)
    with torch.jit.optimized_execution(False):
        for x in (x1, x2):
            torch.testing.assert_close(traced(x), m(x))


def _plain_softpool(x):
    """SoftPool of even-sized frames by torch.softmax over each 2x2 window (independent of the ops' code)."""
    n, c, t, h, w = x.shape
    v = x.reshape(n, c, t, h // 2, 2, w // 2, 2).permute(0, 1, 2, 3, 5, 4, 6).reshape(n, c, t, h // 2, w // 2, 4)
    return (torch.softmax(v, -1) * v).sum(-1)


def _train_reference(m, x):
    """Eq. 1-4 with train-mode BN, plain ops only (no split, no in-place ReLU, no fused SoftPool)."""
    def bn(z, b):
        return F.batch_norm(z, None, None, b.weight, b.bias, True, 0.0, b.eps)

    cl, cp, cw = m.local_channels, m.prolonged_channels, m.channelwise
    conv = m.conv_local
    a_l = F.relu(bn(F.conv3d(_local_input(m, x), conv.weight, None, conv.stride, conv.padding,
                             groups=cl if cw else 1), m.bn_local))
    x_p = x[:, -cp:] if cw else x[:, x.shape[1] - m.p_in_channels:]
    pooled_in, pooled_l = _plain_softpool(x_p), _plain_softpool(a_l)
    idx = triplet_cosine_select(pooled_in.detach())
    s_in, s_l = select_frames(pooled_in, idx), select_frames(pooled_l, idx)
    lp_pad = tuple(k // 2 for k in m.conv_lp.kernel_size)
    z_lp = bn(F.conv3d(s_l, m.conv_lp.weight, None, 1, lp_pad), m.bn_lp)
    z_p = bn(F.conv3d(s_in, m.conv_p.weight, None, conv.stride, conv.padding, groups=cp if cw else 1), m.bn_p)
    a_p = F.interpolate(F.relu(z_lp) + F.relu(z_p), size=a_l.shape[2:], mode="trilinear", align_corners=False)
    return torch.cat([a_l, a_p], 1)


@pytest.mark.parametrize("cin,cout,groups,opts,stride", [(6, 8, 1, {}, 1), (6, 8, 1, dict(p_input="split"), 2),
                                                         (6, 8, 1, dict(p_input="split_io"), 2),
                                                         (8, 8, 8, {}, 1), (8, 8, 8, {}, 2)])
def test_train_mode_output_and_gradients_match_plain_reference(cin, cout, groups, opts, stride):
    # The optimised forward (channel split, in-place ReLU, fused SoftPool backward) vs plain ops.
    gen = torch.Generator().manual_seed(5)
    m = MTConv(cin, cout, 3, stride=(1, stride, stride), padding=1, groups=groups, delta=0.75, **opts).double()
    _randomize_bn(m, gen)
    m.train()
    x = torch.randn(2, cin, 6, 8, 8, generator=gen, dtype=torch.float64)
    x_fast, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    fast, ref = m(x_fast), _train_reference(m, x_ref)
    torch.testing.assert_close(fast, ref)
    g = torch.randn(fast.shape, generator=gen, dtype=torch.float64)
    params = [p for p in m.parameters()]
    grads_fast = torch.autograd.grad(fast, [x_fast] + params, g)
    grads_ref = torch.autograd.grad(ref, [x_ref] + params, g)
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("pool", ["softpool", "avg", "max"])
def test_downsample_selects_before_pooling_with_the_same_values_and_gradients(pool):
    from mtnet_plugin.layers import ProlongedDownsample
    from mtnet_plugin.ops import pool_spatial

    gen = torch.Generator().manual_seed(6)
    a_in = torch.randn(2, 3, 8, 6, 5, dtype=torch.float64, generator=gen)
    a_l = torch.randn(2, 4, 8, 6, 5, dtype=torch.float64, generator=gen)
    fast_in, fast_l = a_in.clone().requires_grad_(), a_l.clone().requires_grad_()
    ref_in, ref_l = a_in.clone().requires_grad_(), a_l.clone().requires_grad_()
    got = ProlongedDownsample(pool=pool)(fast_in, fast_l)
    p_in, p_l = pool_spatial(ref_in, pool), pool_spatial(ref_l, pool)  # pool every frame, then select
    idx = triplet_cosine_select(p_in)
    want = (select_frames(p_in, idx), select_frames(p_l, idx))
    g = [torch.randn(w.shape, dtype=torch.float64, generator=gen) for w in want]
    torch.autograd.backward(got, g)
    torch.autograd.backward(want, g)
    for a, b in zip(got + (fast_in.grad, fast_l.grad), want + (ref_in.grad, ref_l.grad)):
        torch.testing.assert_close(a, b)


INFERENCE_CASES = [
    (6, 10, 1, dict(kernel_size=1)),  # a block's pointwise conv, P reads the full input
    (8, 8, 8, dict(kernel_size=3, padding=1)),  # channelwise
    (6, 10, 1, dict(kernel_size=3, padding=1, activation=False)),  # the projection: no ReLU
    (6, 10, 1, dict(kernel_size=(3, 1, 1), padding=(1, 0, 0), stride=(1, 2, 2), p_input="split")),
    (6, 10, 1, dict(kernel_size=3, padding=1, p_input="split_io")),
]


@pytest.mark.parametrize("cin,cout,groups,opts", INFERENCE_CASES)
@pytest.mark.parametrize("n,t,hw", [(1, 6, 10), (2, 5, 9)])
def test_inference_path_without_concatenation_matches_the_cat_path(monkeypatch, cin, cout, groups, opts, n, t, hw):
    # Eval + no autograd on the CPU kernels: BN + ReLU of L and I() of Eq. 3 written into one output. The same
    # values as the cat path (which runs with the kernels switched off, and whenever autograd is on).
    from mtnet_plugin.ops import native

    if not native.available():
        pytest.skip(f"no CPU kernels here: {native.reason()}")
    gen = torch.Generator().manual_seed(3)
    m = MTConv(cin, cout, groups=groups, **opts)
    _randomize_bn(m, gen)
    m.eval()
    x = torch.randn(n, cin, t, hw, hw, generator=gen)
    fused_calls = []
    real = m._forward_into
    monkeypatch.setattr(m, "_forward_into", lambda *a: fused_calls.append(1) or real(*a))
    with torch.inference_mode():
        fast = m(x)
    assert fused_calls, "the inference path did not run"
    with torch.no_grad():
        monkeypatch.setattr(native, "available", lambda: False)
        ref = m(x)
    assert len(fused_calls) == 1
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    monkeypatch.undo()
    grad_path = m(x)  # autograd on: the cat path, a graph to backpropagate through
    assert grad_path.grad_fn is not None and len(fused_calls) == 1
    torch.testing.assert_close(grad_path.detach(), fast, rtol=1e-5, atol=1e-5)
