"""mtnet_plugin.ops.channelwise_conv3d and layers.Conv3d: the channelwise convolution whose CPU backward is two
forward convolutions. Values and both gradients against float64 autograd through ``F.conv3d`` over the
geometries the models use and the awkward ones (padding 0 or uneven, temporal-only kernels, bias; strided
convs, which keep aten's backward), which path each call takes, and that the models' channelwise convs are the layer."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtnet_plugin.config import load_config
from mtnet_plugin.layers import Conv3d, MTConv
from mtnet_plugin.models import build_model
from mtnet_plugin.ops import channelwise_conv3d
from mtnet_plugin.ops.channelwise import fast_backward_applies

FAST = "_ChannelwiseConv3dFunctionBackward"

GEOMETRIES = [  # (N, C, T, H, W), kernel, stride, padding
    ((2, 5, 6, 8, 8), (3, 3, 3), (1, 1, 1), (1, 1, 1)),  # X3D / MTConv conv_b
    ((2, 6, 9, 4, 4), (5, 1, 1), (1, 1, 1), (2, 0, 0)),  # the stem's temporal conv
    ((2, 3, 5, 6, 6), (3, 3, 3), (1, 1, 1), (0, 0, 0)),  # no padding
    ((2, 3, 4, 6, 5), (1, 3, 3), (1, 1, 1), (0, 2, 1)),  # uneven padding
    ((1, 2, 8, 11, 10), (3, 5, 3), (1, 1, 1), (1, 2, 1)),
    ((2, 5, 6, 9, 7), (3, 3, 3), (1, 2, 2), (1, 1, 1)),  # a stage's first block: aten's backward
]


def _inputs(shape, kernel, seed=0, bias=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    w = torch.randn(shape[1], 1, *kernel, generator=g) * 0.3
    b = torch.randn(shape[1], generator=g) if bias else None
    return x, w, b


def _reference(x, w, b, stride, padding):
    """Output and gradients of F.conv3d in float64 (aten's own backward), for a fixed upstream gradient."""
    x64, w64 = x.double().requires_grad_(), w.double().requires_grad_()
    b64 = None if b is None else b.double().requires_grad_()
    y = F.conv3d(x64, w64, b64, stride, padding, 1, x.shape[1])
    up = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).reshape(y.shape)
    grads = torch.autograd.grad(y, [t for t in (x64, w64, b64) if t is not None], up)
    return y, up, grads


@pytest.mark.parametrize("shape,kernel,stride,padding", GEOMETRIES)
@pytest.mark.parametrize("bias", [False, True])
def test_values_and_gradients_match_conv3d(shape, kernel, stride, padding, bias):
    x, w, b = _inputs(shape, kernel, bias=bias)
    ref_y, up, ref_grads = _reference(x, w, b, stride, padding)
    leaves = [t.clone().requires_grad_() for t in (x, w, b) if t is not None]
    y = channelwise_conv3d(leaves[0], leaves[1], leaves[2] if bias else None, stride, padding)
    assert (y.grad_fn.name() == FAST) == (stride == (1, 1, 1))  # strided convs keep aten's backward
    torch.testing.assert_close(y.double(), ref_y, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(y, leaves, up.float())
    for got, want, name in zip(grads, ref_grads, ("x", "weight", "bias")):
        assert want.abs().max() > 0.1, name  # the check compares real gradients, not zeros
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4, msg=f"grad {name}")


