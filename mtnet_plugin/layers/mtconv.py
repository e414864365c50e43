"""Multi-temporal convolution, MTConv (Eq. 1-4, Sec. III-A) of A. Stergiou and R. Poppe, "Multi-Temporal
Convolutions for Human Action Recognition in Videos", IJCNN 2021. A drop-in replacement for one
Conv3d + BN + ReLU.

Shape legend: N batch; C_in input channels; C~ = out_channels = C_L + C_P (Eq. 1); (T, H, W) the output
size of the local conv; T' = floor(T / 2) (or T when T <= 2); H' = ceil(H / 2), W' = ceil(W / 2).
"""
import math
from typing import Any, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn.modules.utils import _triple

from mtnet_plugin.ops import inference_into_applies, norm_act_into

from .conv import Conv3d
from .options import LP_KERNELS, P_INPUTS, MTConvOptions, check_delta  # noqa: F401  (P_INPUTS, LP_KERNELS: API)
from .prolonged import ProlongedDownsample, TrilinearResize

IntOr3 = Union[int, Tuple[int, int, int]]


def split_channels(channels: int, delta: float) -> Tuple[int, int]:
    """Eq. 1: ``C_L = floor(delta * C)``, ``C_P = C - C_L`` (a 1e-9 slack absorbs float error, e.g. 0.29*100).

    Raises:
        ValueError: delta outside (0, 1].
    """
    check_delta(delta)
    local = min(channels, math.floor(delta * channels + 1e-9))
    return local, channels - local


