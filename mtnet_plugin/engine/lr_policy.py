"""Learning-rate policies of PySlowFast's ``SOLVER`` node, evaluated at a fractional epoch.

The trainer sets the LR every iteration from ``epoch = cur_epoch + cur_iter / iters_per_epoch``.

- ``cosine``: ``END + (BASE - END) * (cos(pi * (e - off) / (MAX_EPOCH - off)) + 1) / 2`` with
  ``off = WARMUP_EPOCHS`` when ``COSINE_AFTER_WARMUP`` else 0.
- ``steps_with_relative_lrs``: ``LRS[i] * BASE_LR`` with ``i`` the last index of ``STEPS + [MAX_EPOCH]`` that is
  ``<= e``.
- ``constant``: ``BASE_LR``.
- Linear warm-up for ``e < WARMUP_EPOCHS``: from ``WARMUP_START_LR`` to the policy's value *at the end of
  warm-up* (not BASE_LR), as PySlowFast computes it.

Multigrid changes the schedule through the cfg it hands over (``multigrid.py``), never through this module.
"""
import math
from typing import Callable, Dict

POLICIES: Dict[str, Callable] = {}


def _register(name: str):
    def deco(fn):
        POLICIES[name] = fn
        return fn

    return deco


@_register("cosine")
def lr_cosine(solver, epoch: float) -> float:
    """Half-cosine from BASE_LR to COSINE_END_LR over [offset, MAX_EPOCH]."""
    if not solver.COSINE_END_LR < solver.BASE_LR:
        raise ValueError(
            f"SOLVER.COSINE_END_LR ({solver.COSINE_END_LR}) must be below SOLVER.BASE_LR ({solver.BASE_LR})"
        )
    offset = solver.WARMUP_EPOCHS if solver.COSINE_AFTER_WARMUP else 0.0
    progress = (epoch - offset) / (solver.MAX_EPOCH - offset)
    return solver.COSINE_END_LR + (solver.BASE_LR - solver.COSINE_END_LR) * (math.cos(math.pi * progress) + 1.0) * 0.5


def step_index(solver, epoch: float) -> int:
    """Index of the step interval of ``STEPS + [MAX_EPOCH]`` that holds ``epoch`` (PySlowFast's get_step_index)."""
    bounds = list(solver.STEPS) + [solver.MAX_EPOCH]
    for i, bound in enumerate(bounds):
        if epoch < bound:
            return i - 1
    return len(bounds) - 1


@_register("steps_with_relative_lrs")
def lr_steps_with_relative_lrs(solver, epoch: float) -> float:
    """``LRS[i] * BASE_LR`` for the step interval ``i`` holding ``epoch``."""
    if not solver.STEPS or not solver.LRS:
        raise ValueError("SOLVER.LR_POLICY steps_with_relative_lrs needs non-empty SOLVER.STEPS and SOLVER.LRS")
    index = min(max(step_index(solver, epoch), 0), len(solver.LRS) - 1)
    return solver.LRS[index] * solver.BASE_LR


@_register("constant")
def lr_constant(solver, epoch: float) -> float:
    """BASE_LR throughout."""
    return solver.BASE_LR


def get_lr_at_epoch(cfg, epoch: float) -> float:
    """LR at a fractional epoch under ``cfg.SOLVER`` (policy + linear warm-up).

    Args:
        cfg: a config with the ``SOLVER`` node.
        epoch: fractional epoch, ``cur_epoch + cur_iter / iters_per_epoch``.
    """
    solver = cfg.SOLVER
    try:
        policy = POLICIES[solver.LR_POLICY]
    except KeyError:
        raise ValueError(f"SOLVER.LR_POLICY {solver.LR_POLICY!r} unknown; known: {sorted(POLICIES)}") from None
    lr = policy(solver, epoch)
    if epoch < solver.WARMUP_EPOCHS:
        lr_end = policy(solver, solver.WARMUP_EPOCHS)
        lr = solver.WARMUP_START_LR + epoch * (lr_end - solver.WARMUP_START_LR) / solver.WARMUP_EPOCHS
    return lr
