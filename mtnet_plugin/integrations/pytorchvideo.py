"""MTNet built by PyTorchVideo's own X3D builder: ``pytorchvideo.models.x3d.create_x3d`` with our MTBlock as its
``bottleneck`` (every X3D bottleneck's three convs become MTConvs, its SE and Swish become one Squeeze-and-Recursion
unit and ReLU; docs/spec-decisions.md). Works with pytorchvideo 0.1.5 (``pip install "mtnet_plugin[pytorchvideo]"``);
pytorchvideo is imported when a builder is called, never by ``import mtnet_plugin``.

::

    from mtnet_plugin.integrations.pytorchvideo import create_mtnet_pytorchvideo
    model = create_mtnet_pytorchvideo(input_clip_length=16, input_crop_size=224, model_num_class=400)

The result is pytorchvideo's ``Net`` (stem, ``ResStage`` s, ``ResNetBasicHead``), so its module names are
pytorchvideo's (``blocks.1.res_blocks.0.branch2.conv_a...``), not PySlowFast's. Against our ``create_mtnet`` /
``preset("MTNet_S")`` of the same width, depth and MTNet options it has, by default, the same parameters and
the same FLOPs (``tests/test_integrations_pytorchvideo.py``), with two differences of PyTorchVideo's X3D, both
documented in docs/ecosystem.md:

- Shortcut BN: pytorchvideo 0.1.5 gives a shortcut that only strides (res2's first block: 24 -> 24 channels,
  stride 2) a conv but no BatchNorm; PySlowFast's X3D, ours and the MTNet paper's code have both. With
  ``pyslowfast_shortcut=True`` (the default) the builder adds that BatchNorm to pytorchvideo's ``ResBlock``
  (its ``branch1_norm`` slot), so the networks match; ``False`` keeps pytorchvideo's (48 parameters fewer).
- Head: pytorchvideo's X3D head pools with a fixed ``AvgPool3d`` sized for ``input_clip_length`` x
  ``input_crop_size`` (stride 1) and averages the per-position logits; ours pools adaptively. At that input size
  both pool the whole map and give the same function; at another size pytorchvideo's slides (and needs the
  clip to be at least that large). The head returns logits (``head_activation=None``) unless asked otherwise.

Initialisation: after ``create_x3d`` the network is initialised as our MTNet (``mtnet_plugin.models.init_weights``:
MSRA convs, BN 1/0, the last BN of each block zeroed, the recurrent units kept as their constructor made them).
"""
import dataclasses
import functools
from typing import Any, Callable, Sequence

from torch import nn

from mtnet_plugin.layers import MTBlockOptions
from mtnet_plugin.models import create_mtblock, init_weights

# MTNet options create_mtnet_pytorchvideo takes by name (layers/options.py); BatchNorm's come from create_x3d's.
OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(MTBlockOptions)) - {"norm_eps", "norm_momentum"}

INSTALL_HINT = 'pip install "mtnet_plugin[pytorchvideo]"  (pytorchvideo>=0.1.5)'


def _pytorchvideo_x3d():
    try:
        from pytorchvideo.models import x3d
    except ImportError as err:
        raise ImportError(f"the PyTorchVideo builder needs pytorchvideo ({err}); {INSTALL_HINT}") from err
    return x3d


