"""The one adapter from a PySlowFast-schema cfg to the builders, and the registered models ``X3D`` and ``MTNet``.

The builders (``x3d.py``, ``mtnet.py``) take plain keyword arguments and never read a cfg;
:func:`args_from_config` is the only place that does (docs/design.md "From YAML to a layer")::

    build_model(cfg)  ->  MTNet(cfg)  ->  args_from_config(cfg, mtnet=True)      (this file)
                      ->  mtnet_parts(options=MTBlockOptions.from_node(cfg.MTNET), **x3d args)  (mtnet.py)
                      ->  x3d_parts -> create_mtblock -> MTBlock -> MTConv(options)  (x3d.py, mtnet.py, layers)
"""
from typing import Any, Dict

from mtnet_plugin.layers import MTBlockOptions

from .build import MODEL_REGISTRY
from .mtnet import mtnet_parts
from .x3d import VideoNet, init_weights, x3d_parts

INIT_ARGS = ("fc_init_std", "zero_init_final_bn")


def args_from_config(cfg: Any, *, mtnet: bool) -> Dict[str, Any]:
    """cfg -> ``create_x3d`` (or, with ``mtnet``, ``create_mtnet``) keyword arguments (docs/design.md
    "Model contract" lists the keys). MTNet's options are read from the ``MTNET`` node by
    :meth:`MTBlockOptions.from_node`, field by field."""
    node = getattr(cfg, "MTNET", None)
    args = dict(
        input_channel=int(cfg.DATA.INPUT_CHANNEL_NUM[0]),
        num_classes=int(cfg.MODEL.NUM_CLASSES),
        width_factor=float(cfg.X3D.WIDTH_FACTOR),
        depth_factor=float(cfg.X3D.DEPTH_FACTOR),
        bottleneck_factor=float(cfg.X3D.BOTTLENECK_FACTOR),
        dim_c1=int(cfg.X3D.DIM_C1),
        dim_c5=int(cfg.X3D.DIM_C5),
        scale_res2=bool(cfg.X3D.SCALE_RES2),
        channelwise=bool(cfg.X3D.CHANNELWISE_3x3x3),
        bn_lin5=bool(cfg.X3D.BN_LIN5),
        dropout_rate=float(cfg.MODEL.DROPOUT_RATE),
        head_act=str(cfg.MODEL.HEAD_ACT),
        norm_eps=float(cfg.BN.EPSILON),
        norm_momentum=float(cfg.BN.MOMENTUM),
        head=str(node.get("HEAD", "X3DHead")) if node is not None else "X3DHead",
        fc_init_std=float(cfg.MODEL.FC_INIT_STD),
        zero_init_final_bn=bool(cfg.RESNET.ZERO_INIT_FINAL_BN),
    )
    if mtnet:
        args["options"] = MTBlockOptions.from_node(node if node is not None else {})
    return args


class _FromConfig(VideoNet):
    """A network built from a cfg: ``cls(cfg)``; subclasses say which builder."""

    mtnet = False

    def __init__(self, cfg: Any):
        args = self.from_config(cfg)
        init = {k: args.pop(k) for k in INIT_ARGS}
        super().__init__(**(mtnet_parts if self.mtnet else x3d_parts)(**args))
        init_weights(self, **init)

    @classmethod
    def from_config(cls, cfg: Any) -> Dict[str, Any]:
        """cfg -> the builder's keyword arguments (:func:`args_from_config`)."""
        return args_from_config(cfg, mtnet=cls.mtnet)


@MODEL_REGISTRY.register()
class X3D(_FromConfig):
    """X3D built from a PySlowFast config: ``X3D(cfg)``; the baseline MTNet is compared against."""


@MODEL_REGISTRY.register()
class MTNet(_FromConfig):
    """MTNet built from a PySlowFast config with the MTNET node: ``MTNet(cfg)``."""

    mtnet = True
