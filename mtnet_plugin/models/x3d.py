"""X3D as a builder that takes a block callable: the backbone of MTNet (Sec. III-C) and its baseline.

Paper:
    C. Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition", CVPR 2020,
    arXiv:2004.04730.

Geometry and parameter names follow PySlowFast's X3D (width rounding to multiples of 8, SE every other
block, Swish inside the block, channelwise 3x3x3 conv, shortcut conv + BN when the shape changes), so that
X3D-M with 400 classes has exactly 3,794,322 parameters and PySlowFast X3D checkpoints load by name
(``s1.pathway0_stem.*``, ``sK.pathway0_resJ.branch2.*``, ``head.*``). The head pools adaptively
(``heads.py``) and the network returns logits.

``pytorchvideo.models.x3d`` is not reused: its shortcut drops the BN when only the stride changes (res2's
first block), so its X3D-M has 48 fewer parameters than PySlowFast's, and its head pools with a fixed kernel.

Shape legend: N batch, T frames (never strided), H, W; res5 is (H / 32, W / 32) rounded up.
"""
import math
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Type, Union

import torch
from fvcore.nn.weight_init import c2_msra_fill
from torch import nn

from mtnet_plugin.layers import Conv3d
from mtnet_plugin.layers.bottleneck import bottleneck_parts

from .build import HEAD_REGISTRY, get_registered

# Blocks per stage before the depth factor, as in X3D Table 1 (res2..res5).
_BLOCK_BASIS = (1, 2, 5, 3)


def round_width(width: float, multiplier: float, min_width: int = 1, divisor: int = 1) -> int:
    """Scale a channel count and round it to a multiple of ``divisor`` (X3D Sec. 3; PySlowFast rounding).

    Never rounds down by more than 10%. A falsy ``multiplier`` returns ``width`` unchanged.
    """
    if not multiplier:
        return int(width)
    width *= multiplier
    min_width = min_width or divisor
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


def round_repeats(repeats: int, multiplier: float) -> int:
    """Blocks in a stage after the depth expansion (X3D's gamma_d), rounded up."""
    return int(math.ceil(multiplier * repeats)) if multiplier else repeats


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation on a 5-D tensor (X3D Sec. 3: SE after the 3x3x3 conv of every other block).

    Written here rather than taken from fvcore so that the parameter names (``fc1``, ``fc2``) match
    PySlowFast checkpoints.
    """

    def __init__(self, dim: int, ratio: float = 1.0 / 16):
        super().__init__()
        dim_fc = round_width(dim, ratio, min_width=8, divisor=8)
        self.avg_pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Conv3d(dim, dim_fc, 1, bias=True)
        self.fc1_act = nn.ReLU()
        self.fc2 = nn.Conv3d(dim_fc, dim, 1, bias=True)
        self.fc2_sig = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, T, H, W) -> same shape, scaled per channel."""
        w = self.fc2_sig(self.fc2(self.fc1_act(self.fc1(self.avg_pool(x)))))
        return x * w


def _conv_bn_act(name: str, act: Optional[Type[nn.Module]], *, norm: Dict[str, float], se_ratio: float = 0.0,
                 final: bool = False):
    """A bottleneck part (``layers/bottleneck.py``): ``<name>`` Conv3d, ``<name>_bn``, ``se`` when ``se_ratio``,
    ``<name>_relu`` when ``act``; ``final`` marks the BN ``transform_final_bn`` (zeroed by ZERO_INIT_FINAL_BN)."""

    def part(dim_in: int, dim_out: int, **geometry: Any) -> Dict[str, nn.Module]:
        parts = {name: Conv3d(dim_in, dim_out, bias=False, **geometry),
                 f"{name}_bn": nn.BatchNorm3d(dim_out, **norm)}
        if final:
            parts[f"{name}_bn"].transform_final_bn = True
        if se_ratio > 0:
            parts["se"] = SqueezeExcite(dim_out, se_ratio)
        if act is not None:
            parts[f"{name}_relu"] = act(inplace=True) if act is nn.ReLU else act()
        return parts

    return part


