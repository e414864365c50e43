"""Temporal triplet cosine frame selection (Eq. 6-7, Sec. III-A, Fig. 3) of Stergiou & Poppe,
"Multi-Temporal Convolutions for Human Action Recognition in Videos", IJCNN 2021.

Shape legend: x is (N, C, T, H, W); T' = floor(T / 2) when T > 2, else T; M = T - 2 candidate frames.

The selection is the custom op ``mtnet::triplet_select`` (:mod:`._library`): in eager fp32 on the CPU it runs
in one call of the kernel ``csrc/select.c`` (:mod:`.native`), elsewhere as the tensor version below, which is
also its decomposition for tracing and ONNX (tensor ops without data-dependent Python control flow, only
shapes read as Python ints, so it exports for a fixed input shape).

One answer on every path: the scores are computed in float64 (the spatial sums accumulate in float64) and
rounded to a multiple of ``2**-SCORE_BITS`` before ranking, here and in csrc/select.c. Different summation
orders (C loop, CPU and CUDA reductions, onnxruntime) move a float64 score by ~1e-16, far below the step
(~1e-9), so near-tied frames of low-motion clips rank the same everywhere; fp32 scores (steps of ~1e-7 near
2) flipped them between paths. Devices without float64 (MPS) sum in fp32 and rank on the CPU.
"""
import torch

from . import native
from ._library import add_decomposition, mode
from ._windows import compute_dtype, fp32_region, static_shape

COS_EPS = 1e-6  # spec #2 (csrc/select.c has the same)
SCORE_BITS = 30  # scores are ranked as round(score * 2**SCORE_BITS) (csrc/select.c has the same)


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


def selection_scores(x: torch.Tensor, highest: bool = False) -> torch.Tensor:
    """The ranking keys of :func:`triplet_cosine_select`: Eq. 7's triplet scores in float64, rounded to
    multiples of ``2**-SCORE_BITS`` and scaled by ``2**SCORE_BITS`` (integers held in float64), negated when
    ``highest``. x: (N, C, T, H, W) with T >= 3. Returns (N, T - 2); column j ranks frame j + 1."""
    with fp32_region(x):
        if x.device.type == "mps":  # no float64 there
            v = compute_dtype(x).sum(dim=(3, 4)).cpu().double()
        else:
            v = x.sum(dim=(3, 4), dtype=torch.float64)  # (N, C, T), accumulated in float64
        norm = v.norm(dim=1).clamp_min(COS_EPS)  # (N, T)
        c = (v[:, :, :-1] * v[:, :, 1:]).sum(dim=1) / (norm[:, :-1] * norm[:, 1:])  # (N, T - 1)
        keys = torch.round((c[:, :-1] + c[:, 1:]) * float(2**SCORE_BITS))
    return -keys if highest else keys


def _select_tensor(x: torch.Tensor, highest: bool) -> torch.Tensor:
    """The tensor version of the selection (eager off the kernel, and the decomposition for trace / ONNX)."""
    n, _, t, _, _ = static_shape(x)
    if t <= 2:
        return torch.arange(t, device=x.device).unsqueeze(0).expand(n, t).contiguous()
    keep = t // 2
    scores = selection_scores(x, highest)  # (N, M)
    m = t - 2
    pos = torch.arange(m, device=scores.device)
    # rank_i = #{j : s_j < s_i} + #{j < i : s_j == s_i}: a strict total order with ties by time.
    s_i, s_j = scores.unsqueeze(2), scores.unsqueeze(1)  # (N, M, 1), (N, 1, M)
    earlier = (pos.unsqueeze(0) < pos.unsqueeze(1)).unsqueeze(0)  # [i, j] = j < i
    before = (s_j < s_i) | ((s_j == s_i) & earlier)
    rank = before.sum(dim=2)  # (N, M), a permutation of 0..M-1 per sample
    chosen = (rank < keep).long()  # exactly `keep` ones per row
    # Position of the k-th chosen candidate = number of candidates whose running count is still <= k.
    running = chosen.cumsum(dim=1)  # (N, M)
    slots = torch.arange(keep, device=scores.device).view(1, keep, 1)
    idx = (running.unsqueeze(1) <= slots).sum(dim=2)  # (N, T')
    return (idx + 1).to(x.device)  # candidate j is frame j + 1


def _select(x: torch.Tensor, highest: bool) -> torch.Tensor:
    """The implementation of ``mtnet::triplet_select``: the C kernel where it applies, else the tensor version."""
    if native.kernel_eligible(x):
        return native.triplet_select(x, highest)
    return _select_tensor(x, highest)


@torch.library.custom_op("mtnet::triplet_select", mutates_args=())
def _triplet_select_op(x: torch.Tensor, highest: bool) -> torch.Tensor:
    return _select(x, highest)


@_triplet_select_op.register_fake
def _(x: torch.Tensor, highest: bool) -> torch.Tensor:
    n, t = x.shape[0], x.shape[2]
    return x.new_empty((n, t if t <= 2 else t // 2), dtype=torch.int64)


add_decomposition(torch.ops.mtnet.triplet_select.default, _select_tensor)


def triplet_cosine_select(x: torch.Tensor, highest: bool = False) -> torch.Tensor:
    """Indices of the floor(T/2) centre frames with the lowest triplet scores (Eq. 6-7, spec #1-#4).

    Only frames 1..T-2 are candidates (spec #3). The scores are ranked in float64, rounded to multiples of
    ``2**-SCORE_BITS`` (module docstring); ties go to the earlier frame (stable, deterministic). The
    indices of each sample are its own and come back in ascending time order. When T <= 2 every frame is
    kept (spec #4). The same indices on every path: C kernel, eager CPU / CUDA, compiled, traced, exported.

    Args:
        x: (N, C, T, H, W).
        highest: keep the highest scores instead (the authors' public code; spec #1).

    Returns:
        LongTensor (N, T') of frame indices, ascending.
    """
    run = mode()
    if run == "trace":
        return _select_tensor(x, highest)
    if run == "graph":
        return torch.ops.mtnet.triplet_select(x, highest)
    return _select(x, highest)


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
