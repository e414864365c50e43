"""mtnet_plugin.ops SoftPool (Eq. 5) and the Table VIc pooling alternatives, against slow window loops."""
import io
import math
import warnings

import pytest
import torch

from mtnet_plugin.ops import (
    POOL_METHODS,
    avg_pool_spatial,
    max_pool_spatial,
    pool_spatial,
    pool_symmetric,
    softpool_spatial,
    softpool_symmetric,
    stochastic_pool_spatial,
)


def _windows(x, pool_time):
    """Yield (t, i, j, window) with window (N, C, k) of in-bounds elements, by explicit slicing."""
    _, _, t, h, w = x.shape
    kt = 2 if pool_time and t > 1 else 1
    kh = 2 if h > 1 else 1
    kw = 2 if w > 1 else 1
    for a in range(math.ceil(t / kt)):
        for i in range(math.ceil(h / kh)):
            for j in range(math.ceil(w / kw)):
                win = x[:, :, a * kt : a * kt + kt, i * kh : i * kh + kh, j * kw : j * kw + kw]
                yield a, i, j, win.reshape(x.shape[0], x.shape[1], -1)


def _reference(x, fn, pool_time=False):
    _, _, t, h, w = x.shape
    kt = 2 if pool_time and t > 1 else 1
    out = x.new_zeros(x.shape[0], x.shape[1], math.ceil(t / kt), math.ceil(h / (2 if h > 1 else 1)),
                      math.ceil(w / (2 if w > 1 else 1)))
    if not pool_time:
        for f in range(t):
            for _, i, j, win in _windows(x[:, :, f : f + 1], False):
                out[:, :, f, i, j] = fn(win)
        return out
    for a, i, j, win in _windows(x, True):
        out[:, :, a, i, j] = fn(win)
    return out


def _soft(win):  # Eq. 5 written out: sum_i e^{x_i} x_i / sum_k e^{x_k}, shifted by the window max
    e = torch.exp(win - win.max(dim=-1, keepdim=True).values)
    return (e * win).sum(-1) / e.sum(-1)


SHAPES = [(2, 3, 4, 6, 8), (1, 2, 3, 5, 7), (2, 2, 2, 1, 5), (1, 2, 3, 4, 1), (1, 1, 2, 1, 1)]


@pytest.mark.parametrize("shape", SHAPES)
def test_softpool_matches_window_loop(shape):
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    out = softpool_spatial(x)
    n, c, t, h, w = shape
    assert out.shape == (n, c, t, math.ceil(h / 2), math.ceil(w / 2))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, _reference(x, _soft))


def test_softpool_gradcheck_and_closed_form():
    x = torch.randn(1, 2, 2, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(softpool_spatial, (x,))
    # d out / d x_i = w_i (1 + x_i - out) on one full window.
    win = x[0, 0, 0, :2, :2]
    out = softpool_spatial(x)[0, 0, 0, 0, 0]
    (g,) = torch.autograd.grad(out, x)
    wts = torch.softmax(win.reshape(-1), 0).reshape(2, 2)
    torch.testing.assert_close(g[0, 0, 0, :2, :2], wts * (1 + win - out))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_softpool_large_magnitudes_stay_finite(dtype, tol):
    x = (torch.randn(2, 3, 2, 5, 6, generator=torch.Generator().manual_seed(1)) * 1e3).to(dtype)
    out = softpool_spatial(x)
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    ref = _reference(x.double(), _soft)
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    # At this scale the softmax is one-hot: SoftPool equals max pooling.
    torch.testing.assert_close(out.double(), _reference(x.double(), lambda v: v.max(-1).values), rtol=tol, atol=tol)


def test_symmetric_softpool_matches_loop():
    x = torch.randn(2, 2, 5, 3, 4, dtype=torch.float64)
    out = softpool_symmetric(x)
    assert out.shape == (2, 2, 3, 2, 2)
    torch.testing.assert_close(out, _reference(x, _soft, pool_time=True))
    one = torch.randn(1, 2, 1, 4, 4, dtype=torch.float64)  # T == 1 is not pooled
    torch.testing.assert_close(softpool_symmetric(one), softpool_spatial(one))


@pytest.mark.parametrize("pool_time", [False, True])
def test_avg_and_max_match_loop(pool_time):
    x = torch.randn(2, 3, 3, 5, 3, dtype=torch.float64)
    pool = pool_symmetric if pool_time else pool_spatial
    torch.testing.assert_close(pool(x, "avg"), _reference(x, lambda v: v.mean(-1), pool_time))
    torch.testing.assert_close(pool(x, "max"), _reference(x, lambda v: v.max(-1).values, pool_time))
    if not pool_time:
        torch.testing.assert_close(avg_pool_spatial(x), pool_spatial(x, "avg"))
        torch.testing.assert_close(max_pool_spatial(x), pool_spatial(x, "max"))


def _stoch_probs(win):
    pos = win.clamp_min(0)
    total = pos.sum(-1, keepdim=True)
    uniform = torch.full_like(win, 1.0 / win.shape[-1])
    return torch.where(total > 0, pos / torch.where(total > 0, total, torch.ones_like(total)), uniform)


def test_stochastic_eval_is_probability_weighted_average():
    x = torch.randn(2, 3, 2, 5, 4, dtype=torch.float64)
    x[0, 0, 0, :2, :2] = -torch.rand(2, 2)  # a window with no positive activation: mean of its elements
    out = stochastic_pool_spatial(x, training=False)
    torch.testing.assert_close(out, _reference(x, lambda v: (_stoch_probs(v) * v).sum(-1)))
    torch.testing.assert_close(out[0, 0, 0, 0, 0], x[0, 0, 0, :2, :2].mean())
    torch.testing.assert_close(pool_symmetric(x, "stochastic"),
                               _reference(x, lambda v: (_stoch_probs(v) * v).sum(-1), pool_time=True))


def test_stochastic_training_samples_window_elements_reproducibly():
    x = torch.randn(2, 3, 2, 5, 3)
    x[:, :, :, 4, :] = -1.0 - torch.rand(2, 3, 2, 3)  # overhanging row: all negative, never 0
    a = stochastic_pool_spatial(x, training=True, generator=torch.Generator().manual_seed(5))
    b = stochastic_pool_spatial(x, training=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    for f in range(2):
        for _, i, j, win in _windows(x[:, :, f : f + 1], False):
            p = _stoch_probs(win)
            hit = (win == a[:, :, f, i, j].unsqueeze(-1)) & (p > 0)
            assert hit.any(-1).all(), (f, i, j)


def test_stochastic_training_frequencies_and_gradient():
    # One window [1, 3, 0, 0] repeated: 3 must be drawn with probability 3/4.
    x = torch.tensor([1.0, 3.0, 0.0, 0.0]).reshape(1, 1, 1, 2, 2).repeat(4000, 1, 1, 1, 1)
    out = pool_spatial(x, "stochastic", training=True, generator=torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) <= {1.0, 3.0}
    assert abs((out == 3.0).float().mean().item() - 0.75) < 0.03
    x = torch.rand(1, 2, 1, 4, 4, requires_grad=True)
    out = stochastic_pool_spatial(x, training=True)
    out.sum().backward()
    assert torch.equal(x.grad.sum(), torch.tensor(8.0))  # one element per window gets the gradient
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0}


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="softpool"):
        pool_spatial(torch.zeros(1, 1, 1, 2, 2), "median")
    assert POOL_METHODS == ("softpool", "avg", "max", "stochastic")


