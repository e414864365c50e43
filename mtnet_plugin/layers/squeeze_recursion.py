"""Squeeze and Recursion, the global aggregated feature importance branch G of the MTBlock (Eq. 8-11,
Sec. III-B; spec #15-17). SR was introduced in A. Stergiou and R. Poppe, "Learn to cycle: Time-consistent
feature discovery for action recognition", Pattern Recognition Letters 2021 (arXiv:2006.08247).

Shape legend: N batch, C channels (= the recurrent hidden size), T frames, H height, W width.
"""
import torch
from torch import nn

from mtnet_plugin.ops import compute_dtype, fp32_region, gru_sequence

from .cells import PeepholeLSTM

CELLS = ("gru", "lstm", "rnn", "lstm_peephole")


def build_cell(cell: str, channels: int, num_layers: int) -> nn.Module:
    """A batch-first recurrent module with input and hidden size ``channels`` (Table VIb)."""
    if cell == "gru":  # torch's GRU: reset gate after the hidden matmul, a documented deviation (spec #17)
        return nn.GRU(channels, channels, num_layers=num_layers, batch_first=True)
    if cell == "lstm":
        return nn.LSTM(channels, channels, num_layers=num_layers, batch_first=True)
    if cell == "rnn":
        return nn.RNN(channels, channels, num_layers=num_layers, nonlinearity="tanh", batch_first=True)
    if cell == "lstm_peephole":
        return PeepholeLSTM(channels, channels, num_layers=num_layers)
    raise ValueError(f"unknown recurrent cell {cell!r}; valid: {', '.join(CELLS)}")


class SqueezeRecursion(nn.Module):
    """Squeeze (spatial mean) then recursion over time; its outputs scale the input (Eq. 8-11, spec #15)::

        x (N, C, T, H, W) -- mean over (H, W) --> (N, T, C) -- recurrent unit, h_0 = 0 --> (N, T, C)
          |                                                      top layer's outputs h_t
          '------------------------- x * h (broadcast over H, W; no sigmoid) ----> (N, C, T, H, W)

    The recurrent unit has hidden size C and runs in fp32 with autocast off (spec #19), or in the
    parameters' dtype when the module was converted to float64/half. Init: torch's default for recurrent
    modules, every weight and bias uniform in [-1/sqrt(C), 1/sqrt(C)] (the peephole cell follows the same
    rule); :meth:`reset_parameters` restores it after a model-wide init.

    Args:
        channels: C.
        cell: "gru" (paper), "lstm", "rnn" (tanh) or "lstm_peephole" (Table VIb).
        num_layers: 2 (text) or 1 (spec #16).
    """

    def __init__(self, channels: int, cell: str = "gru", num_layers: int = 2):
        super().__init__()
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        self.channels, self.cell, self.num_layers = channels, cell, num_layers
        self.rnn = build_cell(cell, channels, num_layers)

    def reset_parameters(self) -> None:
        """Re-draw the recurrent weights with the documented uniform init."""
        self.rnn.reset_parameters()

    @torch.no_grad()
    def zero_init_output(self) -> None:
        """Make the top layer's outputs exactly 0 for every input, so ``x * h`` is 0 and a residual block
        built on SR starts as the identity, while every recurrent weight still receives a gradient.

        The top layer's candidate (GRU ``n``, LSTM ``g``, RNN pre-activation) loses its input weights and its
        biases; with h_0 = 0 (and c_0 = 0) the candidate is tanh(0) = 0 at every step, so h_t stays 0. The
        gradient of the loss w.r.t. those zeroed input weights is (dL/dh_t)(1 - z_t) x_t (GRU; i_t o_t x_t for
        the LSTMs, x_t for the RNN), with x_t the lower layer's (or SR's pooled) input: nonzero whenever the
        block's input is. Lower layers keep their init (docs/spec-decisions.md, "zero-initialised blocks").
        """
        top = self.num_layers - 1
        rnn, hidden = self.rnn, self.channels
        if self.cell == "gru":  # gate rows (r, z, n)
            rows = slice(2 * hidden, 3 * hidden)
            names = ("weight_ih", "bias_ih", "bias_hh")
        elif self.cell == "lstm":  # (i, f, g, o)
            rows = slice(2 * hidden, 3 * hidden)
            names = ("weight_ih", "bias_ih", "bias_hh")
        elif self.cell == "lstm_peephole":  # (i, f, g, o), one bias
            rows = slice(2 * hidden, 3 * hidden)
            names = ("weight_ih", "bias")
        else:  # tanh RNN: one candidate
            rows = slice(0, hidden)
            names = ("weight_ih", "bias_ih", "bias_hh")
        for name in names:
            getattr(rnn, f"{name}_l{top}")[rows].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, T, H, W). Returns x scaled per (n, c, t) by the recurrent outputs, same shape and dtype."""
        dtype = self.rnn.weight_hh_l0.dtype
        with fp32_region(x):
            seq = compute_dtype(x).mean(dim=(3, 4)).transpose(1, 2).to(dtype)  # (N, T, C)
            if self._plain_gru():  # ops.gru_sequence: nn.GRU's recursion (on the CPU kernel where it applies)
                weights = [getattr(self.rnn, f"{name}_l{k}") for k in range(self.num_layers)
                           for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                h = gru_sequence(seq, weights, self.num_layers)
            else:
                h, _ = self.rnn(seq)  # (N, T, C), top layer
        return x * h.transpose(1, 2)[..., None, None].to(x.dtype)

    def _plain_gru(self) -> bool:
        """torch's GRU as configured here: bias, one direction, no dropout in effect, no projection."""
        rnn = self.rnn
        return (
            isinstance(rnn, nn.GRU)
            and rnn.bias
            and not rnn.bidirectional
            and (rnn.dropout == 0 or not self.training)
            and not getattr(rnn, "proj_size", 0)
        )

    def extra_repr(self) -> str:
        return f"channels={self.channels}, cell={self.cell!r}, num_layers={self.num_layers}"
