"""SoftPool (Eq. 5, Sec. III-A) of Stergiou & Poppe, "Multi-Temporal Convolutions for Human Action
Recognition in Videos", IJCNN 2021; SoftPool itself is Stergiou, Poppe & Kalliatakis, "Refining activation
downsampling with SoftPool", ICCV 2021 (arXiv:2101.00440).

Shape legend: x is (N, C, T, H, W); H' = ceil(H / 2), W' = ceil(W / 2), T2 = ceil(T / 2).
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ._windows import compute_dtype, fp32_region, static_shape, window_sizes, window_view


def _window_weights(x: torch.Tensor, sizes) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Window view of x (padding 0), its unnormalised softmax weights e (padding 0) and their window sums.

    The per-window max comes from ``max_pool3d`` and the window sums from ``avg_pool3d`` (times the window
    size), contiguous pooling kernels that are several times faster on CPU than reductions over the strided
    dims of the 8-d window view; the max is broadcast back through that (free) view.
    """
    logits = window_view(x, sizes, float("-inf"))  # padding gets zero weight
    values = window_view(x, sizes, 0.0)  # 0 * e^-inf would be nan; use 0 instead
    n, c, t2, kt, h2, kh, w2, kw = static_shape(logits)
    padded = logits.reshape(n, c, t2 * kt, h2 * kh, w2 * kw)
    # The result does not depend on the shift, so the max carries no gradient (spec numerics: per window).
    shift = F.max_pool3d(padded.detach(), sizes, sizes).reshape(n, c, t2, 1, h2, 1, w2, 1)
    e = (logits - shift).exp_()
    total = F.avg_pool3d(e.reshape(n, c, t2 * kt, h2 * kh, w2 * kw), sizes, sizes) * float(kt * kh * kw)
    return values, e, total.reshape(n, c, t2, 1, h2, 1, w2, 1)


def _window_sum(y: torch.Tensor, sizes) -> torch.Tensor:
    """Sum of each window of an 8-d window view y, (N, C, T2, H2, W2), with ``avg_pool3d``."""
    n, c, t2, kt, h2, kh, w2, kw = static_shape(y)
    return F.avg_pool3d(y.reshape(n, c, t2 * kt, h2 * kh, w2 * kw), sizes, sizes) * float(kt * kh * kw)


def _softpool_reference(x: torch.Tensor, sizes) -> torch.Tensor:
    """Eq. 5 in plain differentiable ops: the traced/exported/inference path and the reference of the fused one."""
    values, e, total = _window_weights(x, sizes)
    n, c, t2, _, h2, _, w2, _ = static_shape(values)
    return _window_sum(e * values, sizes) / total.reshape(n, c, t2, h2, w2)


class _SoftPoolFunction(torch.autograd.Function):
    """Eq. 5 with its closed-form gradient ``d out / d x_i = w_i (1 + x_i - out)`` (SoftPool paper, Eq. 5-6):
    three passes over the input in backward instead of autograd's chain through exp, mul, sum and div."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: Tuple[int, int, int]) -> torch.Tensor:
        values, e, total = _window_weights(x, sizes)
        n, c, t2, _, h2, _, w2, _ = static_shape(values)
        out = _window_sum(e * values, sizes).reshape(n, c, t2, 1, h2, 1, w2, 1) / total
        ctx.sizes, ctx.shape = sizes, static_shape(x)
        ctx.save_for_backward(values, e, total, out)
        return out.reshape(n, c, t2, h2, w2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        values, e, total, out = ctx.saved_tensors
        kt, kh, kw = ctx.sizes
        g = (grad.unsqueeze(3).unsqueeze(5).unsqueeze(7) / total)  # (N, C, T2, 1, H2, 1, W2, 1)
        gx = torch.sub(values, out - 1.0).mul_(e).mul_(g)  # w_i (1 + x_i - out) * grad, per window element
        n, c, t, h, w = ctx.shape
        gx = gx.reshape(n, c, gx.shape[2] * kt, gx.shape[4] * kh, gx.shape[6] * kw)
        return gx[:, :, :t, :h, :w], None


def _use_fused(x: torch.Tensor) -> bool:
    """The fused autograd path only where a backward will run and no tracer or compiler records the graph
    (they see the plain ops, which they can export and count)."""
    return (x.requires_grad and torch.is_grad_enabled() and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling())


def _softpool(x: torch.Tensor, pool_time: bool) -> torch.Tensor:
    """Softmax-weighted window sum; per-window max subtracted before exp (spec numerics)."""
    sizes = window_sizes(x, pool_time)
    with fp32_region(x):
        xf = compute_dtype(x)
        out = _SoftPoolFunction.apply(xf, sizes) if _use_fused(xf) else _softpool_reference(xf, sizes)
    return out.to(x.dtype)


def softpool_spatial(x: torch.Tensor) -> torch.Tensor:
    """Softmax-weighted 2x2 pooling of each frame (Eq. 5, Sec. III-A).

    ``out = sum_i softmax(x_R)_i * x_i`` per channel, frame and 2x2 window R. Windows that overhang an odd
    edge use only their in-bounds elements, which get all the softmax weight; a dimension of size 1 is not
    pooled (spec #6). Computed in fp32 with autocast off (spec #19), subtracting each window's max, so any
    magnitude is safe; the gradient is ``d out / d x_i = w_i (1 + x_i - out)``.

    Args:
        x: (N, C, T, H, W), any float dtype.

    Returns:
        (N, C, T, H', W') in the dtype of x.
    """
    return _softpool(x, pool_time=False)


def softpool_symmetric(x: torch.Tensor) -> torch.Tensor:
    """SoftPool over 2x2x2 windows of (T, H, W): the "symmetric" ablation of Table VIc.

    Same rules as :func:`softpool_spatial` (ceil mode, size-1 dimensions kept, fp32), time included.

    Args:
        x: (N, C, T, H, W).

    Returns:
        (N, C, T2, H', W') in the dtype of x.
    """
    return _softpool(x, pool_time=True)
