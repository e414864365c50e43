"""Registries (the plug points of the model floor) and ``build_model``.

``MODEL_REGISTRY``: an entry is called as ``obj(cfg)`` and returns an ``nn.Module`` on CPU, in train mode,
initialised, whose ``forward`` takes ``(N, C, T, H, W)`` or a list holding one such tensor and returns logits
``(N, num_classes)``; the cfg is a PySlowFast-schema ``CfgNode`` read by the class's ``from_config(cfg)``
(docs/design.md "Model contract"). Registered: ``X3D``, ``MTNet``.

``HEAD_REGISTRY``: an entry is called with keyword arguments ``dim_in, dim_inner, dim_out, num_classes,
dropout_rate, act, bn_lin5, norm_eps, norm_momentum`` and returns a module mapping ``(N, dim_in, T, H, W)``
(any T, H, W) to logits ``(N, num_classes)``, with an ``act`` attribute naming the activation the runtime
applies. Registered: ``X3DHead``.

Registration happens when ``mtnet_plugin.models`` imports the registering modules (``__init__.py``).
"""
from typing import Any

from fvcore.common.registry import Registry
from torch import nn

MODEL_REGISTRY = Registry("MODEL")
MODEL_REGISTRY.__doc__ = "Video classification models, called as obj(cfg); see the module docstring."

HEAD_REGISTRY = Registry("HEAD")
HEAD_REGISTRY.__doc__ = "Classification heads, called with keyword arguments; see the module docstring."

# MODEL.MODEL_NAME values that name a backbone family; MODEL.ARCH == "mtnet" turns them into MTNet.
BACKBONE_FAMILIES = ("X3D", "SlowFast")


def registered_names(registry: Registry) -> list:
    """Sorted names held by an fvcore ``Registry``."""
    return sorted(name for name, _ in registry)


def get_registered(registry: Registry, name: str) -> Any:
    """``registry.get(name)`` whose KeyError lists the registered names."""
    if name not in registry:
        raise KeyError(
            f"No object named {name!r} in the {registry._name} registry; registered: {registered_names(registry)}"
        )
    return registry.get(name)


def model_name_from_config(cfg: Any) -> str:
    """The registry name ``build_model`` uses: MODEL.MODEL_NAME, or ``MTNet`` when MODEL.ARCH is ``mtnet``
    and MODEL_NAME names a backbone family (X3D, or SlowFast, PySlowFast's default)."""
    name = str(cfg.MODEL.MODEL_NAME)
    if str(getattr(cfg.MODEL, "ARCH", "")).lower() == "mtnet" and name in BACKBONE_FAMILIES:
        return "MTNet"
    return name


def build_model(cfg: Any) -> nn.Module:
    """Build the model named by ``cfg`` (see ``model_name_from_config``): on CPU, in train mode, initialised.

    Raises:
        KeyError: the name is not registered (the message lists the registered names).
    """
    model = get_registered(MODEL_REGISTRY, model_name_from_config(cfg))(cfg)
    return model.train()
