"""The P-branch pooling alternatives of Table VIc (Sec. IV-E): average, max, stochastic and SoftPool, each
per frame (2x2 spatial windows) or "symmetric" (2x2x2 windows over T, H and W, used without frame selection).

Stochastic pooling follows Zeiler & Fergus, "Stochastic Pooling for Regularization of Deep Convolutional
Neural Networks", ICLR 2013 (arXiv:1301.3557).

All methods share SoftPool's geometry (spec #6): ceil mode, an overhanging window uses only its in-bounds
elements, a dimension of size 1 is not pooled. They compute in fp32 with autocast off (spec #19) and return
the input dtype. Shape legend: x is (N, C, T, H, W); H' = ceil(H / 2), W' = ceil(W / 2), T2 = ceil(T / 2).
"""
from typing import Optional

import torch

from ._windows import WINDOW_DIMS, compute_dtype, fp32_region, in_bounds_mask, window_sizes, window_view
from .frame_select import select_frames
from .softpool import softpool_spatial, softpool_symmetric

POOL_METHODS = ("softpool", "avg", "max", "stochastic")


def _avg(x: torch.Tensor, pool_time: bool) -> torch.Tensor:
    sizes = window_sizes(x, pool_time)
    with fp32_region(x):
        xf = compute_dtype(x)
        count = in_bounds_mask(xf, sizes).sum(dim=WINDOW_DIMS)
        out = window_view(xf, sizes, 0.0).sum(dim=WINDOW_DIMS) / count
    return out.to(x.dtype)


def _max(x: torch.Tensor, pool_time: bool) -> torch.Tensor:
    sizes = window_sizes(x, pool_time)
    with fp32_region(x):
        out = window_view(compute_dtype(x), sizes, float("-inf")).amax(dim=WINDOW_DIMS)
    return out.to(x.dtype)


def _stochastic(
    x: torch.Tensor, pool_time: bool, training: bool, generator: Optional[torch.Generator]
) -> torch.Tensor:
    sizes = window_sizes(x, pool_time)
    with fp32_region(x):
        xf = compute_dtype(x)
        values = window_view(xf, sizes, 0.0)
        inside = in_bounds_mask(xf, sizes)
        positive = values.clamp_min(0.0)  # padding is 0: never sampled
        total = positive.sum(dim=WINDOW_DIMS, keepdim=True)
        uniform = inside / inside.sum(dim=WINDOW_DIMS, keepdim=True)
        # Windows without a positive activation fall back to uniform weights over in-bounds elements.
        probs = torch.where(total > 0, positive / total.clamp_min(torch.finfo(xf.dtype).tiny), uniform)
        if not training:
            out = (probs * values).sum(dim=WINDOW_DIMS)
        else:
            n, c, t2, kt, h2, kh, w2, kw = values.shape
            order = (0, 1, 2, 4, 6, 3, 5, 7)  # windows first, window elements last
            flat_p = probs.expand_as(values).permute(order).reshape(-1, kt * kh * kw)
            flat_v = values.permute(order).reshape(-1, kt * kh * kw)
            pick = torch.multinomial(flat_p.detach(), 1, generator=generator)
            out = flat_v.gather(1, pick).reshape(n, c, t2, h2, w2)
    return out.to(x.dtype)


def stochastic_pool_spatial(
    x: torch.Tensor, training: bool = False, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Stochastic 2x2 pooling of each frame (Table VIc).

    Each in-bounds element i of a window gets probability ``p_i = max(x_i, 0) / sum_j max(x_j, 0)``. In
    training one element per window is sampled with these probabilities (the gradient flows to it); at eval
    the output is the probability-weighted average ``sum_i p_i x_i``. A window whose activations are all
    <= 0 uses uniform probabilities over its in-bounds elements (so eval gives their mean, which is 0 after a
    ReLU, as in Zeiler & Fergus).

    Args:
        x: (N, C, T, H, W).
        training: sample (True) or take the expectation (False).
        generator: optional random generator, on x's device, for reproducible sampling.

    Returns:
        (N, C, T, H', W') in the dtype of x.
    """
    return _stochastic(x, False, training, generator)


def avg_pool_spatial(x: torch.Tensor) -> torch.Tensor:
    """Average 2x2 pooling of each frame over in-bounds elements (Table VIc). x: (N, C, T, H, W)."""
    return _avg(x, False)


def max_pool_spatial(x: torch.Tensor) -> torch.Tensor:
    """Max 2x2 pooling of each frame over in-bounds elements (Table VIc). x: (N, C, T, H, W)."""
    return _max(x, False)


def _check_method(method: str) -> None:
    if method not in POOL_METHODS:
        raise ValueError(f"unknown pooling method {method!r}; valid: {', '.join(POOL_METHODS)}")


def _pool(x: torch.Tensor, method: str, symmetric: bool, training: bool,
          generator: Optional[torch.Generator], frames: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``method`` over 2x2 (H, W) windows, or 2x2x2 (T, H, W) windows when ``symmetric``; with ``frames``
    (per-frame windows only) of those frames per sample."""
    _check_method(method)
    if method == "softpool" and not symmetric:
        return softpool_spatial(x, frames)  # selection fused into the kernel where it runs
    if frames is not None:
        x = select_frames(x, frames)
    if method == "softpool":
        return softpool_symmetric(x)
    if method == "avg":
        return _avg(x, symmetric)
    if method == "max":
        return _max(x, symmetric)
    return _stochastic(x, symmetric, training, generator)


def pool_spatial(
    x: torch.Tensor,
    method: str = "softpool",
    *,
    training: bool = False,
    generator: Optional[torch.Generator] = None,
    frames: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Pool each frame over 2x2 windows with one of ``POOL_METHODS`` (Eq. 5 and Table VIc).

    Args:
        x: (N, C, T, H, W).
        method: "softpool" | "avg" | "max" | "stochastic".
        training: only used by "stochastic" (sample vs. expectation).
        generator: only used by "stochastic" in training.
        frames: optional LongTensor (N, T') of distinct frames per sample: pool only those, the same as
            pooling ``select_frames(x, frames)`` (Eq. 4's T(); fused into SoftPool's CPU kernel).

    Returns:
        (N, C, T, H', W') in the dtype of x; (N, C, T', H', W') with ``frames``.
    """
    return _pool(x, method, False, training, generator, frames)


def pool_symmetric(
    x: torch.Tensor,
    method: str = "softpool",
    *,
    training: bool = False,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Pool over 2x2x2 windows of (T, H, W) with one of ``POOL_METHODS``: Table VIc's symmetric variants.

    Time is pooled like space (ceil mode, not pooled when T == 1), so no frame selection follows.

    Args:
        x: (N, C, T, H, W).
        method: "softpool" | "avg" | "max" | "stochastic".
        training: only used by "stochastic".
        generator: only used by "stochastic" in training.

    Returns:
        (N, C, T2, H', W') in the dtype of x.
    """
    return _pool(x, method, True, training, generator)
