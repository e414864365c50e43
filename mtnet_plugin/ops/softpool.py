"""SoftPool (Eq. 5, Sec. III-A) of Stergiou & Poppe, "Multi-Temporal Convolutions for Human Action
Recognition in Videos", IJCNN 2021; SoftPool itself is Stergiou, Poppe & Kalliatakis, "Refining activation
downsampling with SoftPool", ICCV 2021 (arXiv:2101.00440).

Shape legend: x is (N, C, T, H, W); H' = ceil(H / 2), W' = ceil(W / 2), T2 = ceil(T / 2).
"""
import torch

from ._windows import WINDOW_DIMS, compute_dtype, fp32_region, window_sizes, window_view


def _softpool(x: torch.Tensor, pool_time: bool) -> torch.Tensor:
    """Softmax-weighted window sum; per-window max subtracted before exp (spec numerics)."""
    sizes = window_sizes(x, pool_time)
    with fp32_region(x):
        xf = compute_dtype(x)
        logits = window_view(xf, sizes, float("-inf"))  # padding gets zero weight
        values = window_view(xf, sizes, 0.0)  # 0 * e^-inf would be nan; use 0 instead
        # The result does not depend on the shift, so the max carries no gradient.
        shift = logits.detach().amax(dim=WINDOW_DIMS, keepdim=True)
        e = torch.exp(logits - shift)
        out = (e * values).sum(dim=WINDOW_DIMS) / e.sum(dim=WINDOW_DIMS)
    return out.to(x.dtype)


def softpool_spatial(x: torch.Tensor) -> torch.Tensor:
    """Softmax-weighted 2x2 pooling of each frame (Eq. 5, Sec. III-A).

    ``out = sum_i softmax(x_R)_i * x_i`` per channel, frame and 2x2 window R. Windows that overhang an odd
    edge use only their in-bounds elements, which get all the softmax weight; a dimension of size 1 is not
    pooled (spec #6). Computed in fp32 with autocast off (spec #19), subtracting each window's max, so any
    magnitude is safe; the gradient is ``d out / d x_i = w_i (1 + x_i - out)``.

    Args:
        x: (N, C, T, H, W), any float dtype.

    Returns:
        (N, C, T, H', W') in the dtype of x.
    """
    return _softpool(x, pool_time=False)


def softpool_symmetric(x: torch.Tensor) -> torch.Tensor:
    """SoftPool over 2x2x2 windows of (T, H, W): the "symmetric" ablation of Table VIc.

    Same rules as :func:`softpool_spatial` (ceil mode, size-1 dimensions kept, fp32), time included.

    Args:
        x: (N, C, T, H, W).

    Returns:
        (N, C, T2, H', W') in the dtype of x.
    """
    return _softpool(x, pool_time=True)
