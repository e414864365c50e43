"""MTNet (Sec. III-C) of A. Stergiou and R. Poppe, "Multi-Temporal Convolutions for Human Action Recognition
in Videos", IJCNN 2021: X3D with every residual branch replaced by an MTBlock (three MTConvs + Squeeze and
Recursion). Stem, shortcut convs and head stay as X3D has them (spec #13); SE and Swish go (spec #14).

Initialisation is X3D's (``x3d.init_weights``: MSRA conv fill, BN 1/0, the block's final BN zeroed when
ZERO_INIT_FINAL_BN) except for the recurrent unit of SR, which keeps the initialisation its constructor
gives it (``keep_init``; torch's default for ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN``: uniform(-1/sqrt(H),
1/sqrt(H)) for weights and biases), so that every cell of Table VIb starts as its own library defines it
instead of the classifier's normal(0, 0.01).
"""
import dataclasses
from typing import Any, Dict, Optional

from torch import nn

from mtnet_plugin.layers import MTBlock, MTBlockOptions, SqueezeRecursion

from .x3d import VideoNet, init_weights, x3d_parts


def create_mtblock(**kwargs: Any) -> nn.Module:
    """MTBlock as the residual branch of an X3D block (Sec. III-B, Fig. 2): ``MTBlock(**kwargs)`` (the
    arguments ``x3d_parts`` gives every block, plus ``options``), with its recurrent units marked
    ``keep_init`` (module docstring).

    Returns:
        MTBlock mapping (N, dim_in, T, H, W) to (N, dim_out, T, ceil(H/s), ceil(W/s)), without the shortcut.
    """
    block = MTBlock(**kwargs)
    for module in block.modules():
        if isinstance(module, SqueezeRecursion):
            module.keep_init = True
    return block


def mtnet_parts(*, options: Optional[MTBlockOptions] = None, **kwargs: Any) -> Dict[str, Any]:
    """``x3d_parts`` with every residual branch an MTBlock and no SE (spec #14).

    Args:
        options: the MTBlocks' options (default: their defaults); its BatchNorm settings are replaced by
            ``norm_eps`` / ``norm_momentum``, which hold for the whole network.
        kwargs: ``x3d_parts`` arguments except ``block``, ``block_kwargs`` and ``se_ratio``, plus fields of
            :class:`~mtnet_plugin.layers.MTBlockOptions` by name (they replace those of ``options``).

    Raises:
        TypeError: a keyword that is neither (the message lists the options).
    """
    for reserved in ("block", "block_kwargs", "se_ratio"):
        if reserved in kwargs:
            raise TypeError(f"MTNet sets {reserved} itself; use create_x3d for another block")
    names = {f.name for f in dataclasses.fields(MTBlockOptions)} - {"norm_eps", "norm_momentum"}
    overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
    options = MTBlockOptions.build(options, **overrides)
    return x3d_parts(block=create_mtblock, block_kwargs={"options": options}, se_ratio=0.0, **kwargs)


def create_mtnet(*, fc_init_std: float = 0.01, zero_init_final_bn: bool = True, **kwargs: Any) -> VideoNet:
    """MTNet (Stergiou & Poppe, IJCNN 2021): ``create_x3d`` with an MTBlock as every residual branch.

    Keyword-only. Takes every ``create_x3d`` argument (num_classes, width_factor, depth_factor,
    bottleneck_factor, dim_c1, dim_c5, channelwise, bn_lin5, dropout_rate, head_act, norm_eps, norm_momentum,
    head, fc_init_std, zero_init_final_bn) except ``block``, ``block_kwargs`` and ``se_ratio``, plus the MTNet
    options: ``options`` (a :class:`~mtnet_plugin.layers.MTBlockOptions`) and/or its fields by name
    (``delta``, ``p_input``, ``lp_kernel``, ``pool``, ``symmetric_pool``, ``selection``, ``cell``,
    ``sr_layers``, ``last_act``; described and defaulted in ``layers/options.py``).

    Returns:
        The network, initialised (module docstring), in train mode; forward returns logits.
    """
    model = VideoNet(**mtnet_parts(**kwargs))
    init_weights(model, fc_init_std=fc_init_std, zero_init_final_bn=zero_init_final_bn)
    return model
