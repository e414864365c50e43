"""The geometry of X3D's bottleneck branch, written once and filled with injected conv parts.

X3D's block (``models/x3d.py``: Conv3d + BN + activation, SE) and MTBlock (``layers/mtblock.py``: MTConvs, then
Squeeze-and-Recursion) are the same three convolutions with different parts::

    conv_a: 1 x 1 x 1,                                               dim_in    -> dim_inner
    conv_b: t_k x 3 x 3, stride (1, s, s), padding (t_k // 2, 1, 1),
            groups dim_inner (channelwise) or 1,                      dim_inner -> dim_inner
    conv_c: 1 x 1 x 1,                                               dim_inner -> dim_out

A part is a callable ``part(dim_in, dim_out, *, kernel_size, stride, padding, groups)`` returning the named
modules it adds to the branch, in forward order (their names are the state-dict names).
"""
from collections import OrderedDict
from typing import Callable, Dict

from torch import nn

ConvPart = Callable[..., Dict[str, nn.Module]]


def bottleneck_parts(
    *,
    dim_in: int,
    dim_inner: int,
    dim_out: int,
    temporal_kernel: int = 3,
    spatial_stride: int = 1,
    channelwise: bool = True,
    conv_a: ConvPart,
    conv_b: ConvPart,
    conv_c: ConvPart,
) -> "OrderedDict[str, nn.Module]":
    """The named modules of a bottleneck branch, conv_a's then conv_b's then conv_c's (module docstring).

    Args:
        dim_in, dim_inner, dim_out: channel widths.
        temporal_kernel: t_k of conv_b.
        spatial_stride: s, applied by conv_b.
        channelwise: conv_b with ``groups = dim_inner`` (X3D.CHANNELWISE_3x3x3), else dense.
        conv_a, conv_b, conv_c: the parts.

    Returns:
        An ordered dict for ``nn.Sequential``; the branch maps (N, dim_in, T, H, W) to
        (N, dim_out, T, ceil(H / s), ceil(W / s)).
    """
    pointwise = dict(kernel_size=(1, 1, 1), stride=(1, 1, 1), padding=(0, 0, 0), groups=1)
    parts: "OrderedDict[str, nn.Module]" = OrderedDict()
    parts.update(conv_a(dim_in, dim_inner, **pointwise))
    parts.update(conv_b(
        dim_inner,
        dim_inner,
        kernel_size=(temporal_kernel, 3, 3),
        stride=(1, spatial_stride, spatial_stride),
        padding=(temporal_kernel // 2, 1, 1),
        groups=dim_inner if channelwise else 1,
    ))
    parts.update(conv_c(dim_inner, dim_out, **pointwise))
    return parts
