"""SoftPool (Eq. 5, Sec. III-A) of Stergiou & Poppe, "Multi-Temporal Convolutions for Human Action
Recognition in Videos", IJCNN 2021; SoftPool itself is Stergiou, Poppe & Kalliatakis, "Refining activation
downsampling with SoftPool", ICCV 2021 (arXiv:2101.00440).

Shape legend: x is (N, C, T, H, W); H' = ceil(H / 2), W' = ceil(W / 2), T2 = ceil(T / 2).

Per-frame SoftPool (2x2 windows, optionally of selected frames) is the custom op ``mtnet::softpool2d`` with
its backward ``mtnet::softpool2d_backward`` (:mod:`._library`): the implementation runs the fused C kernel
of :mod:`.native` on eager fp32 CPU tensors (one pass over memory, frame selection fused in), else
element-wise ops over the window elements' strided views; its decomposition for ``torch.jit.trace`` and ONNX
is plain pooling-kernel ops that export and that the FLOP counter prices. The symmetric 2x2x2 variant has no
kernel: element-wise ops in eager (an autograd Function with the closed-form backward), the pooling-kernel
graph under tracers and compilers. All give the same values within float rounding (tests compare them, with
gradients; docs/benchmarks.md has the timings).
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import native
from ._library import add_decomposition, mode
from ._windows import compute_dtype, fp32_region, static_shape, window_sizes, window_view
from .frame_select import select_frames


def _window_weights(x: torch.Tensor, sizes) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Window view of x (padding 0), its unnormalised softmax weights e (padding 0) and their window sums.

    The per-window max comes from ``max_pool3d`` and the window sums from ``avg_pool3d`` (times the window
    size), contiguous pooling kernels that are several times faster on CPU than reductions over the strided
    dims of the 8-d window view; the max is broadcast back through that (free) view.
    """
    logits = window_view(x, sizes, float("-inf"))  # padding gets zero weight
    values = window_view(x, sizes, 0.0)  # 0 * e^-inf would be nan; use 0 instead
    n, c, t2, kt, h2, kh, w2, kw = static_shape(logits)
    padded = logits.reshape(n, c, t2 * kt, h2 * kh, w2 * kw)
    # The result does not depend on the shift, so the max carries no gradient (spec numerics: per window).
    shift = F.max_pool3d(padded.detach(), sizes, sizes).reshape(n, c, t2, 1, h2, 1, w2, 1)
    e = (logits - shift).exp()
    total = F.avg_pool3d(e.reshape(n, c, t2 * kt, h2 * kh, w2 * kw), sizes, sizes) * float(kt * kh * kw)
    return values, e, total.reshape(n, c, t2, 1, h2, 1, w2, 1)


def _window_sum(y: torch.Tensor, sizes) -> torch.Tensor:
    """Sum of each window of an 8-d window view y, (N, C, T2, H2, W2), with ``avg_pool3d``."""
    n, c, t2, kt, h2, kh, w2, kw = static_shape(y)
    return F.avg_pool3d(y.reshape(n, c, t2 * kt, h2 * kh, w2 * kw), sizes, sizes) * float(kt * kh * kw)


def _softpool_reference(x: torch.Tensor, sizes) -> torch.Tensor:
    """Eq. 5 with pooling kernels in plain differentiable ops: what tracers, exporters and compilers see."""
    values, e, total = _window_weights(x, sizes)
    n, c, t2, _, h2, _, w2, _ = static_shape(values)
    return _window_sum(e * values, sizes) / total.reshape(n, c, t2, h2, w2)


def _padded(x: torch.Tensor, sizes) -> Tuple[torch.Tensor, torch.Tensor]:
    """x padded at the far end to a multiple of the window: (logits padded with -inf, values padded with 0)."""
    n, c, t, h, w = static_shape(x)
    kt, kh, kw = sizes
    pad = (0, (-w) % kw, 0, (-h) % kh, 0, (-t) % kt)
    if not any(pad):
        return x, x
    return F.pad(x, pad, value=float("-inf")), F.pad(x, pad, value=0.0)


def _offsets(sizes) -> List[Tuple[int, int, int]]:
    kt, kh, kw = sizes
    return [(a, b, c) for a in range(kt) for b in range(kh) for c in range(kw)]


def _window_element(y: torch.Tensor, offset: Tuple[int, int, int], sizes) -> torch.Tensor:
    """Element ``offset`` of every window: a strided view (N, C, T2, H2, W2) of the padded y."""
    (a, b, c), (kt, kh, kw) = offset, sizes
    return y[:, :, a::kt, b::kh, c::kw]


