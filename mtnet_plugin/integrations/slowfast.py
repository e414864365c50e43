"""Run MTNet inside a PySlowFast checkout: registry entry, config node and SlowFast's model contract.

PySlowFast (facebookresearch/SlowFast) builds models with ``MODEL_REGISTRY.get(cfg.MODEL.MODEL_NAME)(cfg)``,
feeds them a list of pathway tensors, expects logits in train mode and probabilities in eval mode, packs the
input only for arches listed in ``MODEL.SINGLE_PATHWAY_ARCH`` and rejects YAML keys missing from its defaults.
This module bridges those points and nothing else:

- ``MTNet``: our model (same modules, same state-dict keys) with SlowFast's ``forward(x, bboxes=None)``.
- ``add_mtnet_config(cfg)``: the ``MTNET`` node plus the ``mtnet`` arch on a SlowFast cfg.
- ``register_mtnet(registry=None)``: puts ``MTNet`` into ``slowfast.models.build.MODEL_REGISTRY``.
- ``add_custom_config(cfg)``: both of the above, shaped like SlowFast's ``add_custom_config`` hook.

``slowfast`` is imported only inside ``register_mtnet`` (and so ``add_custom_config``); importing this module,
or ``mtnet_plugin``, never imports it. Usage is in ``docs/pyslowfast.md``.
"""
import logging
from typing import Any, List, Optional, Sequence, Union

import torch
from fvcore.common.config import CfgNode

from mtnet_plugin import models as mt_models
from mtnet_plugin.config import mtnet as mtnet_config

logger = logging.getLogger(__name__)

ARCH = "mtnet"
MODEL_NAME = "MTNet"

# Keys our model reads (docs/design.md, "Model contract") that PySlowFast's schema lacks, with the values
# PySlowFast's X3D hard-codes for its BatchNorm3d layers.
_KEYS_SLOWFAST_LACKS = {"BN": {"EPSILON": 1e-5, "MOMENTUM": 0.1}}


