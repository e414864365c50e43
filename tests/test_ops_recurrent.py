"""mtnet_plugin.ops.gru_sequence (the recurrent unit of Squeeze and Recursion, Eq. 9-10) on the CPU kernel,
against torch's nn.GRU: outputs and the gradients of the input and every weight; and SqueezeRecursion with
either path."""
import os
import shutil
import warnings

import pytest
import torch
from torch import nn

from mtnet_plugin.layers import SqueezeRecursion
from mtnet_plugin.ops import gru_sequence, native

needs_kernel = pytest.mark.skipif(
    shutil.which(os.environ.get("CC", "cc")) is None or os.environ.get("MTNET_NATIVE", "1") == "0",
    reason="no C compiler (or MTNET_NATIVE=0): SqueezeRecursion uses nn.GRU",
)


def _weights(gru: nn.GRU):
    return [getattr(gru, f"{name}_l{k}") for k in range(gru.num_layers)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


@needs_kernel
@pytest.mark.parametrize("n,t,d,h,layers", [(1, 16, 6, 6, 2), (2, 5, 7, 9, 1), (3, 1, 4, 4, 2), (2, 6, 5, 8, 3)])
def test_matches_nn_gru_values_and_gradients(n, t, d, h, layers):
    gen = torch.Generator().manual_seed(n * 100 + t)
    torch.manual_seed(t)
    gru = nn.GRU(d, h, num_layers=layers, batch_first=True)
    x = (torch.randn(n, t, d, generator=gen) * 2).requires_grad_()
    ref, _ = gru(x)
    out = gru_sequence(x, _weights(gru), layers)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    g = torch.randn(ref.shape, generator=gen)
    want = torch.autograd.grad(ref, [x] + _weights(gru), g)
    got = torch.autograd.grad(out, [x] + _weights(gru), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # the no-graph path: the same values
        torch.testing.assert_close(gru_sequence(x, _weights(gru), layers), ref.detach(), rtol=1e-5, atol=1e-6)


@needs_kernel
def test_saturated_gates_stay_finite():
    # Large inputs push every gate to 0 or 1 (expf overflows to inf inside the sigmoid): still finite, still nn.GRU.
    torch.manual_seed(0)
    gru = nn.GRU(3, 3, num_layers=2, batch_first=True)
    x = torch.randn(2, 7, 3) * 200
    with torch.no_grad():
        out = gru_sequence(x, _weights(gru), 2)
        torch.testing.assert_close(out, gru(x)[0], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(out).all()


@needs_kernel
@pytest.mark.parametrize("layers", [1, 2])
def test_squeeze_recursion_uses_the_kernel_with_the_same_values_and_gradients(monkeypatch, layers):
    gen = torch.Generator().manual_seed(layers)
    sr = SqueezeRecursion(6, cell="gru", num_layers=layers)
    x = torch.randn(2, 6, 5, 4, 4, generator=gen).requires_grad_()
    calls = []
    real = native.gru_layer_forward
    monkeypatch.setattr(native, "gru_layer_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast = sr(x)
    assert len(calls) == layers  # one kernel call per layer
    g = torch.randn(fast.shape, generator=gen)
    fast_grads = torch.autograd.grad(fast, [x] + list(sr.parameters()), g)
    monkeypatch.setattr(native, "available", lambda: False)
    ref = sr(x)
    assert len(calls) == layers  # the nn.GRU path now
    ref_grads = torch.autograd.grad(ref, [x] + list(sr.parameters()), g)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(fast_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_other_cells_dtypes_and_tracing_keep_torch_modules(monkeypatch):
    calls = []
    monkeypatch.setattr(native, "gru_layer_forward", lambda *a, **k: calls.append(1))
    x = torch.randn(1, 4, 3, 2, 2)
    SqueezeRecursion(4, cell="lstm")(x)  # an LSTM: nn.LSTM
    SqueezeRecursion(4, cell="gru").double()(x.double())  # float64: nn.GRU
    sr = SqueezeRecursion(4, cell="gru")
    with warnings.catch_warnings():  # jit.trace's deprecation and tracer warnings
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(sr, (x,), check_trace=False)
    assert not calls
    torch.testing.assert_close(traced(x), sr.rnn(x.mean(dim=(3, 4)).transpose(1, 2))[0].transpose(1, 2)[
        ..., None, None] * x)
