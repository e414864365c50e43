"""Shared helpers for the pooling ops: ceil-mode window views and fp32 regions (spec #6, #19).

Shape legend: N batch, C channels, T frames, H height, W width; a window has size 2 along every pooled
dimension of size > 1 and size 1 along the others.
"""
import contextlib
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

# Reduction dims of the 8-d window view (N, C, T2, kt, H2, kh, W2, kw).
WINDOW_DIMS = (3, 5, 7)


def static_shape(x: torch.Tensor) -> Tuple[int, ...]:
    """x's shape as Python ints, so tracing records constants instead of shape arithmetic ops."""
    return tuple(int(s) for s in x.shape)


def window_sizes(x: torch.Tensor, pool_time: bool) -> Tuple[int, int, int]:
    """Window size per (T, H, W): 2 for a pooled dimension, 1 when the dimension has size 1 (spec #6)."""
    _, _, t, h, w = static_shape(x)
    return (2 if pool_time and t > 1 else 1, 2 if h > 1 else 1, 2 if w > 1 else 1)


def window_view(x: torch.Tensor, sizes: Sequence[int], fill: float) -> torch.Tensor:
    """Pad x at the far end to a multiple of the window and view it as windows (ceil mode, spec #6).

    Args:
        x: (N, C, T, H, W).
        sizes: window size (kt, kh, kw), each 1 or 2.
        fill: value of the padded (out-of-bounds) positions.

    Returns:
        (N, C, T2, kt, H2, kh, W2, kw) with T2 = ceil(T / kt) etc.; reduce over ``WINDOW_DIMS``.
    """
    n, c, t, h, w = static_shape(x)
    kt, kh, kw = sizes
    pt, ph, pw = (-t) % kt, (-h) % kh, (-w) % kw
    if pt or ph or pw:
        x = F.pad(x, (0, pw, 0, ph, 0, pt), value=fill)
    return x.reshape(n, c, (t + pt) // kt, kt, (h + ph) // kh, kh, (w + pw) // kw, kw)


def in_bounds_mask(x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Window view of ones (in bounds) and zeros (padding), in x's dtype: (1, 1, T2, kt, H2, kh, W2, kw)."""
    ones = torch.ones((1, 1) + static_shape(x)[2:], dtype=x.dtype, device=x.device)
    return window_view(ones, sizes, 0.0)


def compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """x in at least fp32: half types are upcast, float64 stays float64 (spec #19)."""
    return x if x.dtype == torch.float64 else x.float()


def fp32_region(x: torch.Tensor):
    """Context that disables autocast for x's device when it is on, so the body runs in fp32 (spec #19)."""
    device_type = x.device.type
    if device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()
