"""Temporal triplet cosine frame selection (Eq. 6-7, Sec. III-A, Fig. 3) of Stergiou & Poppe,
"Multi-Temporal Convolutions for Human Action Recognition in Videos", IJCNN 2021.

Shape legend: x is (N, C, T, H, W); T' = floor(T / 2) when T > 2, else T; M = T - 2 candidate frames.

Everything here is tensor ops without data-dependent Python control flow (only shapes steer it, read as
Python ints), so it traces (``torch.jit.trace``) and exports (``torch.onnx.export``, ``torch.export``) for
a fixed input shape. In eager fp32 on the CPU the selection runs instead in one call of the kernel
``csrc/select.c`` (:mod:`.native`), which gives the same indices (tests compare them).
"""
import torch

from . import native
from ._windows import compute_dtype, fp32_region, static_shape

COS_EPS = 1e-6  # spec #2 (csrc/select.c has the same)


def adjacent_cosine(x: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of adjacent frames' spatial sums (Eq. 6, spec #2).

    ``v_t = sum_{h,w} x[:, :, t]`` and ``c_t = <v_t, v_t+1> / (max(|v_t|, eps) * max(|v_t+1|, eps))``,
    in fp32 (float64 stays float64) with autocast off (spec #19); a zero vector gives c = 0, never NaN.

    Args:
        x: (N, C, T, H, W).

    Returns:
        (N, T - 1) in fp32 (float64 for float64 input).
    """
    with fp32_region(x):
        v = compute_dtype(x).sum(dim=(3, 4))  # (N, C, T)
        norm = v.norm(dim=1).clamp_min(COS_EPS)  # (N, T)
        dot = (v[:, :, :-1] * v[:, :, 1:]).sum(dim=1)  # (N, T - 1)
        return dot / (norm[:, :-1] * norm[:, 1:])


def triplet_scores(x: torch.Tensor) -> torch.Tensor:
    """Triplet score of each centre frame t = 1..T-2: ``c_t-1 + c_t`` (Eq. 7, spec #3).

    Args:
        x: (N, C, T, H, W) with T >= 3.

    Returns:
        (N, T - 2) in fp32; column j scores frame j + 1.
    """
    c = adjacent_cosine(x)
    return c[:, :-1] + c[:, 1:]


def triplet_cosine_select(x: torch.Tensor, highest: bool = False) -> torch.Tensor:
    """Indices of the floor(T/2) centre frames with the lowest triplet scores (Eq. 6-7, spec #1-#4).

    Only frames 1..T-2 are candidates (spec #3). Ties go to the earlier frame (stable, deterministic). The
    indices of each sample are its own and come back in ascending time order. When T <= 2 every frame is
    kept (spec #4).

    Args:
        x: (N, C, T, H, W).
        highest: keep the highest scores instead (the authors' public code; spec #1).

    Returns:
        LongTensor (N, T') of frame indices, ascending.
    """
    if native.applies(x):  # the same indices from one kernel call (csrc/select.c)
        return native.triplet_select(x, highest)
    n, _, t, _, _ = static_shape(x)
    if t <= 2:
        return torch.arange(t, device=x.device).unsqueeze(0).expand(n, t)
    keep = t // 2
    scores = triplet_scores(x)  # (N, M)
    if highest:
        scores = -scores
    m = t - 2
    pos = torch.arange(m, device=x.device)
    # rank_i = #{j : s_j < s_i} + #{j < i : s_j == s_i}: a strict total order with ties by time.
    s_i, s_j = scores.unsqueeze(2), scores.unsqueeze(1)  # (N, M, 1), (N, 1, M)
    earlier = (pos.unsqueeze(0) < pos.unsqueeze(1)).unsqueeze(0)  # [i, j] = j < i
    before = (s_j < s_i) | ((s_j == s_i) & earlier)
    rank = before.sum(dim=2)  # (N, M), a permutation of 0..M-1 per sample
    chosen = (rank < keep).long()  # exactly `keep` ones per row
    # Position of the k-th chosen candidate = number of candidates whose running count is still <= k.
    running = chosen.cumsum(dim=1)  # (N, M)
    slots = torch.arange(keep, device=x.device).view(1, keep, 1)
    idx = (running.unsqueeze(1) <= slots).sum(dim=2)  # (N, T')
    return idx + 1  # candidate j is frame j + 1


def select_frames(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gather frames per sample: ``out[n, :, k] = x[n, :, idx[n, k]]`` (the T() of Eq. 4).

    Args:
        x: (N, C, T, H, W).
        idx: LongTensor (N, T'), e.g. from :func:`triplet_cosine_select`.

    Returns:
        (N, C, T', H, W).
    """
    n, c, _, h, w = static_shape(x)
    keep = static_shape(idx)[1]
    if n == 1:  # one contiguous copy per frame; gather would read an (N, C, T', H, W) index as well
        return x.index_select(2, idx.reshape(keep))
    index = idx.view(n, 1, keep, 1, 1).expand(n, c, keep, h, w)
    return torch.gather(x, 2, index)