def _softpool_pieces(x: torch.Tensor, sizes, for_backward: bool):
    """Eq. 5 as element-wise ops over the k window elements' strided views (k = 4 for 2x2): max, exp, weighted
    sums, each on window-sized tensors. On CPU this runs several times faster than pooling kernels or
    reductions over a window view. Returns (out, padded values, weight pieces e_i, their sum); without
    ``for_backward`` the pieces list is empty and the sum is not a separate tensor (forward only)."""
    logits, values = _padded(x, sizes)
    offsets = _offsets(sizes)
    shift = _window_element(logits, offsets[0], sizes)
    for o in offsets[1:]:  # per-window max (spec numerics); carries no gradient
        shift = torch.maximum(shift, _window_element(logits, o, sizes))
    pieces, num, total = [], None, None
    for o in offsets:
        e = (_window_element(logits, o, sizes) - shift).exp_()
        v = _window_element(values, o, sizes)
        if num is None:
            num, total = e * v, (e.clone() if for_backward else e)
        else:
            num.addcmul_(e, v)
            total.add_(e)
        if for_backward:
            pieces.append(e)
    out = num.div_(total)
    return out, values, pieces, total


class _SoftPoolFunction(torch.autograd.Function):
    """Eq. 5 with its closed-form gradient ``d out / d x_i = w_i (1 + x_i - out)`` (SoftPool paper, Eq. 5-6),
    both over the window elements' strided views: three window-sized ops per element in backward instead of
    autograd's chain through exp, mul, sum and div."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: Tuple[int, int, int]) -> torch.Tensor:
        out, values, pieces, total = _softpool_pieces(x, sizes, for_backward=True)
        ctx.sizes, ctx.shape = sizes, static_shape(x)
        ctx.save_for_backward(values, total, out, *pieces)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        values, total, out, *pieces = ctx.saved_tensors
        return _closed_form_grad(grad, values, total, out, pieces, ctx.sizes, ctx.shape), None


def _closed_form_grad(grad, values, total, out, pieces, sizes, shape) -> torch.Tensor:
    """``g_i = grad * w_i * (1 + x_i - out)`` over the window elements' strided views, from what
    :func:`_softpool_pieces` kept; the padding cropped off to ``shape``."""
    g = grad / total
    out_m1 = out - 1.0
    gx = torch.empty_like(values)
    for o, e in zip(_offsets(sizes), pieces):
        d = _window_element(gx, o, sizes)
        torch.sub(_window_element(values, o, sizes), out_m1, out=d)  # 1 + x_i - out
        d.mul_(e).mul_(g)  # * w_i * grad, w_i = e_i / total
    _, _, t, h, w = shape
    return gx[:, :, :t, :h, :w]


def _select(x: torch.Tensor, frames: Optional[torch.Tensor]) -> torch.Tensor:
    return x if frames is None else select_frames(x, frames.to(device=x.device, dtype=torch.int64))


def _softpool2d(x: torch.Tensor, frames: Optional[torch.Tensor]) -> torch.Tensor:
    """The implementation of ``mtnet::softpool2d``: the C kernel where it applies, else element-wise ops."""
    if native.kernel_eligible(x):
        return native.softpool2d_forward(x, frames)
    xs = _select(x, frames)
    return _softpool_pieces(xs, window_sizes(xs, False), for_backward=False)[0]


def _softpool2d_backward(x: torch.Tensor, grad: torch.Tensor, frames: Optional[torch.Tensor]) -> torch.Tensor:
    """The implementation of ``mtnet::softpool2d_backward``, ``g_i = grad w_i (1 + x_i - out)`` per window,
    zero on frames not selected and summed over a frame selected twice: the C kernel where it applies, else
    the closed form over the window elements' strided views (the window weights recomputed from x)."""
    if native.kernel_eligible(x):
        return native.softpool2d_backward(x, grad.float(), frames)
    xs = _select(x, frames)
    sizes = window_sizes(xs, False)
    out, values, pieces, total = _softpool_pieces(xs, sizes, for_backward=True)
    g = _closed_form_grad(grad.to(xs.dtype), values, total, out, pieces, sizes, static_shape(xs))
    if frames is None:
        return g
    n, c, t_out, h, w = static_shape(g)
    index = frames.to(device=x.device, dtype=torch.int64).view(n, 1, t_out, 1, 1).expand(n, c, t_out, h, w)
    return torch.zeros_like(x).scatter_add_(2, index, g)


def _softpool2d_decomposed(x: torch.Tensor, frames: Optional[torch.Tensor]) -> torch.Tensor:
    """``mtnet::softpool2d`` in plain differentiable aten ops (pooling kernels): for tracing and ONNX."""
    xs = _select(x, frames)
    return _softpool_reference(xs, window_sizes(xs, False))


@torch.library.custom_op("mtnet::softpool2d", mutates_args=())
def _softpool2d_op(x: torch.Tensor, frames: Optional[torch.Tensor]) -> torch.Tensor:
    return _softpool2d(x, frames)


