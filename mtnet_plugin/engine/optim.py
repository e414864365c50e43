"""Optimizer construction from ``SOLVER`` with PySlowFast's parameter groups.

Groups (empty ones are dropped; each carries ``name`` and ``lr_scale``):

- ``bn``: parameters of normalisation modules (``_NormBase``, ``GroupNorm``, ``LayerNorm``), weight decay
  ``BN.WEIGHT_DECAY``.
- ``zero_wd``: names listed by ``model.no_weight_decay()`` and, with ``SOLVER.ZERO_WD_1D_PARAM``, 1-D params and
  biases; weight decay 0.
- ``conv``: weights of convolutions when ``SOLVER.CONV_WEIGHT_LR_MULT != 1`` (the UCF-101 fine-tune recipe of the
  paper, Sec. IV-A: LR x 0.1 on conv weights); ``SOLVER.WEIGHT_DECAY`` and ``lr_scale = CONV_WEIGHT_LR_MULT``.
- ``non_bn``: everything else, ``SOLVER.WEIGHT_DECAY``.

:func:`set_lr` writes ``lr * group["lr_scale"]`` into every group.
"""
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def conv_weight_lr_mult(cfg) -> float:
    """``SOLVER.CONV_WEIGHT_LR_MULT`` (1.0 when the key is absent from this cfg)."""
    return float(cfg.SOLVER.get("CONV_WEIGHT_LR_MULT", 1.0))


def param_groups(model: nn.Module, cfg) -> "list[dict]":
    """Split ``model``'s trainable parameters into the named groups described in the module docstring."""
    no_wd_names = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    conv_mult = conv_weight_lr_mult(cfg)
    groups = {
        "bn": {"params": [], "weight_decay": cfg.BN.WEIGHT_DECAY, "lr_scale": 1.0},
        "zero_wd": {"params": [], "weight_decay": 0.0, "lr_scale": 1.0},
        "conv": {"params": [], "weight_decay": cfg.SOLVER.WEIGHT_DECAY, "lr_scale": conv_mult},
        "non_bn": {"params": [], "weight_decay": cfg.SOLVER.WEIGHT_DECAY, "lr_scale": 1.0},
    }
    seen = set()
    num_trainable = 0
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if not p.requires_grad:
                continue
            num_trainable += 1
            full_name = f"{module_name}.{name}" if module_name else name
            if isinstance(module, _NORM_TYPES):
                key = "bn"
            elif any(k in full_name for k in no_wd_names) or (
                cfg.SOLVER.ZERO_WD_1D_PARAM and (p.ndim <= 1 or name == "bias")
            ):
                key = "zero_wd"
            elif conv_mult != 1.0 and isinstance(module, _CONV_TYPES) and name == "weight":
                key = "conv"
            else:
                key = "non_bn"
            groups[key]["params"].append(p)
    out = [dict(group, name=name) for name, group in groups.items() if group["params"]]
    assert sum(len(g["params"]) for g in out) == num_trainable
    return out


def construct_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """Optimizer named by ``SOLVER.OPTIMIZING_METHOD`` (sgd | adam | adamw) over :func:`param_groups`."""
    groups = param_groups(model, cfg)
    solver = cfg.SOLVER
    method = solver.OPTIMIZING_METHOD.lower()
    logger.info(
        "Optimizer %s, groups: %s",
        method,
        ", ".join(f"{g['name']} ({len(g['params'])} params, wd {g['weight_decay']}, lr x{g['lr_scale']})" for g in groups),
    )
    if solver.get("LARS_ON", False):
        logger.warning("SOLVER.LARS_ON is not implemented; training with plain %s", method)
    if method == "sgd":
        return torch.optim.SGD(
            groups,
            lr=solver.BASE_LR,
            momentum=solver.MOMENTUM,
            weight_decay=solver.WEIGHT_DECAY,
            dampening=solver.DAMPENING,
            nesterov=solver.NESTEROV,
        )
    if method == "adam":
        return torch.optim.Adam(groups, lr=solver.BASE_LR, betas=tuple(solver.BETAS), weight_decay=solver.WEIGHT_DECAY)
    if method in ("adamw", "mt_adamw"):
        return torch.optim.AdamW(
            groups, lr=solver.BASE_LR, betas=tuple(solver.BETAS), eps=1e-8, weight_decay=solver.WEIGHT_DECAY
        )
    raise ValueError(f"SOLVER.OPTIMIZING_METHOD {solver.OPTIMIZING_METHOD!r} not supported (sgd, adam, adamw)")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's LR to ``lr * group['lr_scale']``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
