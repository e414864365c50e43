"""Channelwise (depthwise) 3D convolution with a faster CPU backward.

X3D's and MTNet's blocks use channelwise 3x3x3 convolutions (``groups == in == out channels``). On the CPU,
PyTorch's backward for them takes 10-30x their forward (measured here: 55-95 ms against 4-10 ms for a
16 x 24 x 16 x 16 x 16 input), and it is most of a training iteration of X3D_XS and MTNet_XS
(docs/benchmarks.md). At stride 1 both gradients are themselves channelwise convolutions, which run on the
fast forward kernels:

- grad input: the output gradient correlated with the flipped kernel (a transposed convolution written as a
  forward one);
- grad weight: each (sample, channel) plane of the input correlated with the same plane of the output gradient,
  as one convolution with ``groups = N * C``, summed over the batch.

:func:`channelwise_conv3d` decides in one place: eager CPU float32 with a gradient to compute and geometry it
handles (stride and dilation 1, padding below the kernel size) takes the Function below; the strided convs
(the first block of each stage) keep aten's backward, which was faster than this formulation (with the
gradient zero-dilated by the stride) on large planes; everything else (CUDA, other
dtypes, autocast, ``torch.jit.trace``, ``torch.compile`` / ``torch.export``, inference) is ``F.conv3d``. The
values are those of ``F.conv3d`` and its gradients within float rounding (tests compare them).
``MTNET_CHANNELWISE_BACKWARD=aten`` in the environment makes every call ``F.conv3d`` (to compare the two).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _triple

from . import native
from ._library import mode

Triple = Tuple[int, int, int]


def _grad_input(grad: torch.Tensor, weight: torch.Tensor, padding: Triple) -> torch.Tensor:
    """d loss / d x of y = conv3d(x, weight, stride 1, padding, groups=C): grad correlated with the flipped kernel
    (a transposed convolution written as a forward one)."""
    kernel = weight.shape[2:]
    return F.conv3d(grad, weight.flip(2, 3, 4), padding=[k - 1 - p for k, p in zip(kernel, padding)],
                    groups=grad.shape[1])


def _grad_weight(grad: torch.Tensor, x: torch.Tensor, kernel: Sequence[int], padding: Triple) -> torch.Tensor:
    """d loss / d weight: per (sample, channel), x's plane correlated with grad's plane, summed over samples."""
    n, c = x.shape[:2]
    planes = F.conv3d(x.reshape(1, n * c, *x.shape[2:]), grad.reshape(n * c, 1, *grad.shape[2:]),
                      padding=padding, groups=n * c)
    return planes.reshape(n, c, *kernel).sum(0).unsqueeze(1)


class _ChannelwiseConv3dFunction(torch.autograd.Function):
    """y = conv3d(x, weight, bias, stride 1, padding, groups=C) with both gradients as forward convolutions."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                padding: Triple) -> torch.Tensor:
        ctx.padding = padding
        ctx.save_for_backward(x, weight)
        return F.conv3d(x, weight, bias, 1, padding, 1, x.shape[1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _grad_input(grad, weight, ctx.padding)
        if ctx.needs_input_grad[1]:
            grad_w = _grad_weight(grad, x.contiguous(), weight.shape[2:], ctx.padding)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3, 4))
        return grad_x, grad_w, grad_b, None


def fast_backward_applies(x: torch.Tensor, weight: torch.Tensor, stride: Triple, padding: Triple,
                          dilation: Triple) -> bool:
    """Whether :func:`channelwise_conv3d` takes the faster CPU backward for these arguments."""
    wanted = mode() == "eager" and torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    return (wanted and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and x.dim() == 5 and weight.shape[1] == 1
            and weight.shape[0] == x.shape[1] and all(s == 1 for s in stride) and all(d == 1 for d in dilation)
            and all(0 <= p < k for p, k in zip(padding, weight.shape[2:]))
            and not native.channelwise_backward_switched_off())


def channelwise_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride=1,
                       padding=0, dilation=1) -> torch.Tensor:
    """``F.conv3d(x, weight, bias, stride, padding, dilation, groups=C)`` for weight (C, 1, kT, kH, kW).

    Same values and gradients; on eager CPU float32 training the backward runs about 3x faster (module doc).
    """
    stride, padding, dilation = _triple(stride), _triple(padding), _triple(dilation)
    if fast_backward_applies(x, weight, stride, padding, dilation):
        return _ChannelwiseConv3dFunction.apply(x, weight, bias, padding)
    return F.conv3d(x, weight, bias, stride, padding, dilation, weight.shape[0])