def create_mtblock_bottleneck(
    *,
    dim_in: int,
    dim_inner: int,
    dim_out: int,
    conv_kernel_size: Sequence[int] = (3, 3, 3),
    conv_stride: Sequence[int] = (1, 2, 2),
    norm: Callable = nn.BatchNorm3d,
    norm_eps: float = 1e-5,
    norm_momentum: float = 0.1,
    se_ratio: float = 0.0625,
    activation: Callable = nn.ReLU,
    inner_act: Any = None,
    **mtnet_options: Any,
) -> nn.Module:
    """MTBlock with the signature of ``pytorchvideo.models.x3d.create_x3d_bottleneck_block``.

    ``conv_kernel_size`` is conv_b's (kt, 3, 3) and ``conv_stride`` its (1, s, s); conv_b is channelwise as in
    X3D. ``se_ratio``, ``activation`` and ``inner_act`` are accepted and unused: MTBlock has Squeeze-and-Recursion
    in every block instead of SE in every other one, and ReLU inside instead of Swish. ``mtnet_options`` are
    fields of :class:`~mtnet_plugin.layers.MTBlockOptions` (``delta``, ``cell``, ...) or ``options=`` one.

    Raises:
        ValueError: a norm other than ``nn.BatchNorm3d``, a temporal stride, or a spatial kernel other than 3.
    """
    del se_ratio, activation, inner_act
    if norm is not nn.BatchNorm3d:
        raise ValueError(f"MTBlock normalises with nn.BatchNorm3d; got norm={norm!r}")
    kt, kh, kw = (int(k) for k in conv_kernel_size)
    st, sh, sw = (int(s) for s in conv_stride)
    if (kh, kw) != (3, 3) or st != 1 or sh != sw:
        raise ValueError(f"MTBlock's conv_b is (kt, 3, 3) with stride (1, s, s); got kernel {tuple(conv_kernel_size)}"
                         f", stride {tuple(conv_stride)}")
    return create_mtblock(dim_in=dim_in, dim_inner=dim_inner, dim_out=dim_out, temporal_kernel=kt, spatial_stride=sh,
                          channelwise=True, norm_eps=norm_eps, norm_momentum=norm_momentum, **mtnet_options)


def _add_shortcut_norms(model: nn.Module, norm_eps: float, norm_momentum: float) -> int:
    """Give every pytorchvideo ResBlock whose shortcut has a conv but no norm a BatchNorm3d; returns how many."""
    from pytorchvideo.models.resnet import ResBlock

    added = 0
    for module in model.modules():
        if isinstance(module, ResBlock) and module.branch1_conv is not None and module.branch1_norm is None:
            module.branch1_norm = nn.BatchNorm3d(module.branch1_conv.out_channels, eps=norm_eps,
                                                 momentum=norm_momentum)
            added += 1
    return added


def create_mtnet_pytorchvideo(
    *,
    input_clip_length: int = 13,
    input_crop_size: int = 160,
    model_num_class: int = 400,
    pyslowfast_shortcut: bool = True,
    fc_init_std: float = 0.01,
    zero_init_final_bn: bool = True,
    head_activation: Any = None,
    **kwargs: Any,
) -> nn.Module:
    """MTNet through ``pytorchvideo.models.x3d.create_x3d(..., bottleneck=create_mtblock_bottleneck)``.

    Args:
        input_clip_length, input_crop_size, model_num_class: as ``create_x3d`` (X3D-S: 13, 160; X3D-M: 16, 224;
            X3D-L: 16, 312 with ``depth_factor=5.0``); the head's pooling is sized for them.
        pyslowfast_shortcut: add the shortcut BN pytorchvideo omits where only the stride changes (module
            docstring); True matches our MTNet and PySlowFast's X3D parameter for parameter.
        fc_init_std, zero_init_final_bn: initialisation, as ``mtnet_plugin.models.create_mtnet``.
        head_activation: pytorchvideo's head activation; None returns logits (the runtime's contract).
        kwargs: other ``create_x3d`` arguments (``width_factor``, ``depth_factor``, ``dropout_rate``,
            ``norm_eps``, ``norm_momentum``, ``head_bn_lin5_on``, ...) and MTNet options: ``options`` (an
            :class:`~mtnet_plugin.layers.MTBlockOptions`) and/or its fields by name (``delta``, ``p_input``,
            ``cell``, ...; layers/options.py).

    Returns:
        pytorchvideo's ``Net``, initialised, in train mode; ``forward`` maps (N, 3, T, H, W) to (N, classes).

    Raises:
        ImportError: pytorchvideo is not installed (the message says how to install it).
    """
    x3d = _pytorchvideo_x3d()
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in OPTION_NAMES or k == "options"}
    if "bottleneck" in kwargs:
        raise TypeError("create_mtnet_pytorchvideo sets bottleneck itself; call pytorchvideo's create_x3d directly")
    model = x3d.create_x3d(input_clip_length=input_clip_length, input_crop_size=input_crop_size,
                           model_num_class=model_num_class, head_activation=head_activation,
                           bottleneck=functools.partial(create_mtblock_bottleneck, **options), **kwargs)
    if pyslowfast_shortcut:
        _add_shortcut_norms(model, kwargs.get("norm_eps", 1e-5), kwargs.get("norm_momentum", 0.1))
    init_weights(model, fc_init_std=fc_init_std, zero_init_final_bn=zero_init_final_bn)
    return model.train()
