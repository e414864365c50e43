"""mtnet_plugin.layers.SqueezeRecursion (Eq. 8-11) and its cells, against hand-written recurrences."""
import math

import pytest
import torch
from torch import nn

from mtnet_plugin.layers import CELLS, PeepholeLSTM, SqueezeRecursion
from mtnet_plugin.ops import native

C, T = 5, 6


def _stepwise(rnn, cell, seq):
    """Run torch's single-step cells layer by layer over time, with weights copied from the stacked module."""
    cls = {"gru": nn.GRUCell, "lstm": nn.LSTMCell, "rnn": nn.RNNCell}[cell]
    x = seq
    for k in range(rnn.num_layers):
        step = cls(C, C).double()
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(step, name).data.copy_(getattr(rnn, f"{name}_l{k}"))
        h = torch.zeros(x.shape[0], C, dtype=x.dtype)
        state = (h, h.clone()) if cell == "lstm" else h
        outs = []
        for t in range(x.shape[1]):
            state = step(x[:, t], state)
            outs.append(state[0] if cell == "lstm" else state)
        x = torch.stack(outs, 1)
    return x


def _peephole_by_hand(m, seq):
    """The documented peephole-LSTM equations, one sample, one unit-vector at a time."""
    x = seq
    sig = torch.sigmoid
    for k in range(m.num_layers):
        w_ih, w_hh = getattr(m, f"weight_ih_l{k}"), getattr(m, f"weight_hh_l{k}")
        b, p = getattr(m, f"bias_l{k}"), getattr(m, f"weight_peephole_l{k}")
        W = {g: (w_ih[j * C:(j + 1) * C], w_hh[j * C:(j + 1) * C], b[j * C:(j + 1) * C]) for j, g in enumerate("ifgo")}
        outs = []
        for n in range(x.shape[0]):
            h, c, hs = torch.zeros(C, dtype=x.dtype), torch.zeros(C, dtype=x.dtype), []
            for t in range(x.shape[1]):
                pre = {g: W[g][0] @ x[n, t] + W[g][1] @ h + W[g][2] for g in "ifgo"}
                i = sig(pre["i"] + p[0] * c)
                f = sig(pre["f"] + p[1] * c)
                c = f * c + i * torch.tanh(pre["g"])
                o = sig(pre["o"] + p[2] * c)
                h = o * torch.tanh(c)
                hs.append(h)
            outs.append(torch.stack(hs))
        x = torch.stack(outs)
    return x


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
def test_matches_hand_written_recurrence(cell, layers):
    torch.manual_seed(0)
    m = SqueezeRecursion(C, cell=cell, num_layers=layers).double()
    x = torch.randn(3, C, T, 4, 3, dtype=torch.float64)
    seq = x.mean(dim=(3, 4)).transpose(1, 2)  # spatial mean: (N, T, C)
    if cell == "lstm_peephole":
        h = _peephole_by_hand(m.rnn, seq)
    else:
        h = _stepwise(m.rnn, cell, seq)
    expected = x * h.transpose(1, 2)[..., None, None]  # multiply, no sigmoid
    torch.testing.assert_close(m(x), expected)


def test_default_is_a_two_layer_gru_with_hidden_size_c():
    m = SqueezeRecursion(C)
    assert isinstance(m.rnn, nn.GRU) and m.rnn.num_layers == 2 and m.rnn.hidden_size == C


def test_unknown_cell_and_bad_depth_are_clear_errors():
    with pytest.raises(ValueError, match="gru, lstm, rnn, lstm_peephole"):
        SqueezeRecursion(C, cell="transformer")
    with pytest.raises(ValueError, match="num_layers"):
        SqueezeRecursion(C, num_layers=0)


@pytest.mark.parametrize("cell", CELLS)
def test_init_is_uniform_within_one_over_sqrt_c(cell):
    torch.manual_seed(1)
    m = SqueezeRecursion(64, cell=cell, num_layers=2)
    bound = 1 / math.sqrt(64)
    flat = torch.cat([p.detach().flatten() for p in m.parameters()])
    assert flat.abs().max() <= bound
    assert abs(flat.std().item() - bound / math.sqrt(3)) < 0.1 * bound  # the std of U(-b, b)
    for p in m.parameters():
        p.data.normal_(0, 1.0)
    m.reset_parameters()
    assert max(p.detach().abs().max() for p in m.parameters()) <= bound


@pytest.mark.parametrize("cell", CELLS)
def test_causal_from_zero_state_and_gradients(cell):
    m = SqueezeRecursion(C, cell=cell)
    x = torch.randn(2, C, T, 3, 3, requires_grad=True)
    y = x.detach().clone()
    y[:, :, 3:] += torch.randn(2, C, T - 3, 3, 3)  # change the future only
    torch.testing.assert_close(m(x)[:, :, :3], m(y)[:, :, :3])
    m(x).square().sum().backward()
    assert x.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cell", CELLS)
def test_recurrence_runs_in_fp32_under_autocast(cell, monkeypatch):
    m = SqueezeRecursion(C, cell=cell)
    x = torch.randn(2, C, T, 3, 3)
    seen = {}
    m.rnn.register_forward_hook(lambda mod, inp, out: seen.update(inp=inp[0].dtype, out=out[0].dtype))
    real_kernel = native.gru_layer_forward  # a GRU may run on the CPU kernel instead of the module

    def kernel_spy(gi, *args, **kwargs):
        out, saved = real_kernel(gi, *args, **kwargs)
        seen.update(inp=gi.dtype, out=out.dtype)
        return out, saved

    monkeypatch.setattr(native, "gru_layer_forward", kernel_spy)
    ref = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x.bfloat16())
    assert seen == {"inp": torch.float32, "out": torch.float32}
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)


def test_peephole_rejects_initial_state():
    with pytest.raises(ValueError):
        PeepholeLSTM(2, 2)(torch.zeros(1, 3, 2), torch.zeros(1, 1, 2))


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_zero_init_output_is_zero_yet_every_weight_learns(cell, layers):
    """zero_init_output: x * h == 0 exactly for any input; the zeroed candidate rows get a gradient at once, and
    after one SGD step every parameter of the unit does (the identity start of MTBlock, docs/spec-decisions.md)."""
    torch.manual_seed(0)
    m = SqueezeRecursion(C, cell=cell, num_layers=layers)
    m.zero_init_output()
    x = torch.randn(3, C, T, 3, 3)
    assert torch.equal(m(x), torch.zeros_like(x))
    target = torch.randn_like(x)
    (m(x) - target).square().mean().backward()
    top = getattr(m.rnn, f"weight_ih_l{layers - 1}")
    assert top.grad.abs().sum() > 0
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    opt.step()
    opt.zero_grad()
    assert m(x).abs().max() > 0
    (m(x) - target).square().mean().backward()
    dead = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead
