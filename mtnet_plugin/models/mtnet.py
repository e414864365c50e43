"""MTNet (Sec. III-C) of A. Stergiou and R. Poppe, "Multi-Temporal Convolutions for Human Action Recognition
in Videos", IJCNN 2021: X3D with every residual branch replaced by an MTBlock (three MTConvs + Squeeze and
Recursion). Stem, shortcut convs and head stay as X3D has them (spec #13); SE and Swish go (spec #14).

Initialisation is X3D's (``x3d.init_weights``: MSRA conv fill, BN 1/0, the block's final BN zeroed when
ZERO_INIT_FINAL_BN) except for the recurrent unit of SR, which keeps the initialisation its constructor
gives it (``keep_init``; torch's default for ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN``: uniform(-1/sqrt(H),
1/sqrt(H)) for weights and biases), so that every cell of Table VIb starts as its own library defines it
instead of the classifier's normal(0, 0.01).
"""
from typing import Any, Dict

from torch import nn

from mtnet_plugin.layers import MTBlock, SqueezeRecursion

from .build import MODEL_REGISTRY
from .x3d import VideoNet, create_x3d, init_weights, x3d_args_from_config, x3d_parts

# MTNet's options with the paper-text defaults (names as MTBlock's keyword arguments).
MTNET_DEFAULTS: Dict[str, Any] = dict(
    delta=0.875,  # Eq. 1
    p_input="full",  # spec #7
    lp_kernel="same",  # spec #10
    pool="softpool",  # Eq. 5 / Table VIc
    symmetric_pool=False,  # Table VIc
    selection="lowest",  # Eq. 6-7, spec #1
    cell="gru",  # Sec. III-B, Table VIb
    sr_layers=2,  # spec #16
    last_act=True,  # spec #8
)


def create_mtblock(
    *,
    dim_in: int,
    dim_inner: int,
    dim_out: int,
    temporal_kernel: int = 3,
    spatial_stride: int = 1,
    block_idx: int = 0,
    channelwise: bool = True,
    norm_eps: float = 1e-5,
    norm_momentum: float = 0.1,
    **mtnet_options: Any,
) -> nn.Module:
    """MTBlock as the residual branch of an X3D block (Sec. III-B, Fig. 2; same contract as
    ``x3d.create_x3d_block``). The recurrent units are marked ``keep_init`` (module docstring).

    Args:
        dim_in, dim_inner, dim_out, temporal_kernel, spatial_stride, channelwise, norm_eps, norm_momentum:
            as ``create_x3d_block``.
        block_idx: unused (MTNet has no SE to alternate; spec #14).
        mtnet_options: ``MTNET_DEFAULTS``' keys.

    Returns:
        MTBlock mapping (N, dim_in, T, H, W) to (N, dim_out, T, ceil(H/s), ceil(W/s)), without the shortcut.
    """
    del block_idx
    unknown = set(mtnet_options) - set(MTNET_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown MTNet options {sorted(unknown)}; valid: {sorted(MTNET_DEFAULTS)}")
    options = {**MTNET_DEFAULTS, **mtnet_options}
    block = MTBlock(dim_in=dim_in, dim_inner=dim_inner, dim_out=dim_out, temporal_kernel=temporal_kernel,
                    spatial_stride=spatial_stride, channelwise=channelwise, norm_eps=norm_eps,
                    norm_momentum=norm_momentum, **options)
    for module in block.modules():
        if isinstance(module, SqueezeRecursion):
            module.keep_init = True
    return block


def _split_options(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Move MTNet options out of ``kwargs`` into ``block``/``block_kwargs`` for ``x3d_parts``."""
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in MTNET_DEFAULTS}
    kwargs["block"] = create_mtblock
    kwargs["block_kwargs"] = {**MTNET_DEFAULTS, **options}
    return kwargs


def create_mtnet(**kwargs: Any) -> VideoNet:
    """MTNet (Stergiou & Poppe, IJCNN 2021): ``create_x3d`` with ``block=create_mtblock``.

    Keyword-only. Takes every ``create_x3d`` argument (input_clip_length, input_crop_size, num_classes,
    width_factor, depth_factor, bottleneck_factor, dim_c1, dim_c5, channelwise, bn_lin5, dropout_rate,
    head_act, norm_eps, norm_momentum, head, fc_init_std, zero_init_final_bn) except ``block`` and
    ``block_kwargs``, plus the MTNet options:

    Args:
        delta: local share of every MTConv's output channels, (0, 1] (Eq. 1; 7/8).
        p_input: what P reads, ``full`` | ``split`` (spec #7).
        lp_kernel: kernel of w_LP, ``same`` | ``1x1x1`` (spec #10).
        pool: P-branch pooling, ``softpool`` | ``avg`` | ``max`` | ``stochastic`` (Eq. 5, Table VIc).
        symmetric_pool: pool T with H and W instead of selecting frames (Table VIc).
        selection: ``lowest`` | ``highest`` | ``none`` (Eq. 6-7, spec #1).
        cell: recurrent cell of SR, ``gru`` | ``lstm`` | ``lstm_peephole`` | ``rnn`` (Table VIb).
        sr_layers: recurrent layers in SR, 1 or 2 (spec #16).
        last_act: activation after the block's last MTConv (spec #8).

    Returns:
        The network, initialised (module docstring), in train mode; forward returns logits.
    """
    if "block" in kwargs or "block_kwargs" in kwargs:
        raise TypeError("create_mtnet sets block/block_kwargs itself; use create_x3d for another block")
    return create_x3d(**_split_options(dict(kwargs)))


def mtnet_args_from_config(cfg: Any) -> Dict[str, Any]:
    """PySlowFast keys + the MTNET node -> ``create_mtnet`` arguments (docs/design.md "Model contract")."""
    args = x3d_args_from_config(cfg)
    node = cfg.MTNET
    args.update(
        delta=float(node.DELTA),
        p_input=str(node.P_INPUT),
        lp_kernel=str(node.LP_KERNEL),
        pool=str(node.POOL),
        symmetric_pool=bool(node.SYMMETRIC_POOL),
        selection=str(node.SELECTION),
        cell=str(node.CELL),
        sr_layers=int(node.SR_LAYERS),
        last_act=bool(node.LAST_MTCONV_ACT),
    )
    return args


@MODEL_REGISTRY.register()
class MTNet(VideoNet):
    """MTNet built from a PySlowFast config with the MTNET node: ``MTNet(cfg)``."""

    def __init__(self, cfg: Any):
        args = self.from_config(cfg)
        init = {k: args.pop(k) for k in ("fc_init_std", "zero_init_final_bn")}
        super().__init__(**x3d_parts(**_split_options(args)))
        init_weights(self, **init)

    @classmethod
    def from_config(cls, cfg: Any) -> Dict[str, Any]:
        """cfg -> ``create_mtnet`` keyword arguments."""
        return mtnet_args_from_config(cfg)
