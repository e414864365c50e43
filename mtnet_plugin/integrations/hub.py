"""torch.hub entry points (``hubconf.py`` at the repository root re-exports them).

::

    model = torch.hub.load("path/to/mtnet_plugin", "mtnet_m", source="local", num_classes=10,
                           pretrained="checkpoint_epoch_00300.pyth")

``mtnet_s/m/l`` and ``x3d_s/m/l`` build ``mtnet_plugin.models.preset("MTNet_S", ...)`` etc. (same networks as the
configs; keyword overrides such as ``delta=0.75`` pass through). ``pretrained`` is ``None`` (initialised as in
training), a local file, or a URL that ``torch.hub.load_state_dict_from_url`` downloads into torch.hub's cache
and checks: the file name must hold the first hex digits of the file's SHA-256 (``name-<sha256 prefix>.pyth``,
torch.hub's convention), else the URL is refused. The file may be one of our or PySlowFast's checkpoints
(``model_state``), a ``{"state_dict": ...}`` dict or a bare state dict.

Loading is strict except for the classifier: when the file's class count differs from ``num_classes``, the
projection (``head.projection.*``) keeps its fresh initialisation and everything else loads; any other missing,
unexpected or differently shaped tensor is an error naming the file and the tensors.
"""
import logging
import os
import re
from typing import Any, Dict, Optional

import torch
from torch import nn

from mtnet_plugin.models import preset

logger = logging.getLogger(__name__)

HEAD_PREFIX = "head.projection."
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_HASH_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch.hub's HASH_REGEX: name-<sha256 prefix>.ext


class PretrainedMismatch(ValueError):
    """A pretrained file whose tensors do not fit the requested network (beyond the classifier)."""


def _read(pretrained: str, progress: bool) -> Dict[str, Any]:
    if _URL.match(pretrained):
        name = os.path.basename(pretrained.split("?")[0])
        if not _HASH_NAME.search(name):
            raise ValueError(
                f"pretrained URL {pretrained}: the file name must carry the first hex digits of its SHA-256 "
                "(name-<sha256 prefix>.pyth, torch.hub's convention) so the download can be checked"
            )
        return torch.hub.load_state_dict_from_url(pretrained, map_location="cpu", progress=progress,
                                                  check_hash=True, weights_only=True)
    if not os.path.isfile(pretrained):
        raise FileNotFoundError(f"pretrained weights {pretrained}: no such file")
    return torch.load(pretrained, map_location="cpu", weights_only=True)


def state_dict_of(obj: Any, source: str = "") -> Dict[str, torch.Tensor]:
    """The model tensors in a loaded file: ``model_state`` (our / PySlowFast checkpoints), ``state_dict``, or
    the dict itself; DDP's ``module.`` prefixes are removed."""
    if isinstance(obj, dict):
        for key in ("model_state", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedMismatch(f"pretrained weights {source}: not a state dict (tensors by name)")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_pretrained(model: nn.Module, state: Dict[str, torch.Tensor], source: str = "") -> Dict[str, list]:
    """Load ``state`` into ``model``: everything, except a classifier whose class count differs.

    Returns:
        ``{"loaded": [...], "kept_fresh": [...]}`` (tensor names).

    Raises:
        PretrainedMismatch: a tensor other than ``head.projection.*`` is missing, unexpected or of another shape.
    """
    own = model.state_dict()
    loaded, kept_fresh, problems = {}, [], []
    for name, value in state.items():
        if name not in own:
            problems.append(f"unexpected {name}")
        elif tuple(own[name].shape) != tuple(value.shape):
            if name.startswith(HEAD_PREFIX):
                kept_fresh.append(name)
            else:
                problems.append(f"{name}: file {tuple(value.shape)} vs model {tuple(own[name].shape)}")
        else:
            loaded[name] = value
    problems += [f"missing {name}" for name in own if name not in state]
    if problems:
        more = f" (+{len(problems) - 6} more)" if len(problems) > 6 else ""
        raise PretrainedMismatch(f"pretrained weights {source} do not fit {type(model).__name__}: "
                                 f"{'; '.join(problems[:6])}{more}")
    model.load_state_dict(loaded, strict=False)
    if kept_fresh:
        logger.info("%s: class count differs, the classifier (%s) keeps its initialisation; %d tensors loaded",
                    source, ", ".join(kept_fresh), len(loaded))
    return {"loaded": sorted(loaded), "kept_fresh": kept_fresh}


def build(name: str, *, pretrained: Optional[str] = None, num_classes: int = 400, progress: bool = True,
          **overrides: Any) -> nn.Module:
    """``preset(name, num_classes, **overrides)``, then the ``pretrained`` weights if given (module docstring).

    Returns:
        The model in eval mode when weights were loaded (inference is what a hub user wants), else in train
        mode as ``preset`` returns it.
    """
    model = preset(name, num_classes=num_classes, **overrides)
    if pretrained:
        load_pretrained(model, state_dict_of(_read(str(pretrained), progress), str(pretrained)), str(pretrained))
        model.eval()
    return model


def _entry(name: str, doc: str):
    def entry(pretrained: Optional[str] = None, num_classes: int = 400, progress: bool = True, **overrides: Any):
        return build(name, pretrained=pretrained, num_classes=num_classes, progress=progress, **overrides)

    entry.__name__ = name.lower()
    entry.__doc__ = f"""{doc}

    Args:
        pretrained: None, a local checkpoint / state dict, or a URL whose file name carries its SHA-256 prefix
            (checked by torch.hub). A different class count loads all but ``head.projection``.
        num_classes: classifier width (400 = Kinetics-400).
        progress: show the download's progress bar.
        overrides: keyword arguments of ``mtnet_plugin.models.create_mtnet`` / ``create_x3d``.
    """
    return entry


mtnet_s = _entry("MTNet_S", "MTNet_S: X3D-S backbone with MTBlocks; input 13 x 160 x 160.")
mtnet_m = _entry("MTNet_M", "MTNet_M: X3D-M backbone with MTBlocks; input 16 x 224 x 224.")
mtnet_l = _entry("MTNet_L", "MTNet_L: X3D-L backbone with MTBlocks; input 16 x 312 x 312.")
x3d_s = _entry("X3D_S", "X3D-S (PySlowFast layout, PySlowFast checkpoints load); input 13 x 160 x 160.")
x3d_m = _entry("X3D_M", "X3D-M (PySlowFast layout, PySlowFast checkpoints load); input 16 x 224 x 224.")
x3d_l = _entry("X3D_L", "X3D-L (PySlowFast layout, PySlowFast checkpoints load); input 16 x 312 x 312.")
ENTRY_POINTS = ("mtnet_s", "mtnet_m", "mtnet_l", "x3d_s", "x3d_m", "x3d_l")
