"""FLOP handles and model_stats (mtnet_plugin/models/flops.py) against hand counts."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtnet_plugin.models import create_x3d, model_stats
from mtnet_plugin.models.flops import flop_analysis
from mtnet_plugin.ops import softpool_spatial
from mtnet_plugin.ops.frame_select import adjacent_cosine


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class _Outputs(nn.Module):
    """A recurrent module as a submodule (its weights must be parameters of the traced model)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


def _count(module, x):
    analysis = flop_analysis(module.eval(), (x,))
    total = analysis.total()
    assert dict(analysis.unsupported_ops()) == {}
    return total


@pytest.mark.parametrize(
    "cls, gates, kwargs",
    [(nn.GRU, 3, {}), (nn.LSTM, 4, {}), (nn.RNN, 1, {}), (nn.RNN, 1, {"nonlinearity": "relu"})],
)
def test_recurrent_counts_gate_matmuls(cls, gates, kwargs):
    # Per step and sample: G * (in * H + H * H) for layer 1, G * (H * H + H * H) for layer 2.
    rnn = cls(5, 7, num_layers=2, batch_first=True, **kwargs)
    steps, batch = 4, 3
    expected = steps * batch * gates * ((5 * 7 + 7 * 7) + (7 * 7 + 7 * 7))
    assert _count(_Outputs(rnn), torch.randn(batch, steps, 5)) == expected


def test_bidirectional_sequence_first_lstm():
    rnn = nn.LSTM(6, 4, num_layers=1, bidirectional=True)
    steps, batch = 5, 2
    expected = steps * batch * 2 * 4 * (6 * 4 + 4 * 4)  # two directions over all steps
    assert _count(_Outputs(rnn), torch.randn(steps, batch, 6)) == expected


def test_trilinear_interpolation_counts_eight_per_output():
    x = torch.randn(1, 2, 3, 4, 5)
    fn = _Fn(lambda x: F.interpolate(x, size=(6, 8, 10), mode="trilinear", align_corners=False))
    assert _count(fn, x) == 8 * (1 * 2 * 6 * 8 * 10)


def test_softpool_counts_two_per_input_element():
    # The softmax normaliser and the weighted sum each accumulate every element of every window.
    x = torch.randn(2, 3, 4, 6, 8)
    assert _count(_Fn(softpool_spatial), x) == 2 * x.numel()
    # Odd sizes: the windows are padded to (6, 8) (ceil mode), so the count is that of the padded view.
    assert _count(_Fn(softpool_spatial), torch.randn(2, 3, 4, 5, 7)) == 2 * (2 * 3 * 4 * 6 * 8)


def test_cosine_scores_count():
    n, c, t, h, w = 2, 3, 5, 4, 4
    # spatial sum C*T*H*W, norms C*T, dot products C*(T-1), per sample (Eq. 6).
    expected = n * (c * t * h * w + c * t + c * (t - 1))
    assert _count(_Fn(adjacent_cosine), torch.randn(n, c, t, h, w)) == expected


def test_unhandled_op_is_reported():
    analysis = flop_analysis(_Fn(F.gelu).eval(), (torch.randn(2, 3),))
    analysis.total()
    assert "aten::gelu" in analysis.unsupported_ops()


def test_tiny_x3d_total_matches_hook_reference():
    torch.manual_seed(0)
    model = create_x3d(num_classes=5, width_factor=1.0, depth_factor=0.5, dim_c1=4, dim_c5=16).eval()
    ref = {"conv": 0, "bn": 0, "pool": 0, "linear": 0}

    def hook(m, inp, out):
        if isinstance(m, nn.Conv3d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.kernel_size[2]
            ref["conv"] += out.numel() * (m.in_channels // m.groups) * k
        elif isinstance(m, nn.BatchNorm3d):
            ref["bn"] += 2 * out.numel()
        elif isinstance(m, nn.AdaptiveAvgPool3d):
            ref["pool"] += inp[0].numel()
        elif isinstance(m, nn.Linear):
            ref["linear"] += inp[0].numel() * m.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(torch.rand(1, 3, 4, 32, 32))
    for h in handles:
        h.remove()
    model.train()
    stats = model_stats(model, (3, 4, 32, 32))
    assert model.training  # mode restored
    assert stats["unsupported_ops"] == {}
    assert stats["params"] == sum(p.numel() for p in model.parameters())
    assert stats["gflops"] * 1e9 == pytest.approx(sum(ref.values()), rel=1e-9)
    assert stats["gflops_weighted"] * 1e9 == pytest.approx(ref["conv"] + ref["linear"], rel=1e-9)
    assert stats["input_shape"] == (3, 4, 32, 32) and "multiply-add" in stats["convention"]
    assert model_stats(model, (4, 32, 32))["gflops"] == stats["gflops"]  # (T, H, W) means C = 3
    with pytest.raises(ValueError, match="input_shape"):
        model_stats(model, (32, 32))
