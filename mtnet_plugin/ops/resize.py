"""Trilinear resize, the I() of Eq. 3 (Sec. III-A) of Stergiou & Poppe, "Multi-Temporal Convolutions for Human
Action Recognition in Videos", IJCNN 2021: MTConv's prolonged branch back to the local branch's size.

Shape legend: x is (N, C, t, h, w); size is (T, H, W).

The op is ``F.interpolate(mode="trilinear", align_corners=False)``, i.e. aten's ``upsample_trilinear3d``:
that is what tracers, compilers and exporters see. In eager fp32 on the CPU, :func:`_kernel_applies` (the one
place that chooses) runs the fused kernel of :mod:`.native` instead, the same values about ten times faster
(separable passes instead of eight gathers per output; tests compare the two with gradients). Zero-size
inputs or outputs always take F.interpolate, which returns an empty result or raises its own error.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import native


def _kernel_applies(x: torch.Tensor, size: Tuple[int, int, int], out: Optional[torch.Tensor] = None) -> bool:
    """Whether the C kernel computes this resize: eager fp32 CPU (:func:`native.kernel_eligible`), a 5-d input, no
    zero-size dimension, and an fp32 output when one is given."""
    return (native.kernel_eligible(x) and x.dim() == 5 and x.numel() > 0 and min(size) > 0
            and (out is None or (out.dtype == torch.float32 and out.device.type == "cpu")))


def _interpolate_backward(grad: torch.Tensor, in_size: Sequence[int]) -> torch.Tensor:
    n, c = (int(s) for s in grad.shape[:2])
    return torch.ops.aten.upsample_trilinear3d_backward(grad, [int(s) for s in grad.shape[2:]],
                                                        [n, c, *(int(s) for s in in_size)], False)


class _NativeTrilinear(torch.autograd.Function):
    """Eq. 3's I() in eager mode by the C kernel; its backward is the kernel's adjoint (only the input size is
    kept)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        ctx.in_size = tuple(int(s) for s in x.shape[2:])
        return native.trilinear_forward(x, size)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        if native.kernel_eligible(grad):
            return native.trilinear_backward(grad, ctx.in_size), None
        return _interpolate_backward(grad, ctx.in_size), None


def trilinear_resize(x: torch.Tensor, size: Sequence[int], out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Trilinear interpolation of x to an exact (T, H, W), align_corners=False (the I() of Eq. 3).

    Args:
        x: (N, C, t, h, w), any float dtype.
        size: (T, H, W).
        out: optional (N, C, T, H, W) tensor to write into, e.g. a channel slot ``y[:, k:]`` of a larger one;
            no autograd through it (for inference: the caller runs without gradients). It must not share
            memory with x or overlap itself.

    Returns:
        (N, C, T, H, W) in x's dtype (``out`` when given); x itself when it already has that size and no
        ``out`` is given.
    """
    size = tuple(int(s) for s in size)
    if out is not None:
        if x.requires_grad and torch.is_grad_enabled():
            raise ValueError("trilinear_resize(out=...) does not record gradients: call it without autograd")
        if _kernel_applies(x, size, out):
            return native.trilinear_forward(x, size, out=out)
        return out.copy_(x if tuple(int(s) for s in x.shape[2:]) == size else trilinear_resize(x, size))
    if tuple(int(s) for s in x.shape[2:]) == size:
        return x
    if _kernel_applies(x, size):
        if x.requires_grad and torch.is_grad_enabled():
            return _NativeTrilinear.apply(x, size)
        return native.trilinear_forward(x, size)
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)
