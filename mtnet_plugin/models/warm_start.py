"""Warm start of MTNet from an X3D checkpoint of the same size (PySlowFast's X3D state-dict layout).

MTNet is X3D with each residual branch's three convs replaced by MTConvs and SE by Squeeze-and-Recursion
(models/mtnet.py). What carries over (docs/ecosystem.md, "X3D warm start"):

- Same name and shape in both (the stem ``s1.*``, every shortcut ``branch1`` / ``branch1_bn``, the head ``head.*``):
  copied as they are.
- Each X3D branch conv and its BN (``branch2.{a,b,c}`` and ``branch2.{a,b,c}_bn``) into the local branch of the
  matching MTConv (``branch2.conv_{a,b,c}.conv_local`` / ``.bn_local``): its first ``C_L = floor(delta * C)`` output
  channels and, where the local conv reads fewer input channels than X3D's (a channelwise conv_b, or a P_INPUT
  that splits the inputs), the matching first input channels. The local branch's output channels are the first
  C_L channels of the MTConv's output, so the next conv's first input channels see the same features as in X3D.
- Not copied: X3D's SE (``branch2.se.*``, replaced by SR) and its channels beyond C_L. Everything else of MTNet
  (the prolonged branch ``conv_p``, ``conv_lp``, ``bn_p``, ``bn_lp``, and SR's recurrent unit) keeps the
  initialisation it was built with (from scratch: ``x3d.init_weights``).

A head whose class count differs from the checkpoint's is not copied (reported as a shape mismatch) and stays
initialised, so an X3D trained on Kinetics-400 warm-starts MTNet for any other class count.
"""
import re
from typing import Dict, List, Tuple

import torch
from torch import nn

HEAD_PROJECTION = "head.projection."  # the classifier: left out when the class counts differ
# X3D branch tensor -> MTNet local-branch tensor (PySlowFast names on the left).
_BRANCH = re.compile(r"^(?P<block>.*\.branch2)\.(?P<conv>[abc])(?P<bn>_bn)?\.(?P<param>\w+)$")


def _target(name: str) -> str:
    """The MTNet tensor an X3D tensor maps to (the same name unless it is a branch conv / BN)."""
    m = _BRANCH.match(name)
    if not m:
        return name
    part = "bn_local" if m["bn"] else "conv_local"
    return f"{m['block']}.conv_{m['conv']}.{part}.{m['param']}"


def map_x3d_state(x3d_state: Dict[str, torch.Tensor], mtnet: nn.Module) -> Tuple[Dict[str, torch.Tensor], dict]:
    """The tensors of ``x3d_state`` mapped onto ``mtnet``'s state dict (module docstring); nothing is loaded.

    Args:
        x3d_state: an X3D state dict in PySlowFast's layout (``module.`` prefixes are removed).
        mtnet: the MTNet (a ``VideoNet`` with MTBlocks) to initialise.

    Returns:
        ``(mapped, report)``: ``{mtnet name: tensor}`` and a report with lists ``copied`` (same name, whole
        tensors: stem, shortcuts, head), ``local`` (``"mtnet <- x3d[:a, :b]"``: X3D branch convs / BNs into the
        MTConv local branches, ``:`` where a dimension is whole), ``not_copied`` (X3D tensors left out, with why)
        and ``from_scratch`` (MTNet tensors not written), and ``counts`` of each.
    """
    own = mtnet.state_dict()
    mapped: Dict[str, torch.Tensor] = {}
    report: Dict[str, List[str]] = {"copied": [], "local": [], "not_copied": [], "from_scratch": []}
    for key, value in x3d_state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        target = _target(name)
        if target not in own:
            why = "SE, replaced by Squeeze-and-Recursion" if ".branch2.se." in name else "no counterpart in MTNet"
            report["not_copied"].append(f"{name} ({why})")
            continue
        dst = own[target]
        if value.dim() != dst.dim() or any(d > s for d, s in zip(dst.shape, value.shape)):
            report["not_copied"].append(f"{name} (shape {tuple(value.shape)} vs MTNet {target} {tuple(dst.shape)})")
            continue
        if target == name:  # stem, shortcuts, head: whole tensors of the same shape only
            if tuple(dst.shape) != tuple(value.shape):
                report["not_copied"].append(f"{name} (shape {tuple(value.shape)} vs MTNet {tuple(dst.shape)})")
                continue
            mapped[target] = value.clone()
            report["copied"].append(name)
            continue
        mapped[target] = value[tuple(slice(0, n) for n in dst.shape)].clone()  # the first C_L (and C_in) channels
        shown = ", ".join(f":{n}" if n != s else ":" for n, s in zip(dst.shape, value.shape))
        report["local"].append(f"{target} <- {name}" + (f"[{shown}]" if shown else ""))
    report["from_scratch"] = [k for k in own if k not in mapped]
    report["counts"] = {k: len(report[k]) for k in ("copied", "local", "not_copied", "from_scratch")}
    report["counts"]["mtnet_tensors"] = len(own)
    report["counts"]["x3d_tensors"] = len(x3d_state)
    return mapped, report


def init_from_x3d(mtnet: nn.Module, x3d_state: Dict[str, torch.Tensor]) -> dict:
    """Copy what maps (:func:`map_x3d_state`) into ``mtnet`` in place; the rest keeps its initialisation.

    Raises:
        ValueError: an X3D tensor other than the classifier (``head.projection``, whose class count may differ) does
            not fit its MTNet counterpart, or no branch conv maps: not an X3D of this network's size.

    Returns:
        :func:`map_x3d_state`'s report.
    """
    mapped, report = map_x3d_state(x3d_state, mtnet)
    misfits = [line for line in report["not_copied"] if "(shape" in line and not line.startswith(HEAD_PROJECTION)]
    if misfits or not report["local"]:
        raise ValueError(f"{len(misfits)} X3D tensors do not fit this MTNet and {len(report['local'])} fit its local "
                         f"branches: is the checkpoint an X3D of the same width and depth? First misfits: "
                         f"{misfits[:3]}")
    mtnet.load_state_dict(mapped, strict=False)
    return report


def summarize(report: dict) -> str:
    """One line of counts for the log."""
    c = report["counts"]
    return (f"{c['copied']} X3D tensors copied whole (stem, shortcuts, head), {c['local']} copied into MTConv local "
            f"branches, {c['not_copied']} X3D tensors not used; {c['from_scratch']} of {c['mtnet_tensors']} MTNet "
            f"tensors keep their initialisation (prolonged branches, SR)")