def create_x3d_block(*, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int = 3, spatial_stride: int = 1,
                     channelwise: bool = True, se_ratio: float = 0.0, swish_inner: bool = True, norm_eps: float = 1e-5,
                     norm_momentum: float = 0.1) -> nn.Module:
    """X3D bottleneck branch (X3D Fig. 2), without the shortcut: ``layers/bottleneck.py``'s geometry with
    Conv3d + BN + activation parts::

        a: 1x1x1 conv -> a_bn -> ReLU
        b: kt x 3 x 3 conv, stride (1, s, s), channelwise -> b_bn -> [SE] -> Swish
        c: 1x1x1 conv -> c_bn (transform_final_bn: zeroed when ZERO_INIT_FINAL_BN)

    Args:
        dim_in, dim_inner, dim_out: channel widths.
        temporal_kernel: kt of the 3x3x3 conv.
        spatial_stride: s, applied by conv b.
        channelwise: groups = dim_inner for conv b (X3D.CHANNELWISE_3x3x3).
        se_ratio: SE width ratio; 0 builds no SE (``x3d_parts`` passes X3D's 1/16 to blocks 0, 2, 4, ...).
        swish_inner: Swish (SiLU) after conv b, else ReLU.
        norm_eps, norm_momentum: BatchNorm3d settings.

    Returns:
        A module mapping (N, dim_in, T, H, W) to (N, dim_out, T, ceil(H/s), ceil(W/s)).
    """
    norm = dict(eps=norm_eps, momentum=norm_momentum)
    return nn.Sequential(bottleneck_parts(
        dim_in=dim_in, dim_inner=dim_inner, dim_out=dim_out, temporal_kernel=temporal_kernel,
        spatial_stride=spatial_stride, channelwise=channelwise,
        conv_a=_conv_bn_act("a", nn.ReLU, norm=norm),
        conv_b=_conv_bn_act("b", nn.SiLU if swish_inner else nn.ReLU, norm=norm, se_ratio=se_ratio),
        conv_c=_conv_bn_act("c", None, norm=norm, final=True),
    ))