@pytest.mark.parametrize("method", POOL_METHODS)
def test_pooling_runs_in_fp32_under_autocast(method):
    x = torch.randn(1, 2, 2, 4, 6) * 50
    ref = pool_spatial(x, method)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pool_spatial(x, method)
        out16 = pool_spatial(x.bfloat16(), method)
    assert out.dtype == torch.float32 and torch.equal(out, ref)
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16, pool_spatial(x.bfloat16().float(), method).bfloat16())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("pool_time", [False, True])
def test_fused_gradient_matches_autograd_through_the_window_loop(shape, pool_time):
    # The fast path (closed-form backward) against autograd through the slow reference: outputs and gradients.
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(*shape, dtype=torch.float64, generator=gen) * 3
    x_fast, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    fast = (softpool_symmetric if pool_time else softpool_spatial)(x_fast)
    ref = _reference(x_ref, _soft, pool_time=pool_time)
    assert "SoftPool" in type(fast.grad_fn).__name__  # the fused path ran
    g = torch.randn(fast.shape, dtype=torch.float64, generator=gen)
    fast.backward(g)
    ref.backward(g)
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(x_fast.grad, x_ref.grad)


def test_fused_path_fp32_large_values_and_half_input_gradients():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 3, 2, 6, 5, generator=gen) * 50
    a, b = x.clone().requires_grad_(), x.double().requires_grad_()
    softpool_spatial(a).sum().backward()
    _reference(b, _soft).sum().backward()
    assert torch.isfinite(a.grad).all()
    torch.testing.assert_close(a.grad, b.grad.float(), atol=1e-5, rtol=1e-4)
    h = x.half().requires_grad_()
    out = softpool_spatial(h)
    out.float().sum().backward()
    assert out.dtype == h.grad.dtype == torch.float16
    torch.testing.assert_close(h.grad.float(), b.grad.float(), atol=2e-2, rtol=2e-2)


def test_plain_ops_when_no_backward_or_traced():
    x = torch.randn(1, 2, 2, 4, 4, requires_grad=True)
    with torch.no_grad():
        assert softpool_spatial(x).grad_fn is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(softpool_spatial, (x,), check_trace=False)
    kinds = {n.kind() for n in traced.graph.nodes()}
    assert "aten::exp" in kinds and "prim::PythonOp" not in kinds  # exportable ops, countable by fvcore
    torch.testing.assert_close(traced(x), softpool_spatial(x))


class _Pool(torch.nn.Module):
    def forward(self, x):
        return softpool_spatial(x)


@pytest.mark.parametrize("shape", [(1, 2, 3, 6, 8), (2, 2, 2, 5, 7)])
def test_export_matches_eager(shape):
    # torch.export and ONNX (opset pooling ops) see the plain-op path and reproduce eager values.
    ort = pytest.importorskip("onnxruntime")
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(9)) * 3
    torch.testing.assert_close(torch.export.export(_Pool(), (x,)).module()(x), softpool_spatial(x))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Pool(), (x,), buf, dynamo=False)
    session = ort.InferenceSession(buf.getvalue())
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), softpool_spatial(x), atol=1e-5, rtol=1e-5)
