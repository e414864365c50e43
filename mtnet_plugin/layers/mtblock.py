"""Multi-temporal block, MTBlock (Sec. III-B, Fig. 2) of A. Stergiou and R. Poppe, "Multi-Temporal
Convolutions for Human Action Recognition in Videos", IJCNN 2021: the bottleneck branch of an X3D residual
block (C. Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition", CVPR 2020,
arXiv:2004.04730) with its three convs replaced by MTConvs (spec #12) and SE/Swish replaced by Squeeze and
Recursion and ReLU (spec #14).

Shape legend: N batch, T frames, (H, W) input size, s spatial stride, H_s = ceil(H / s), W_s = ceil(W / s).
"""
from typing import Any, Dict, Optional

from torch import nn

from .bottleneck import bottleneck_parts
from .mtconv import MTConv
from .options import MTBlockOptions
from .squeeze_recursion import SqueezeRecursion


class MTBlock(nn.Sequential):
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

    The three convs are X3D's bottleneck geometry (``bottleneck.py``) filled with MTConvs, so a model builder
    wraps it with the shortcut exactly as it wraps X3D's bottleneck. A builder's zero-init
    (``RESNET.ZERO_INIT_FINAL_BN``) makes the branch output 0 so the block starts as the identity;
    ``options.zero_init`` says where (docs/spec-decisions.md, "Zero-initialised blocks"):

    - ``"sr"``: SR is marked ``transform_final = True`` and the builder calls
      :meth:`SqueezeRecursion.zero_init_output`: h == 0 exactly, and its zeroed weights still get a gradient;
    - ``"final_bn"``: the BatchNorms of conv_c (``bn_local``, and ``bn_lp``, ``bn_p`` with a P branch) carry
      ``transform_final_bn = True`` and get weight 0 (X3D's rule). With ``last_act`` a ReLU follows them,
      whose gradient at 0 is 0: nothing in the block would ever learn, so validation rejects that combination.

    Args:
        dim_in: input channels.
        dim_inner: bottleneck width (X3D: dim_out * 2.25).
        dim_out: output channels.
        temporal_kernel: t_k of conv_b (X3D: 3).
        spatial_stride: s of conv_b (2 in each stage's first block, else 1).
        channelwise: conv_b channelwise as in X3D (True) or dense.
        options: every MTConv's options plus cell, sr_layers and last_act
            (:class:`~mtnet_plugin.layers.options.MTBlockOptions`, where each is described and defaulted).
        overrides: fields of ``options`` replaced by name, e.g. ``MTBlock(..., delta=0.75, cell="lstm")``.
    """

    def __init__(self, *, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int = 3, spatial_stride: int = 1,
                 channelwise: bool = True, options: Optional[MTBlockOptions] = None, **overrides: Any):
        opts = MTBlockOptions.build(options, **overrides)

        def mtconv(name: str, activation: bool = True):
            def part(c_in: int, c_out: int, **geometry: Any) -> Dict[str, nn.Module]:
                return {name: MTConv(c_in, c_out, options=opts, activation=activation, **geometry)}

            return part

        parts = bottleneck_parts(dim_in=dim_in, dim_inner=dim_inner, dim_out=dim_out, temporal_kernel=temporal_kernel,
                                 spatial_stride=spatial_stride, channelwise=channelwise, conv_a=mtconv("conv_a"),
                                 conv_b=mtconv("conv_b"), conv_c=mtconv("conv_c", opts.last_act))
        parts["sr"] = SqueezeRecursion(dim_out, cell=opts.cell, num_layers=opts.sr_layers)
        super().__init__(parts)
        self.options = opts
        if opts.zero_init == "sr":
            self.sr.transform_final = True
        else:
            for name in ("bn_local", "bn_lp", "bn_p"):
                bn = getattr(self.conv_c, name, None)
                if bn is not None:
                    bn.transform_final_bn = True
