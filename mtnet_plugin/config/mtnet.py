"""The ``MTNET`` config node: options of the MTNet model.

Its keys and defaults are the fields of :class:`mtnet_plugin.layers.options.MTBlockOptions` that carry a config
key (described there, decided in docs/spec-decisions.md), plus ``HEAD`` and ``INIT_FROM_X3D``.
``add_mtnet_config`` is safe to call on any fvcore/yacs ``CfgNode`` (ours or PySlowFast's).
"""
from fvcore.common.config import CfgNode

from mtnet_plugin.layers.options import MTBlockOptions

# Head of X3D and MTNet, a name in mtnet_plugin.models.HEAD_REGISTRY (the adaptive X3D head).
HEAD_DEFAULT = "X3DHead"
# INIT_FROM_X3D: a PySlowFast-layout X3D checkpoint of the same size to start a new MTNet run from
# (mtnet_plugin/models/warm_start.py, mtnet_plugin/engine/warm_start.py); "" = from scratch.
RUN_KEYS = {"HEAD": HEAD_DEFAULT, "INIT_FROM_X3D": ""}


def add_mtnet_config(cfg: CfgNode) -> CfgNode:
    """Add the ``MTNET`` node to ``cfg`` in place (no-op for keys already present) and return ``cfg``."""
    if "MTNET" not in cfg:
        cfg.MTNET = CfgNode()
    node = cfg.MTNET
    for key, value in {**MTBlockOptions.config_defaults(), **RUN_KEYS}.items():
        if key not in node:
            node[key] = value
    return cfg
