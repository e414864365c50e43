"""Trilinear resize, the I() of Eq. 3 (Sec. III-A) of Stergiou & Poppe, "Multi-Temporal Convolutions for Human
Action Recognition in Videos", IJCNN 2021: MTConv's prolonged branch back to the local branch's size.

Shape legend: x is (N, C, t, h, w); size is (T, H, W).

``F.interpolate(mode="trilinear", align_corners=False)`` everywhere, except eager fp32 on the CPU, where the
fused kernel of :mod:`.native` computes the same values about ten times faster (separable passes instead of
eight gathers per output; tests compare the two with gradients).
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import native


class _NativeTrilinear(torch.autograd.Function):
    """Eq. 3's I() by the C kernel; its backward is the kernel's adjoint (nothing saved but the input size)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        ctx.in_size = tuple(int(s) for s in x.shape[2:])
        return native.trilinear_forward(x, size)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        return native.trilinear_backward(grad, ctx.in_size), None


def trilinear_resize(x: torch.Tensor, size: Sequence[int], out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Trilinear interpolation of x to an exact (T, H, W), align_corners=False (the I() of Eq. 3).

    Args:
        x: (N, C, t, h, w), any float dtype.
        size: (T, H, W).
        out: optional (N, C, T, H, W) tensor to write into, e.g. a channel slot ``y[:, k:]`` of a larger one;
            no autograd through it (for inference: the caller runs without gradients).

    Returns:
        (N, C, T, H, W) in x's dtype (``out`` when given); x itself when it already has that size and no
        ``out`` is given.
    """
    size = tuple(int(s) for s in size)
    if out is not None:
        if x.requires_grad and torch.is_grad_enabled():
            raise ValueError("trilinear_resize(out=...) does not record gradients: call it without autograd")
        if native.applies(x) and out.dtype == x.dtype:
            return native.trilinear_forward(x, size, out=out)
        return out.copy_(x if tuple(int(s) for s in x.shape[2:]) == size else trilinear_resize(x, size))
    if tuple(int(s) for s in x.shape[2:]) == size:
        return x
    if native.applies(x):
        if x.requires_grad and torch.is_grad_enabled():
            return _NativeTrilinear.apply(x, size)
        return native.trilinear_forward(x, size)
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)