def test_weight_gradient_alone_when_the_input_needs_none():
    x, w, _ = _inputs((2, 3, 4, 5, 5), (3, 3, 3))
    w.requires_grad_()
    y = channelwise_conv3d(x, w, None, 1, 1)
    assert y.grad_fn.name() == FAST
    (gw,) = torch.autograd.grad(y.sum(), [w])
    x64, w64 = x.double(), w.detach().double().requires_grad_()
    want = torch.autograd.grad(F.conv3d(x64, w64, None, 1, 1, 1, 3).sum(), [w64])[0]
    torch.testing.assert_close(gw.double(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["no_grad", "float64", "dilation", "big_padding", "multiplier", "trace"])
def test_other_calls_take_plain_conv3d_with_the_same_values(case):
    x, w, _ = _inputs((2, 4, 5, 6, 6), (3, 3, 3))
    kwargs = dict(stride=1, padding=1, dilation=1)
    if case == "float64":
        x, w = x.double(), w.double()
    elif case == "dilation":
        kwargs.update(dilation=2, padding=2)
    elif case == "big_padding":
        kwargs.update(padding=3)
    elif case == "multiplier":  # weight (C, 1, k) with C = 2 x input channels is a different conv; not ours
        x = x[:, :2]
    x.requires_grad_()
    groups = w.shape[0] if case != "multiplier" else 2
    want = F.conv3d(x, w, None, kwargs["stride"], kwargs["padding"], kwargs["dilation"], groups)
    if case == "no_grad":
        with torch.no_grad():
            y = channelwise_conv3d(x, w, None, **kwargs)
        assert y.grad_fn is None
    elif case == "trace":
        traced = torch.jit.trace(lambda t: channelwise_conv3d(t, w, None, **kwargs), (x,))
        assert "aten::_convolution" in str(traced.graph) and "PythonOp" not in str(traced.graph)
        y = traced(x)
    else:
        if case == "multiplier":
            with pytest.raises(RuntimeError):
                channelwise_conv3d(x, w, None, **kwargs)
            return
        y = channelwise_conv3d(x, w, None, **kwargs)
        assert y.grad_fn.name() != FAST
    torch.testing.assert_close(y, want)


def test_fast_backward_applies_only_where_it_is_exact():
    x, w, _ = _inputs((1, 2, 3, 4, 4), (3, 3, 3))
    one = (1, 1, 1)
    assert not fast_backward_applies(x, w, one, one, one)  # nothing requires grad
    x.requires_grad_()
    assert fast_backward_applies(x, w, one, one, one)
    assert not fast_backward_applies(x, w, (1, 2, 2), one, one)
    assert not fast_backward_applies(x, w, one, (3, 1, 1), one)
    assert not fast_backward_applies(x, w, one, one, (1, 2, 1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fast_backward_applies(x, w, one, one, one)


def test_environment_switch_restores_aten_backward(monkeypatch):
    x, w, _ = _inputs((1, 2, 3, 4, 4), (3, 3, 3))
    x.requires_grad_()
    monkeypatch.setenv("MTNET_CHANNELWISE_BACKWARD", "aten")
    assert channelwise_conv3d(x, w, None, 1, 1).grad_fn.name() != FAST
    monkeypatch.setenv("MTNET_CHANNELWISE_BACKWARD", "")
    assert channelwise_conv3d(x, w, None, 1, 1).grad_fn.name() == FAST


def test_layer_is_a_drop_in_conv3d():
    torch.manual_seed(0)
    ours, plain = Conv3d(6, 6, 3, padding=1, groups=6), nn.Conv3d(6, 6, 3, padding=1, groups=6)
    assert isinstance(ours, nn.Conv3d) and list(ours.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(2, 6, 4, 7, 7, requires_grad=True)
    y = ours(x)
    assert y.grad_fn.name() == FAST
    y.square().sum().backward()
    gx, gw, gb = x.grad.clone(), ours.weight.grad, ours.bias.grad
    x.grad = None
    plain(x).square().sum().backward()
    torch.testing.assert_close(gx, x.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gw, plain.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gb, plain.bias.grad, rtol=1e-4, atol=1e-4)
    dense = Conv3d(6, 6, 3, padding=1)  # not channelwise: nn.Conv3d's own forward
    assert dense(x).grad_fn.name() != FAST


@pytest.mark.parametrize("cfg", ["configs/Synthetic/X3D_XS.yaml", "configs/Synthetic/MTNet_XS.yaml"])
def test_models_route_every_channelwise_conv_through_the_layer(cfg):
    model = build_model(load_config([cfg]))
    channelwise = [m for m in model.modules()
                   if isinstance(m, nn.Conv3d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels]
    assert len(channelwise) >= 5
    assert all(type(m) is Conv3d for m in channelwise), [type(m) for m in channelwise if type(m) is not Conv3d]
    mtconvs = [m for m in model.modules() if isinstance(m, MTConv)]
    assert ("MTNet" in cfg) == bool(mtconvs)
