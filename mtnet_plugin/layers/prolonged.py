"""Parameter-free parts of MTConv's prolonged branch (Eq. 3-5, Sec. III-A): the joint spatial/temporal
reduction of its two inputs and the trilinear interpolation back. Kept as submodules so that the FLOP
counter and the profiler attribute their cost to ``<mtconv>.downsample`` and ``<mtconv>.upsample``.

Shape legend: N batch, T frames, H' = ceil(H / 2), W' = ceil(W / 2), T' = floor(T / 2) if T > 2 else T,
T2 = ceil(T / 2).
"""
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from mtnet_plugin.ops import pool_spatial, pool_symmetric, select_frames, trilinear_resize, triplet_cosine_select

from .options import SELECTIONS, MTConvOptions  # noqa: F401  (SELECTIONS: API)


class SpatialPool(nn.Module):
    """P's pooling as a module (so profilers and FLOP counters attribute it): 2x2 per frame, or 2x2x2 over
    (T, H, W) when ``symmetric`` (Eq. 5, Table VIc).

    Args:
        method: one of ``mtnet_plugin.ops.POOL_METHODS`` (checked by the ops).
        symmetric: pool time with space.
    """

    def __init__(self, method: str = "softpool", symmetric: bool = False):
        super().__init__()
        self.method, self.symmetric = method, symmetric

    def forward(self, x: torch.Tensor, frames: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (N, C, T, H, W) -> (N, C, T, H', W'), or (N, C, T2, H', W') when symmetric; with ``frames``
        (N, T'), per-frame pooling of just those frames, (N, C, T', H', W')."""
        if self.symmetric:
            return pool_symmetric(x, self.method, training=self.training)
        return pool_spatial(x, self.method, training=self.training, frames=frames)

    def extra_repr(self) -> str:
        return f"method={self.method!r}, symmetric={self.symmetric}"


class FrameSelect(nn.Module):
    """Triplet cosine frame selection and the gather, as a module (Eq. 6-7, spec #5).

    Args:
        highest: keep the highest scores (the authors' code) instead of the lowest (the text; spec #1).
    """

    def __init__(self, highest: bool = False):
        super().__init__()
        self.highest = highest

    def forward(self, p_in: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Indices from the pooled input p_in (N, C_in_P, T, H', W') and p_in at them. Returns the LongTensor
        (N, T') of ascending frame indices (for the other input, spec #5) and (N, C_in_P, T', H', W')."""
        idx = triplet_cosine_select(p_in, highest=self.highest)
        return idx, select_frames(p_in, idx)

    def extra_repr(self) -> str:
        return f"highest={self.highest}"


class ProlongedDownsample(nn.Module):
    """Halve both P inputs: pool space per frame, then select frames (Eq. 4-7, spec #5).

    The frame indices are computed once, from the pooled layer input, and applied to both inputs so that
    the sum in Eq. 3 adds features of the same time steps (spec #5). Only a_L's selected frames are
    pooled (pooling is per frame, so the values are those of pooling first, at half the cost). If the two
    inputs have a different number of frames (a temporal stride or an unpadded temporal kernel in L), each
    gets its own indices, from its pooled frames.
    With ``symmetric=True`` time is pooled together with space (Table VIc) and no frame is selected.

    Args:
        pool: one of ``mtnet_plugin.ops.POOL_METHODS`` ("softpool" is the paper's).
        symmetric: pool 2x2x2 windows over (T, H, W) instead of 2x2 per frame + selection.
        selection: "lowest" (the paper's text), "highest" (the authors' code) or "none" (no temporal
            reduction); must be "none" when ``symmetric``.
    """

    def __init__(self, pool: str = "softpool", symmetric: bool = False, selection: str = "lowest"):
        super().__init__()
        MTConvOptions(pool=pool, symmetric_pool=symmetric, selection=selection)  # validates the three
        self.pool = pool
        self.symmetric = symmetric
        self.selection = selection
        self.spatial_pool = SpatialPool(pool, symmetric)
        self.frame_select = FrameSelect(highest=selection == "highest") if selection != "none" else None

    def forward(self, a_in: torch.Tensor, a_local: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reduce the pair (a_in, a_L).

        Args:
            a_in: the input channels P reads, (N, C_in_P, T, H, W).
            a_local: the local branch output, (N, C_L, T_L, H_L, W_L).

        Returns:
            (reduced a_in, reduced a_L): (N, C_in_P, T', H', W') and (N, C_L, T_L', H_L', W_L'); T' is T2 when
            symmetric and T when selection is "none".
        """
        p_in = self.spatial_pool(a_in)
        if self.frame_select is None:
            return p_in, self.spatial_pool(a_local)
        idx, p_in_sel = self.frame_select(p_in)
        if int(a_local.shape[2]) == int(p_in.shape[2]):
            # Pooling is per frame, so pool only a_L's kept frames: the same values as pooling every frame
            # and selecting after, at half the cost (on the CPU the selection is fused into SoftPool).
            return p_in_sel, self.spatial_pool(a_local, frames=idx)
        # a_L has another frame count (temporal stride / unpadded kernel): its own indices (spec #5).
        _, p_local_sel = self.frame_select(self.spatial_pool(a_local))
        return p_in_sel, p_local_sel

    def extra_repr(self) -> str:
        return f"pool={self.pool!r}, symmetric={self.symmetric}, selection={self.selection!r}"


class TrilinearResize(nn.Module):
    """The I() of Eq. 3: trilinear interpolation to an exact (T, H, W), align_corners=False.

    The selected frames are not evenly spaced but are interpolated as if they were (the paper's choice).
    A tensor that already has the target size is returned as is.
    """

    def forward(self, x: torch.Tensor, size: Sequence[int], out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (N, C, t, h, w); size: (T, H, W). Returns (N, C, T, H, W), written into ``out`` when given (no
        autograd then; MTConv's eval path writes into its concatenated output)."""
        return trilinear_resize(x, size, out=out)