class ResBlock(nn.Module):
    """``relu(shortcut(x) + branch2(x))``; the shortcut is 1x1x1 conv (stride (1, s, s)) + BN when
    ``dim_in != dim_out`` or ``s != 1``, else the identity (X3D / ResNet; spec #13, #15)."""

    def __init__(self, *, branch2: nn.Module, dim_in: int, dim_out: int, spatial_stride: int,
                 norm_eps: float = 1e-5, norm_momentum: float = 0.1):
        super().__init__()
        self.has_shortcut = dim_in != dim_out or spatial_stride != 1
        if self.has_shortcut:
            self.branch1 = nn.Conv3d(dim_in, dim_out, 1, stride=(1, spatial_stride, spatial_stride), bias=False)
            self.branch1_bn = nn.BatchNorm3d(dim_out, eps=norm_eps, momentum=norm_momentum)
        self.branch2 = branch2
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, dim_in, T, H, W) -> (N, dim_out, T, ceil(H/s), ceil(W/s))."""
        shortcut = self.branch1_bn(self.branch1(x)) if self.has_shortcut else x
        return self.relu(shortcut + self.branch2(x))


def create_x3d_stem(*, dim_in: int, dim_out: int, temporal_kernel: int = 5, norm_eps: float = 1e-5,
                    norm_momentum: float = 0.1) -> nn.Module:
    """X3D stem: 1x3x3 conv stride (1, 2, 2), then a channelwise kt x 1 x 1 conv, BN, ReLU; no max pool.

    Returns a module mapping (N, dim_in, T, H, W) to (N, dim_out, T, ceil(H/2), ceil(W/2)).
    """
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    layers["conv_xy"] = nn.Conv3d(dim_in, dim_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
    layers["conv"] = Conv3d(dim_out, dim_out, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0),
                        groups=dim_out, bias=False)
    layers["bn"] = nn.BatchNorm3d(dim_out, eps=norm_eps, momentum=norm_momentum)
    layers["relu"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


class VideoNet(nn.Module):
    """Stem ``s1``, stages ``s2``..``s5`` and a head, run in that explicit order.

    ``forward`` takes a tensor (N, C, T, H, W) or a list holding one (PySlowFast's pathway list) and
    returns logits (N, num_classes) in train and eval mode.
    """

    def __init__(self, *, stem: nn.Module, stages: Sequence[nn.Module], head: nn.Module):
        super().__init__()
        self.s1 = nn.Sequential(OrderedDict(pathway0_stem=stem))
        self.num_stages = len(stages)
        for i, stage in enumerate(stages):
            self.add_module(f"s{i + 2}", stage)
        self.head = head

    def forward(self, x: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
        """x: (N, C, T, H, W) or [(N, C, T, H, W)] -> logits (N, num_classes)."""
        return self.head(self.backbone(x))

    def backbone(self, x: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
        """x: (N, C, T, H, W) or [(N, C, T, H, W)] -> the last stage's map (N, C5, T, H / 32, W / 32)."""
        if isinstance(x, (list, tuple)):
            if len(x) != 1:
                raise ValueError(f"expected one pathway, got {len(x)} tensors")
            x = x[0]
        x = self.s1(x)
        for i in range(self.num_stages):
            x = getattr(self, f"s{i + 2}")(x)
        return x

    def forward_features(self, x: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
        """x as ``forward`` -> the clip embedding the classifier reads, (N, X3D.DIM_C5): the head's
        ``features`` (for ``X3DHead``: lin_5 after its ReLU, before dropout and the projection)."""
        features = getattr(self.head, "features", None)
        if features is None:
            raise NotImplementedError(f"{type(self.head).__name__} has no features(x); forward_features needs one")
        return features(self.backbone(x))


def init_weights(model: nn.Module, *, fc_init_std: float = 0.01, zero_init_final_bn: bool = True) -> None:
    """X3D's initialisation (PySlowFast ``init_weights``), applied in place.

    Conv3d: MSRA fill (kaiming normal, fan_out, ReLU gain; bias 0). BatchNorm: weight 1, bias 0, weight 0
    for a BN marked ``transform_final_bn`` when ``zero_init_final_bn``. Linear: normal(0, fc_init_std),
    bias 0. Modules marked ``keep_init = True`` (and everything under them) keep the initialisation
    their constructor gave them: MTNet marks its recurrent units so (see ``mtnet.py``). With
    ``zero_init_final_bn``, a module marked ``transform_final = True`` has its ``zero_init_output()`` called
    last (MTBlock's Squeeze and Recursion: the block's output starts at 0 where a gradient still flows).
    """
    skipped = set()
    for module in model.modules():
        if getattr(module, "keep_init", False):
            skipped.update(id(m) for m in module.modules())
    for module in model.modules():
        if id(module) in skipped:
            continue
        if isinstance(module, nn.Conv3d):
            c2_msra_fill(module)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            zero = zero_init_final_bn and getattr(module, "transform_final_bn", False)
            if module.weight is not None:
                nn.init.constant_(module.weight, 0.0 if zero else 1.0)
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=fc_init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    if zero_init_final_bn:
        for module in model.modules():
            if getattr(module, "transform_final", False):
                module.zero_init_output()


def x3d_parts(
    *,
    input_channel: int = 3,
    num_classes: int = 400,
    width_factor: float = 2.0,
    depth_factor: float = 2.2,
    bottleneck_factor: float = 2.25,
    dim_c1: int = 12,
    dim_c5: int = 2048,
    scale_res2: bool = False,
    channelwise: bool = True,
    bn_lin5: bool = False,
    dropout_rate: float = 0.5,
    head_act: str = "softmax",
    norm_eps: float = 1e-5,
    norm_momentum: float = 0.1,
    se_ratio: float = 1.0 / 16,
    block: Callable[..., nn.Module] = create_x3d_block,
    block_kwargs: Optional[Dict[str, Any]] = None,
    head: Union[str, Callable[..., nn.Module]] = "X3DHead",
) -> Dict[str, Any]:
    """Build the stem, stages and head of an X3D-shaped network (keyword arguments as ``create_x3d``).

    Returns:
        dict with ``stem``, ``stages`` (list of 4 modules) and ``head``, ready for ``VideoNet(**parts)``.
    """
    norm = dict(norm_eps=norm_eps, norm_momentum=norm_momentum)
    dim_stem = round_width(dim_c1, width_factor)
    stem = create_x3d_stem(dim_in=input_channel, dim_out=dim_stem, **norm)

    dim_base = round_width(dim_c1, 2.0, divisor=8) if scale_res2 else dim_c1
    stages, dim_in = [], dim_stem
    for stage_idx, blocks in enumerate(_BLOCK_BASIS):
        if stage_idx > 0:
            dim_base = round_width(dim_base, 2.0, divisor=8)
        dim_out = round_width(dim_base, width_factor)
        dim_inner = int(bottleneck_factor * dim_out)
        res = OrderedDict()
        for j in range(round_repeats(blocks, depth_factor)):
            stride = 2 if j == 0 else 1
            se = {"se_ratio": se_ratio} if se_ratio and j % 2 == 0 else {}  # SE on blocks 0, 2, 4, ...
            branch2 = block(dim_in=dim_in, dim_inner=dim_inner, dim_out=dim_out, temporal_kernel=3,
                            spatial_stride=stride, channelwise=channelwise, **norm, **se, **(block_kwargs or {}))
            res[f"pathway0_res{j}"] = ResBlock(branch2=branch2, dim_in=dim_in, dim_out=dim_out,
                                               spatial_stride=stride, **norm)
            dim_in = dim_out
        stages.append(nn.Sequential(res))

    head_fn = get_registered(HEAD_REGISTRY, head) if isinstance(head, str) else head
    head_module = head_fn(dim_in=dim_in, dim_inner=dim_inner, dim_out=dim_c5, num_classes=num_classes,
                          dropout_rate=dropout_rate, act=head_act, bn_lin5=bn_lin5, **norm)
    return {"stem": stem, "stages": stages, "head": head_module}


def create_x3d(*, fc_init_std: float = 0.01, zero_init_final_bn: bool = True, **kwargs: Any) -> VideoNet:
    """X3D (Feichtenhofer, CVPR 2020) with a pluggable residual branch.

    ::

        input (N, 3, T, H, W)
          s1: stem (1x3x3 stride 2 conv, 5x1x1 channelwise conv, BN, ReLU)      -> 24 x T x H/2
          s2..s5: stages of ResBlock(block(...)); first block strides 2 in space -> 24, 48, 96, 192 wide
          head: conv_5 1x1x1 + BN + ReLU, adaptive avg pool, lin_5 (+BN) + ReLU, dropout, linear
        logits (N, num_classes)

    Keyword-only. The head pools adaptively, so the network takes any clip length and crop size.

    Args:
        input_channel: C of the input (DATA.INPUT_CHANNEL_NUM[0]).
        num_classes: classifier width.
        width_factor: gamma_w (2.0 for X3D-S/M/L).
        depth_factor: gamma_d (2.2 for X3D-S/M, 5.0 for X3D-L).
        bottleneck_factor: inner width / stage width (2.25).
        dim_c1: base width of the stem (12); dim_c5: width of lin_5 (2048).
        scale_res2: double res2's width relative to dim_c1.
        channelwise: depthwise 3x3x3 conv inside the blocks.
        bn_lin5: BN after lin_5.
        dropout_rate: dropout before the classifier.
        head_act: activation the runtime should apply to the logits (``softmax`` | ``sigmoid`` | ``none``);
            stored on the head, never applied in ``forward``.
        norm_eps, norm_momentum: BatchNorm3d settings.
        se_ratio: SE width of blocks 0, 2, 4, ... of each stage (X3D: 1/16), passed to ``block`` for those
            blocks only; 0: never passed.
        block: callable returning the residual branch, called with ``dim_in, dim_inner, dim_out,
            temporal_kernel, spatial_stride, channelwise, norm_eps, norm_momentum``, ``se_ratio`` (above)
            and ``block_kwargs``; ``create_x3d_block`` (X3D) or ``create_mtblock`` (MTNet).
        block_kwargs: extra keyword arguments for ``block``.
        head: a name in ``HEAD_REGISTRY`` or a callable with the head contract (``build.py``).
        fc_init_std: std of the classifier's normal init (MODEL.FC_INIT_STD).
        zero_init_final_bn: zero the last BN of every residual branch (RESNET.ZERO_INIT_FINAL_BN).

    Returns:
        The network, initialised, in train mode.
    """
    model = VideoNet(**x3d_parts(**kwargs))
    init_weights(model, fc_init_std=fc_init_std, zero_init_final_bn=zero_init_final_bn)
    return model
