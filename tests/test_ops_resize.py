"""mtnet_plugin.ops.trilinear_resize (the I() of Eq. 3): the fused CPU kernel against F.interpolate and a slow
per-element reference, with gradients; the fallback outside eager fp32 CPU."""
import itertools
import math
import os
import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F

from mtnet_plugin.ops import native, trilinear_resize

needs_kernel = pytest.mark.skipif(
    shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler: the eager path is all there is"
)


def _taps(n_in: int, n_out: int, o: int):
    """align_corners=False source neighbours and weights of output index o, written out from the definition."""
    src = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = int(math.floor(src))
    i1 = min(i0 + 1, n_in - 1)
    return (i0, 1.0 - (src - i0)), (i1, src - i0)


def _slow_trilinear(x: torch.Tensor, size):
    """Every output element as the weighted sum of its 8 neighbours, in float64."""
    n, c, t, h, w = x.shape
    out = torch.zeros(n, c, *size, dtype=torch.float64)
    for a, b, d in itertools.product(range(size[0]), range(size[1]), range(size[2])):
        for (ti, tw), (hi, hw), (wi, ww) in itertools.product(_taps(t, size[0], a), _taps(h, size[1], b),
                                                              _taps(w, size[2], d)):
            out[:, :, a, b, d] += tw * hw * ww * x[:, :, ti, hi, wi].double()
    return out


CASES = [
    ((1, 2, 2, 3, 4), (4, 6, 8)),  # MTConv's exact 2x
    ((2, 3, 3, 4, 4), (7, 7, 7)),  # ceil sizes back to odd ones
    ((1, 2, 5, 9, 4), (3, 4, 2)),  # shrinking
    ((1, 1, 1, 1, 1), (4, 3, 2)),  # from a single voxel
    ((1, 2, 4, 1, 6), (8, 1, 11)),  # a size-1 dimension kept
]


@needs_kernel
def test_kernel_is_available_where_a_compiler_is():
    assert native.available(), native.reason()


@needs_kernel
@pytest.mark.parametrize("shape,size", CASES)
def test_kernel_matches_slow_reference_and_interpolate(shape, size):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    out = trilinear_resize(x, size)
    assert out.shape == shape[:2] + size and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), _slow_trilinear(x, size), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out, F.interpolate(x, size=size, mode="trilinear", align_corners=False))


@needs_kernel
@pytest.mark.parametrize("shape,size", CASES)
def test_kernel_gradient_matches_autograd_of_interpolate(shape, size):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=gen)
    a, b = x.clone().requires_grad_(), x.double().requires_grad_()
    out = trilinear_resize(a, size)
    assert "Native" in type(out.grad_fn).__name__  # the kernel ran
    g = torch.randn(out.shape, generator=gen)
    out.backward(g)
    F.interpolate(b, size=size, mode="trilinear", align_corners=False).backward(g.double())
    torch.testing.assert_close(a.grad.double(), b.grad, atol=1e-5, rtol=1e-5)


@needs_kernel
def test_adjoint_identity():
    # <resize(x), y> == <x, resize^T(y)>: the backward is the exact transpose of the forward.
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 3, 5, 7, generator=gen, requires_grad=True)
    out = trilinear_resize(x, (6, 9, 13))
    y = torch.randn(out.shape, generator=gen)
    (gx,) = torch.autograd.grad(out, x, y)
    torch.testing.assert_close((out * y).sum(), (x * gx).sum(), atol=1e-4, rtol=1e-5)


@needs_kernel
def test_non_contiguous_input_and_two_threads():
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(2, 6, 8, 28, 28, generator=gen, requires_grad=True)
    x = base[:, 1:5]  # channel slice of a batch of 2: not contiguous
    assert not x.is_contiguous()
    ref = F.interpolate(x.detach().double(), size=(16, 56, 56), mode="trilinear", align_corners=False)
    threads = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(trilinear_resize(x, (16, 56, 56)))
    finally:
        torch.set_num_threads(threads)
    one, two = outs
    assert "Native" in type(one.grad_fn).__name__ and "Native" in type(two.grad_fn).__name__  # the kernel ran
    torch.testing.assert_close(one.detach().double(), ref, atol=1e-5, rtol=1e-5)  # an independent reference
    assert torch.equal(two, one)  # per-plane work is the same whichever thread does it


def test_same_size_is_returned_as_is_and_other_dtypes_use_interpolate():
    x = torch.randn(1, 2, 3, 4, 5)
    assert trilinear_resize(x, (3, 4, 5)) is x
    d = torch.randn(1, 2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    out = trilinear_resize(d, (4, 6, 6))
    assert out.dtype == torch.float64 and "Native" not in type(out.grad_fn).__name__
    assert torch.autograd.gradcheck(lambda v: trilinear_resize(v, (4, 5, 7)), (d,))
    h = torch.randn(1, 2, 2, 3, 3).bfloat16()
    assert trilinear_resize(h, (4, 6, 6)).dtype == torch.bfloat16


@needs_kernel
def test_eager_fallback_gives_the_same_values(monkeypatch):
    x = torch.randn(1, 3, 4, 7, 7, generator=torch.Generator().manual_seed(4), requires_grad=True)
    fast = trilinear_resize(x, (8, 14, 14))
    monkeypatch.setattr(native, "available", lambda: False)
    slow = trilinear_resize(x, (8, 14, 14))
    assert "Native" in type(fast.grad_fn).__name__  # the kernel's path ...
    assert "Native" not in type(slow.grad_fn).__name__  # ... against the eager one
    torch.testing.assert_close(fast, slow)


def test_traced_graph_uses_interpolate():
    x = torch.randn(1, 2, 2, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(lambda v: trilinear_resize(v, (4, 6, 6)), (x,), check_trace=False)
    kinds = {n.kind() for n in traced.graph.nodes()}
    assert "aten::upsample_trilinear3d" in kinds and "prim::PythonOp" not in kinds
    torch.testing.assert_close(traced(x), trilinear_resize(x, (4, 6, 6)))


def test_writes_into_a_channel_slot_without_touching_the_rest():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 3, 4, 5, generator=gen)
    y = torch.full((2, 7, 6, 8, 10), -7.0)
    got = trilinear_resize(x, (6, 8, 10), out=y[:, 4:])
    assert got.data_ptr() == y[:, 4:].data_ptr()
    torch.testing.assert_close(y[:, 4:], F.interpolate(x, size=(6, 8, 10), mode="trilinear", align_corners=False))
    assert (y[:, :4] == -7.0).all()
    with pytest.raises(ValueError, match="gradients"):
        trilinear_resize(x.clone().requires_grad_(), (6, 8, 10), out=y[:, 4:])
