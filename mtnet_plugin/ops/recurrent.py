"""A multi-layer GRU from h_0 = 0 with torch's ``nn.GRU`` equations, for the recurrent unit of Squeeze and
Recursion (Eq. 9-10, Sec. III-B of Stergiou & Poppe, "Multi-Temporal Convolutions for Human Action Recognition
in Videos", IJCNN 2021): the op is aten's ``gru`` (what ``nn.GRU`` runs, and what tracers, compilers,
exporters and the FLOP counter see); in eager fp32 on the CPU, :func:`gru_sequence` (the one place that
chooses) runs it on the fused CPU kernel of :mod:`.native` instead.

Shape legend: N batch, T time steps, D input size, H hidden size.

Eager PyTorch runs a GRU step on the CPU as a dozen small operators, each recorded for autograd, which at
MTNet's sizes (H <= 432, T = 16, N small) costs far more than the arithmetic. Here the input projections of
all steps are one matrix product per layer, the recurrence forward and backward is one kernel call per layer,
and the weight gradients are matrix products over all steps. Tests compare it with ``nn.GRU``: outputs and the
gradients of the input and every weight.
"""
from typing import List, Sequence

import torch
from torch.autograd.function import once_differentiable

from . import native


def _shifted(out: torch.Tensor) -> torch.Tensor:
    """h_{t-1} for every step t: the outputs moved one step later, zeros (h_0) first. out: (N, T, H)."""
    return torch.cat([out.new_zeros(out.shape[0], 1, out.shape[2]), out[:, :-1]], dim=1)


def _run_layers(x: torch.Tensor, num_layers: int, weights: Sequence[torch.Tensor], save: bool):
    """Run the stacked layers. Returns the inputs of every layer, their outputs, and (when ``save``) what each
    layer's backward needs; the last output is the top layer's."""
    inputs, outs, saves = [], [], []
    layer_in = x
    for k in range(num_layers):
        w_ih, w_hh, b_ih, b_hh = weights[4 * k : 4 * k + 4]
        n, t, d = layer_in.shape
        # W_i x_t + b_i of all steps
        gi = torch.addmm(b_ih, layer_in.reshape(-1, d), w_ih.t()).view(n, t, int(w_ih.shape[0]))
        out, saved = native.gru_layer_forward(gi, w_hh, b_hh, save=save)
        inputs.append(layer_in)
        outs.append(out)
        saves.append(saved)
        layer_in = out
    return inputs, outs, saves


class _GRUFunction(torch.autograd.Function):
    """Forward and backward of the stacked layers; ``weights`` is (W_ih, W_hh, b_ih, b_hh) per layer."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, num_layers: int, *weights: torch.Tensor) -> torch.Tensor:
        inputs, outs, saves = _run_layers(x, num_layers, weights, save=True)
        ctx.num_layers = num_layers
        ctx.save_for_backward(*inputs, *outs, *saves, *weights)
        return outs[-1]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        k_layers = ctx.num_layers
        tensors = ctx.saved_tensors
        inputs, outs = tensors[:k_layers], tensors[k_layers : 2 * k_layers]
        saves, weights = tensors[2 * k_layers : 3 * k_layers], tensors[3 * k_layers :]
        grads: List[torch.Tensor] = [None] * len(weights)
        dout = grad
        for k in reversed(range(k_layers)):
            w_ih, w_hh = weights[4 * k], weights[4 * k + 1]
            dgi, dgh = native.gru_layer_backward(dout, w_hh, outs[k], saves[k])
            dgi2, dgh2 = dgi.reshape(-1, dgi.shape[2]), dgh.reshape(-1, dgh.shape[2])
            x_k = inputs[k].reshape(-1, inputs[k].shape[2])
            grads[4 * k] = dgi2.t() @ x_k  # dW_ih: sum over steps and samples
            grads[4 * k + 1] = dgh2.t() @ _shifted(outs[k]).reshape(-1, outs[k].shape[2])  # dW_hh
            grads[4 * k + 2] = dgi2.sum(0)
            grads[4 * k + 3] = dgh2.sum(0)
            dout = (dgi2 @ w_ih).view_as(inputs[k])  # into the layer below, or the input
        return (dout, None, *grads)


def gru_sequence(x: torch.Tensor, weights: Sequence[torch.Tensor], num_layers: int) -> torch.Tensor:
    """Outputs of the top layer of a stacked GRU from zero states, batch first, without dropout.

    Args:
        x: (N, T, D), any float dtype the weights have, any device.
        weights: per layer k, ``weight_ih_l{k}`` (3H, D or H), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}`` and
            ``bias_hh_l{k}`` (3H,), in that order (nn.GRU's parameters).
        num_layers: number of stacked layers.

    Returns:
        (N, T, H), as ``nn.GRU(..., batch_first=True)(x)[0]`` up to float rounding: the C kernel in eager
        fp32 on the CPU (weights included), aten's ``gru`` everywhere else.
    """
    if len(weights) != 4 * num_layers:
        raise ValueError(f"gru_sequence: expected 4 weights per layer ({4 * num_layers}), got {len(weights)}")
    if native.kernel_eligible(x) and all(native.kernel_eligible(w) for w in weights):
        if torch.is_grad_enabled() and (x.requires_grad or any(w.requires_grad for w in weights)):
            return _GRUFunction.apply(x, num_layers, *weights)
        return _run_layers(x, num_layers, weights, save=False)[1][-1]
    h0 = x.new_zeros((num_layers, x.shape[0], weights[1].shape[1]))  # sizes kept symbolic for tracing
    return torch.gru(x, h0, list(weights), True, num_layers, 0.0, False, False, True)[0]