@torch.library.custom_op("mtnet::softpool2d_backward", mutates_args=())
def _softpool2d_backward_op(x: torch.Tensor, grad: torch.Tensor, frames: Optional[torch.Tensor]) -> torch.Tensor:
    return _softpool2d_backward(x, grad, frames)


@_softpool2d_op.register_fake
def _(x: torch.Tensor, frames: Optional[torch.Tensor]) -> torch.Tensor:
    n, c, t, h, w = x.shape
    t_out = t if frames is None else frames.shape[1]
    return x.new_empty((n, c, t_out, (h + 1) // 2 if h > 1 else h, (w + 1) // 2 if w > 1 else w))


@_softpool2d_backward_op.register_fake
def _(x: torch.Tensor, grad: torch.Tensor, frames: Optional[torch.Tensor]) -> torch.Tensor:
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output) -> None:
    x, frames = inputs
    ctx.save_for_backward(x, frames)


def _backward(ctx, grad: torch.Tensor):
    x, frames = ctx.saved_tensors
    return torch.ops.mtnet.softpool2d_backward(x, grad, frames), None


_softpool2d_op.register_autograd(_backward, setup_context=_setup_context)
add_decomposition(torch.ops.mtnet.softpool2d.default, _softpool2d_decomposed)


class _SoftPool2dFunction(torch.autograd.Function):
    """``mtnet::softpool2d`` with its registered backward, for eager autograd without the dispatcher's cost;
    only x (and the frames) are saved, the backward recomputes each window's weights."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, frames: Optional[torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(x, frames)
        return _softpool2d(x, frames)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, frames = ctx.saved_tensors
        return _softpool2d_backward(x, grad, frames), None


def softpool2d(x: torch.Tensor, frames: Optional[torch.Tensor] = None) -> torch.Tensor:
    """SoftPool over 2x2 windows of each frame of x (N, C, T, H, W) in fp32 or float64, of the frames
    ``frames`` (N, T') per sample when given: the op's one door (module docstring)."""
    run = mode()
    if run == "trace":
        return _softpool2d_decomposed(x, frames)
    if run == "graph":
        return torch.ops.mtnet.softpool2d(x, frames)
    if x.requires_grad and torch.is_grad_enabled():
        return _SoftPool2dFunction.apply(x, frames)
    return _softpool2d(x, frames)


def _eager(x: torch.Tensor) -> bool:
    """Eager execution, where the fast element-wise path runs; tracers and compilers get the pooling-kernel
    graph instead (exportable, and priced by the FLOP counter as 2 accumulations per input element)."""
    return mode() == "eager"


def _softpool(x: torch.Tensor, pool_time: bool, frames: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Softmax-weighted window sum; per-window max subtracted before exp (spec numerics). With ``frames``
    (N, T'), only those frames of each sample are pooled (the same as selecting them first)."""
    sizes = window_sizes(x, pool_time)
    with fp32_region(x):
        xf = compute_dtype(x)
        if sizes[0] == 1:  # per-frame windows: the softpool2d op
            return softpool2d(xf, frames).to(x.dtype)
        if frames is not None:
            xf = select_frames(xf, frames)
        if not _eager(xf):
            out = _softpool_reference(xf, sizes)
        elif xf.requires_grad and torch.is_grad_enabled():
            out = _SoftPoolFunction.apply(xf, sizes)
        else:
            out = _softpool_pieces(xf, sizes, for_backward=False)[0]
    return out.to(x.dtype)


def softpool_spatial(x: torch.Tensor, frames: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Softmax-weighted 2x2 pooling of each frame (Eq. 5, Sec. III-A).

    ``out = sum_i softmax(x_R)_i * x_i`` per channel, frame and 2x2 window R. Windows that overhang an odd
    edge use only their in-bounds elements, which get all the softmax weight; a dimension of size 1 is not
    pooled (spec #6). Computed in fp32 with autocast off (spec #19), subtracting each window's max, so any
    magnitude is safe; the gradient is ``d out / d x_i = w_i (1 + x_i - out)``.

    Args:
        x: (N, C, T, H, W), any float dtype.
        frames: optional LongTensor (N, T') of distinct frame indices per sample: pool only those, the same
            as ``softpool_spatial(select_frames(x, frames))`` (fused into the kernel on the CPU).

    Returns:
        (N, C, T, H', W') in the dtype of x; (N, C, T', H', W') with ``frames``.
    """
    return _softpool(x, pool_time=False, frames=frames)


def softpool_symmetric(x: torch.Tensor) -> torch.Tensor:
    """SoftPool over 2x2x2 windows of (T, H, W): the "symmetric" ablation of Table VIc.

    Same rules as :func:`softpool_spatial` (ceil mode, size-1 dimensions kept, fp32), time included.

    Args:
        x: (N, C, T, H, W).

    Returns:
        (N, C, T2, H', W') in the dtype of x.
    """
    return _softpool(x, pool_time=True)
