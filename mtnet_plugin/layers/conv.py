"""``Conv3d``: ``nn.Conv3d`` whose channelwise case runs through :func:`mtnet_plugin.ops.channelwise_conv3d`.

A drop-in subclass: same arguments, parameters, state-dict keys and ``isinstance(m, nn.Conv3d)``. When
``groups == in_channels == out_channels`` (X3D's and MTConv's channelwise 3x3x3 and temporal convs) and the
padding mode is zeros, its forward is the op, which gives the same values and a faster backward on the CPU
(``ops/channelwise.py``); every other convolution is ``nn.Conv3d``'s own forward.
"""
from typing import Optional

import torch
from torch import nn

from ..ops import channelwise_conv3d


class Conv3d(nn.Conv3d):
    """``nn.Conv3d``; its channelwise case takes the op's faster CPU backward (module doc)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        if (self.groups > 1 and self.groups == self.in_channels == self.out_channels
                and self.padding_mode == "zeros" and isinstance(self.padding, tuple)):
            return channelwise_conv3d(input, weight, bias, self.stride, self.padding, self.dilation)
        return super()._conv_forward(input, weight, bias)