class MTNet(mt_models.MTNet):
    """Our MTNet behind PySlowFast's model contract.

    It subclasses our registered model and adds no module, parameter or buffer, so its ``state_dict`` keys and
    shapes are our model's: a ``"model_state"`` saved by either runtime loads strictly into the other.
    The class is named ``MTNet`` because fvcore's ``Registry`` keys an object by ``__name__``.

    Eval mode: SlowFast's heads apply ``MODEL.HEAD_ACT`` at every spatio-temporal position of the pooled map
    and then average. Our head pools adaptively to a single position before the classifier, so the average is
    over one position and the output is the head's activation of the logits (``head.activate``: softmax,
    sigmoid or none, from ``MODEL.HEAD_ACT``). With ``TEST_CROP_SIZE`` larger than ``TRAIN_CROP_SIZE`` this
    is the activation of the mean, not SlowFast's mean of activations.

    Args:
        cfg: a SlowFast cfg extended by ``add_mtnet_config``; read by our model's ``from_config``, plus
            ``DETECTION.ENABLE`` here.
    """

    def __init__(self, cfg: CfgNode):
        if _detection_enabled(cfg):
            raise NotImplementedError("MTNet has no detection (RoI) head; set DETECTION.ENABLE False")
        super().__init__(cfg)

    def forward(
        self, x: Union[torch.Tensor, Sequence[torch.Tensor]], bboxes: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """SlowFast's forward: logits in train mode, ``MODEL.HEAD_ACT`` of them in eval mode.

        Args:
            x: a list holding one pathway tensor ``(N, 3, T, H, W)`` (SlowFast's packing for single-pathway
                arches), or that tensor itself.
            bboxes: detection boxes; must be None (no detection head).

        Returns:
            (N, num_classes): logits in train mode, probabilities (softmax rows sum to 1) in eval mode.
        """
        if bboxes is not None:
            raise NotImplementedError("MTNet has no detection (RoI) head; bboxes must be None")
        if isinstance(x, (list, tuple)) and len(x) != 1:
            raise ValueError(f"MTNet is single-pathway: expected a list of 1 tensor, got {len(x)}")
        logits = super().forward(x)
        if self.training:
            return logits
        return self.head.activate(logits)


def _detection_enabled(cfg: CfgNode) -> bool:
    return "DETECTION" in cfg and bool(cfg.DETECTION.get("ENABLE", False))


def add_mtnet_config(cfg: CfgNode) -> CfgNode:
    """Extend a PySlowFast cfg in place for MTNet and return it (idempotent).

    Adds the ``MTNET`` node (``mtnet_plugin.config.mtnet.add_mtnet_config``) so YAML files may set
    ``MTNET.*`` (unknown keys are rejected), appends ``"mtnet"`` to ``MODEL.SINGLE_PATHWAY_ARCH``
    so ``MODEL.ARCH: mtnet`` is packed as ``[frames]``, and adds ``BN.EPSILON`` (1e-5) and
    ``BN.MOMENTUM`` (0.1), read by our model but absent from PySlowFast's schema, where missing.
    Keys already present keep their values.

    Args:
        cfg: an unfrozen SlowFast-style cfg with ``MODEL.SINGLE_PATHWAY_ARCH`` (a list).

    Raises:
        KeyError: ``cfg`` has no ``MODEL.SINGLE_PATHWAY_ARCH``, so it is not a SlowFast cfg.
    """
    if "MODEL" not in cfg or "SINGLE_PATHWAY_ARCH" not in cfg.MODEL:
        raise KeyError("not a PySlowFast cfg: MODEL.SINGLE_PATHWAY_ARCH is missing")
    mtnet_config.add_mtnet_config(cfg)
    for node, defaults in _KEYS_SLOWFAST_LACKS.items():
        if node not in cfg:
            cfg[node] = CfgNode()
        for key, value in defaults.items():
            if key not in cfg[node]:
                cfg[node][key] = value
    arches: List[str] = list(cfg.MODEL.SINGLE_PATHWAY_ARCH)
    if ARCH not in arches:
        cfg.MODEL.SINGLE_PATHWAY_ARCH = arches + [ARCH]
    return cfg


def register_mtnet(registry: Optional[Any] = None) -> Any:
    """Register ``MTNet`` into SlowFast's model registry (a second call is a no-op) and return the registry.

    Args:
        registry: an fvcore ``Registry``; None means ``slowfast.models.build.MODEL_REGISTRY``, which is
            imported here (importing it runs ``slowfast/models/__init__.py``: needs ``detectron2.layers`` and
            pytorchvideo from GitHub, see docs/pyslowfast.md).

    Raises:
        ImportError: ``registry`` is None and ``slowfast.models`` cannot be imported.
        ValueError: the registry already holds a different object named ``MTNet``.
    """
    if registry is None:
        try:
            from slowfast.models.build import MODEL_REGISTRY as registry
        except ImportError as err:
            raise ImportError(
                f"cannot import slowfast.models ({err}); see docs/pyslowfast.md for what PySlowFast needs"
            ) from err
    if MODEL_NAME in registry:
        existing = registry.get(MODEL_NAME)
        if _same_class(existing, MTNet):
            return registry
        raise ValueError(f"the registry already holds another {MODEL_NAME}: {existing!r}")
    registry.register(MTNet)
    logger.info("registered %s.%s as %r", MTNet.__module__, MTNet.__qualname__, MODEL_NAME)
    return registry


def _same_class(a: Any, b: type) -> bool:
    """Whether ``a`` is ``b`` or the same class from a re-imported copy of this module."""
    return a is b or (
        getattr(a, "__module__", None) == b.__module__ and getattr(a, "__qualname__", None) == b.__qualname__
    )


def add_custom_config(cfg: CfgNode) -> None:
    """PySlowFast's ``add_custom_config(_C)`` hook for MTNet: extends the defaults and registers the model.

    SlowFast's ``slowfast/config/defaults.py`` calls ``custom_config.add_custom_config(_C)`` at import time,
    which every launcher process (spawned workers included) goes through, so MTNet's keys exist before any
    YAML is merged and ``MODEL_NAME: MTNet`` resolves in ``build_model``.

    Args:
        cfg: SlowFast's default cfg ``_C``.
    """
    add_mtnet_config(cfg)
    register_mtnet()
