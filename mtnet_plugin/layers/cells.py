"""Recurrent cells for Squeeze and Recursion (Table VIb, spec #16-17): a peephole LSTM, which torch lacks.

Peephole LSTM: F. A. Gers, N. N. Schraudolph and J. Schmidhuber, "Learning Precise Timing with LSTM Recurrent
Networks", JMLR 2002. GRU, LSTM and tanh-RNN are torch's ``nn.GRU``, ``nn.LSTM`` and ``nn.RNN``.

Shape legend: N batch, T time steps, D input size, H hidden size.
"""
import math
from typing import Optional, Tuple

import torch
from torch import nn


class PeepholeLSTM(nn.Module):
    """Multi-layer LSTM with diagonal peephole connections, batch first, h_0 = c_0 = 0.

    Per layer and time step, with gates in torch's order (i, f, g, o)::

        i_t = sigmoid(W_ii x_t + W_hi h_t-1 + b_i + p_i * c_t-1)
        f_t = sigmoid(W_if x_t + W_hf h_t-1 + b_f + p_f * c_t-1)
        g_t = tanh(W_ig x_t + W_hg h_t-1 + b_g)
        c_t = f_t * c_t-1 + i_t * g_t
        o_t = sigmoid(W_io x_t + W_ho h_t-1 + b_o + p_o * c_t)
        h_t = o_t * tanh(c_t)

    Parameters of layer k: ``weight_ih_l{k}`` (4H, D or H), ``weight_hh_l{k}`` (4H, H), ``bias_l{k}`` (4H)
    and ``weight_peephole_l{k}`` (3, H) holding (p_i, p_f, p_o). Initialised like torch's recurrent modules:
    every parameter uniform in [-1/sqrt(H), 1/sqrt(H)].

    Args:
        input_size: D.
        hidden_size: H.
        num_layers: stacked layers; layer k > 0 reads layer k - 1's outputs.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        for k in range(num_layers):
            d = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(4 * hidden_size, d)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(4 * hidden_size, hidden_size)))
            self.register_parameter(f"bias_l{k}", nn.Parameter(torch.empty(4 * hidden_size)))
            self.register_parameter(f"weight_peephole_l{k}", nn.Parameter(torch.empty(3, hidden_size)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in [-1/sqrt(H), 1/sqrt(H)], the rule of torch's nn.LSTM/GRU/RNN."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _layer(self, x: torch.Tensor, k: int) -> torch.Tensor:
        w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
        bias, peep = getattr(self, f"bias_l{k}"), getattr(self, f"weight_peephole_l{k}")
        n, t, _ = x.shape
        gates_x = torch.nn.functional.linear(x, w_ih, bias)  # (N, T, 4H), all steps at once
        h = x.new_zeros(n, self.hidden_size)
        c = x.new_zeros(n, self.hidden_size)
        outputs = []
        for step in range(t):
            gi, gf, gg, go = (gates_x[:, step] + h @ w_hh.t()).chunk(4, dim=1)
            i = torch.sigmoid(gi + peep[0] * c)
            f = torch.sigmoid(gf + peep[1] * c)
            c = f * c + i * torch.tanh(gg)
            o = torch.sigmoid(go + peep[2] * c)
            h = o * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1)

    def forward(self, x: torch.Tensor, hx: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, None]:
        """x: (N, T, D). Returns (outputs of the top layer (N, T, H), None); only h_0 = 0 is supported."""
        if hx is not None:
            raise ValueError("PeepholeLSTM starts from zero states only")
        for k in range(self.num_layers):
            x = self._layer(x, k)
        return x, None

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, batch_first=True"