class MTConv(nn.Module):
    """Local branch L plus prolonged branch P, concatenated (Eq. 1-4)::

                                a_in (N, C_in, T_in, H_in, W_in)
                  .-------------------------+--------------------------------.
                  |  L reads all C_in ("full", "split")                      |  P reads all C_in ("full"),
                  |  or the first floor(delta*C_in) ("split_io")             |  the rest ("split", "split_io")
          conv_local k,s -> bn_local -> act                                  |
                  |                                                          |
          a_L (N, C_L, T, H, W) -----------.                                 |
                  |                        v                                 v
                  |        downsample: pool 2x2 per frame (SoftPool, Eq. 5) both inputs; frame
                  |        indices from pooled a_in (Eq. 6-7, spec #5) applied to both
                  |                        |                                 |
                  |         conv_lp k,1 -> bn_lp -> act        conv_p k,s -> bn_p -> act
                  |                        '---------------(+)---------------'
                  |                                         |  (N, C_P, T', H', W')
                  |                              upsample: trilinear to (T, H, W)
                  '--------------------- concat ---------- a_P
                                           |
                                  (N, C~ = C_L + C_P, T, H, W)

    ``delta = 1`` (or a width where C_P = 0) builds no P branch: the module is exactly Conv3d(bias=False) +
    BatchNorm3d + ReLU with the same parameters (Table VIa's baseline). A width where C_L = 0 is an error.

    Channelwise (``groups == in_channels == out_channels``, X3D's 3x3x3 conv; spec #11): L is channelwise
    over the first C_L input channels, z_P channelwise over the last C_P input channels (so ``p_input`` has
    no effect) and w_LP is a pointwise 1x1x1 conv C_L -> C_P (so ``lp_kernel`` has no effect). Other
    ``groups`` values are accepted only without a P branch.

    Strides (spec #9): conv_p carries the stride and padding of L and reads the pooled pre-stride input;
    conv_lp has stride 1 and padding k // 2, so it keeps the size of the pooled a_L. With "same"-padded
    kernels (X3D's) both give the same (T', H', W'); for other kernel/padding combinations g(z_P) is
    resized trilinearly to g(z_LP)'s size before the sum. conv_p sees half-size inputs, so an unpadded
    kernel needs an input about twice its size.

    Under autocast SoftPool and the cosine scores run in fp32 (spec #19; done by the ops).

    Args:
        in_channels: C_in.
        out_channels: C~.
        kernel_size, stride, padding: as for ``nn.Conv3d``; they apply to conv_local and conv_p.
        groups: 1 (dense) or in_channels == out_channels (channelwise).
        options: delta, p_input, lp_kernel, pool, symmetric_pool, selection and the BatchNorm settings
            (:class:`~mtnet_plugin.layers.options.MTConvOptions`, where each is described and defaulted).
            "stochastic" pooling samples with torch's global RNG in training mode and takes the expectation in
            eval mode.
        activation: apply ReLU to z_L, z_LP and z_P (Eq. 3); False makes the whole module linear after its BNs
            (the projection convention for a block's last conv; spec #8).
        overrides: fields of ``options`` replaced by name, e.g. ``MTConv(4, 8, 3, delta=0.5)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOr3, stride: IntOr3 = 1,
                 padding: IntOr3 = 0, groups: int = 1, options: Optional[MTConvOptions] = None, *,
                 activation: bool = True, **overrides: Any):
        super().__init__()
        opts = MTConvOptions.build(options, **overrides)
        self.options = opts
        delta, p_input, lp_kernel = opts.delta, opts.p_input, opts.lp_kernel
        c_local, c_prolonged = split_channels(out_channels, delta)
        if c_local == 0:
            raise ValueError(
                f"delta={delta} leaves no local channels in a {out_channels}-channel MTConv (floor(delta * C) = 0)"
            )
        kernel_size, stride, padding = _triple(kernel_size), _triple(stride), _triple(padding)
        self.in_channels, self.out_channels, self.delta, self.p_input = in_channels, out_channels, delta, p_input
        self.local_channels, self.prolonged_channels = c_local, c_prolonged
        self.has_prolonged = c_prolonged > 0
        self.channelwise = groups > 1 and groups == in_channels == out_channels
        if self.has_prolonged and groups != 1 and not self.channelwise:
            raise ValueError(
                f"MTConv supports groups=1 or channelwise (groups == in == out channels); got groups={groups} "
                f"for {in_channels}->{out_channels} with delta={delta}"
            )
        norm = dict(eps=opts.norm_eps, momentum=opts.norm_momentum)
        conv = dict(kernel_size=kernel_size, stride=stride, padding=padding, bias=False)
        if not self.has_prolonged:  # delta = 1: a plain conv block
            self.p_in_channels = 0
            self.conv_local = Conv3d(in_channels, out_channels, groups=groups, **conv)
            self.bn_local = nn.BatchNorm3d(out_channels, **norm)
            self.act = nn.ReLU(inplace=True) if activation else nn.Identity()
            return
        if self.channelwise:  # spec #11
            self.p_in_channels = c_prolonged
            self.conv_local = Conv3d(c_local, c_local, groups=c_local, **conv)
            self.conv_p = Conv3d(c_prolonged, c_prolonged, groups=c_prolonged, **conv)
            self.conv_lp = nn.Conv3d(c_local, c_prolonged, kernel_size=1, bias=False)
        else:
            self.p_in_channels = in_channels if p_input == "full" else split_channels(in_channels, delta)[1]
            local_in = in_channels
            if p_input == "split_io":  # L reads the first floor(delta * C_in) input channels, P the rest
                local_in = in_channels - self.p_in_channels
                if local_in == 0 or self.p_in_channels == 0:
                    raise ValueError(
                        f"p_input='split_io' with delta={delta} leaves {local_in} input channels to L and "
                        f"{self.p_in_channels} to P in a {in_channels}-channel input; each needs at least one"
                    )
            self.conv_local = nn.Conv3d(local_in, c_local, **conv)
            self.conv_p = nn.Conv3d(self.p_in_channels, c_prolonged, **conv)
            if lp_kernel == "same":
                lp_padding = tuple(k // 2 for k in kernel_size)  # keeps the pooled a_L's size
                self.conv_lp = nn.Conv3d(c_local, c_prolonged, kernel_size, padding=lp_padding, bias=False)
            else:
                self.conv_lp = nn.Conv3d(c_local, c_prolonged, kernel_size=1, bias=False)
        self.bn_local = nn.BatchNorm3d(c_local, **norm)
        self.bn_lp = nn.BatchNorm3d(c_prolonged, **norm)
        self.bn_p = nn.BatchNorm3d(c_prolonged, **norm)
        # In place: BN's backward reads its input, not its output, so the ReLU may overwrite the BN output.
        self.act = nn.ReLU(inplace=True) if activation else nn.Identity()
        self.downsample = ProlongedDownsample(pool=opts.pool, symmetric=opts.symmetric_pool, selection=opts.selection)
        self.upsample = TrilinearResize()
        self.resize_p = TrilinearResize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C_in, T_in, H_in, W_in). Returns (N, C~, T, H, W), the size a plain Conv3d would give."""
        if not self.has_prolonged:
            return self.act(self.bn_local(self.conv_local(x)))
        x_local, x_p = self._split(x)
        z_local = self.conv_local(x_local)
        if self._fused_eval(z_local):
            return self._forward_into(z_local, x_p)
        a_local = self.act(self.bn_local(z_local))  # a_L = g(z_L)
        a_prolonged = self._prolonged(x_p, a_local)
        return torch.cat([a_local, a_prolonged.to(a_local.dtype)], dim=1)  # Eq. 2

    def _split(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(input of L, input of P)."""
        if self.channelwise:  # one split: its backward is one cat, not two zero-filled slices
            return tuple(torch.split(x, [self.local_channels, self.p_in_channels], dim=1))
        if self.p_input == "split_io":  # L the first share, P the rest: one split, as the channelwise case
            return tuple(torch.split(x, [self.in_channels - self.p_in_channels, self.p_in_channels], dim=1))
        # P reads the last p_in_channels ("split") or all of them ("full": no slice to undo in backward)
        return x, (x if self.p_in_channels == self.in_channels else x[:, self.in_channels - self.p_in_channels :])

    def _prolonged(self, x_p: torch.Tensor, a_local: torch.Tensor, out: Optional[torch.Tensor] = None):
        """a_P = I(g(z_LP) + g(z_P)) (Eq. 3-4), written into ``out`` when given."""
        p_in, p_local = self.downsample(x_p, a_local)  # T(SoftPool(.)), Eq. 4
        g_lp = self.act(self.bn_lp(self.conv_lp(p_local)))
        g_p = self.act(self.bn_p(self.conv_p(p_in)))
        g_p = self.resize_p(g_p, g_lp.shape[2:])  # identity for "same"-padded kernels
        return self.upsample(g_lp + g_p, a_local.shape[2:], out=out)  # Eq. 3

    def _fused_eval(self, z: torch.Tensor) -> bool:
        """Whether the eval path without a concatenation applies: inference (eval mode, no autograd) where the
        ops say writing into slots pays (``ops.inference_into_applies``), BN with running statistics, ReLU or
        no activation."""
        bn = self.bn_local
        return (
            not self.training
            and not torch.is_grad_enabled()
            and bn.running_mean is not None
            and isinstance(self.act, (nn.ReLU, nn.Identity))
            and inference_into_applies(z)
        )

    def _forward_into(self, z_local: torch.Tensor, x_p: torch.Tensor) -> torch.Tensor:
        """Eq. 2-4 in inference without torch.cat: g(BN(z_L)) is written by one fused pass straight into the
        first C_L channels of the output and I(.) of Eq. 3 into the last C_P (the same values as the cat path
        up to float rounding; tests compare them). Saves a copy of the whole output and BN's own output."""
        n, _, t, h, w = (int(s) for s in z_local.shape)
        out = torch.empty((n, self.out_channels, t, h, w), dtype=z_local.dtype)
        a_local = out[:, : self.local_channels]
        bn = self.bn_local
        norm_act_into(z_local, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps, a_local,
                      relu=isinstance(self.act, nn.ReLU))
        self._prolonged(x_p, a_local, out=out[:, self.local_channels :])
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}->{self.out_channels}, delta={self.delta}, C_L={self.local_channels}, "
            f"C_P={self.prolonged_channels}, channelwise={self.channelwise}, p_in_channels={self.p_in_channels}"
        )
