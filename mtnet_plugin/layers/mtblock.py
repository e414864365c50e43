"""Multi-temporal block, MTBlock (Sec. III-B, Fig. 2) of A. Stergiou and R. Poppe, "Multi-Temporal
Convolutions for Human Action Recognition in Videos", IJCNN 2021: the bottleneck branch of an X3D residual
block (C. Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition", CVPR 2020,
arXiv:2004.04730) with its three convs replaced by MTConvs (spec #12) and SE/Swish replaced by Squeeze and
Recursion and ReLU (spec #14).

Shape legend: N batch, T frames, (H, W) input size, s spatial stride, H_s = ceil(H / s), W_s = ceil(W / s).
"""
import torch
from torch import nn

from .mtconv import MTConv
from .squeeze_recursion import SqueezeRecursion


class MTBlock(nn.Module):
    """Three MTConvs then SR; the residual add and the final ReLU belong to the caller (spec #15)::

                          x (N, dim_in, T, H, W)
                                    |
            conv_a: MTConv 1x1x1, dim_in -> dim_inner, ReLU
                                    |
            conv_b: MTConv (t_k, 3, 3), stride (1, s, s), padding (t_k // 2, 1, 1),
                    channelwise (groups = dim_inner) or dense, dim_inner -> dim_inner, ReLU
                                    |
            conv_c: MTConv 1x1x1, dim_inner -> dim_out, ReLU if last_act (spec #8)
                                    |
            sr:     SqueezeRecursion(dim_out): x * GRU(mean_HW(x)) (Eq. 8-11)
                                    |
                     (N, dim_out, T, H_s, W_s)   -> caller: + shortcut(x), then ReLU

    This is the ``branch`` of pytorchvideo's ``ResBlock``: a model builder wraps it with the shortcut exactly
    as it wraps X3D's bottleneck. The BatchNorms of conv_c (``bn_local``, and ``bn_lp``, ``bn_p`` when there
    is a P branch) carry ``transform_final_bn = True`` so a builder can zero-init them
    (``RESNET.ZERO_INIT_FINAL_BN``); then conv_c outputs 0, SR keeps 0 and the block starts as the identity.

    Args:
        dim_in: input channels.
        dim_inner: bottleneck width (X3D: dim_out * 2.25).
        dim_out: output channels.
        temporal_kernel: t_k of conv_b (X3D: 3).
        spatial_stride: s of conv_b (2 in each stage's first block, else 1).
        channelwise: conv_b channelwise as in X3D (True) or dense.
        delta, p_input, lp_kernel, pool, symmetric_pool, selection, norm_eps, norm_momentum: passed to every
            MTConv (see :class:`MTConv`).
        cell, sr_layers: SR's recurrent cell and depth (Table VIb, spec #16).
        last_act: ReLU at the end of conv_c (the text) or none (projection convention, spec #8).
    """

    def __init__(
        self,
        *,
        dim_in: int,
        dim_inner: int,
        dim_out: int,
        temporal_kernel: int = 3,
        spatial_stride: int = 1,
        channelwise: bool = True,
        delta: float = 0.875,
        p_input: str = "full",
        lp_kernel: str = "same",
        pool: str = "softpool",
        symmetric_pool: bool = False,
        selection: str = "lowest",
        cell: str = "gru",
        sr_layers: int = 2,
        last_act: bool = True,
        norm_eps: float = 1e-5,
        norm_momentum: float = 0.1,
    ):
        super().__init__()
        opts = dict(
            delta=delta,
            p_input=p_input,
            lp_kernel=lp_kernel,
            pool=pool,
            symmetric_pool=symmetric_pool,
            selection=selection,
            norm_eps=norm_eps,
            norm_momentum=norm_momentum,
        )
        self.conv_a = MTConv(dim_in, dim_inner, 1, **opts)
        self.conv_b = MTConv(
            dim_inner,
            dim_inner,
            (temporal_kernel, 3, 3),
            stride=(1, spatial_stride, spatial_stride),
            padding=(temporal_kernel // 2, 1, 1),
            groups=dim_inner if channelwise else 1,
            **opts,
        )
        self.conv_c = MTConv(dim_inner, dim_out, 1, activation=last_act, **opts)
        for name in ("bn_local", "bn_lp", "bn_p"):
            bn = getattr(self.conv_c, name, None)
            if bn is not None:
                bn.transform_final_bn = True
        self.sr = SqueezeRecursion(dim_out, cell=cell, num_layers=sr_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, dim_in, T, H, W). Returns the branch output (N, dim_out, T, H_s, W_s), without the residual."""
        return self.sr(self.conv_c(self.conv_b(self.conv_a(x))))
