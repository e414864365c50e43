"""FLOP counting for X3D and MTNet with fvcore: the handles fvcore lacks, and ``model_stats``.

Convention (the paper's, Sec. IV-C, and PySlowFast's): one multiply-add = one FLOP; batch 1; one view (one
clip, one crop); the model in eval mode. Every aten op the two networks emit is either counted or ignored
on purpose, so ``unsupported_ops`` is empty:

- fvcore's defaults: conv (``C_out * C_in / groups * k`` MACs per output position), linear / matmul,
  eval-mode BatchNorm (2 per element, as fvcore counts it).
- recurrent units (``aten::gru | lstm | rnn_tanh | rnn_relu``): the gate matmuls, i.e. per time step and
  sample the element count of every 2-D weight: ``G * (in * H + H * H)`` per layer and direction with
  G = 3 (GRU), 4 (LSTM), 1 (RNN). Bias adds and the gates' element-wise maths are not counted (below).
  A peephole LSTM written with ``nn.Linear`` is counted by the linear handle the same way.
- trilinear interpolation (``aten::upsample_trilinear3d``, I() of Eq. 4): 8 MACs per output element (a
  weighted sum of 8 neighbours; fvcore counts 4 for bilinear). Nearest: 1 per output element.
- accumulations (``sum``, ``mean``, vector norms, softmax's normaliser, average / adaptive-average pooling,
  cumulative sums): 1 MAC per input element, as fvcore counts ``adaptive_avg_pool2d``. This prices
  SoftPool (Eq. 5) at 2 MACs per input element (the weighted sum and the softmax normaliser), the cosine
  scores (Eq. 6) at ``C * (T * H * W + 2T - 1)`` per sample, SR's spatial squeeze and X3D's SE squeeze.
- ignored, element-wise: add, sub, mul, div, exp, sigmoid, SiLU (Swish), tanh, clamps, where, pow...:
  not multiply-adds of a product with weights or neighbours, O(activations), and left out by fvcore and by
  every published X3D / MTNet figure; this includes residual adds, SE / SR multiplications and the
  exponentials of SoftPool.
- ignored, no arithmetic: comparisons, max / amax / max pooling, topk / sort, gather / index_select,
  multinomial, shape and dtype ops.

``gflops_weighted`` (conv + linear/matmul + recurrent) is the number comparable to the X3D model zoo (which
excludes BN); ``gflops`` is the total under the rules above.
"""
from typing import Any, Dict, List, Sequence

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import elementwise_flop_counter, get_shape
from torch import nn


CONVENTION = (
    "fvcore FlopCountAnalysis, 1 multiply-add = 1 FLOP, batch 1, one view, eval mode; conv/linear/BN "
    "(fvcore), recurrent gate matmuls, trilinear 8/output, accumulations 1/input; element-wise ops ignored"
)

_RECURRENT_OPS = ("aten::gru", "aten::lstm", "aten::rnn_tanh", "aten::rnn_relu")
_ACCUMULATE_OPS = (
    "aten::sum", "aten::mean", "aten::norm", "aten::linalg_vector_norm", "aten::frobenius_norm",
    "aten::softmax", "aten::_softmax", "aten::log_softmax", "aten::cumsum",
    "aten::avg_pool2d", "aten::avg_pool3d", "aten::adaptive_avg_pool3d",
)
_ELEMENTWISE_IGNORED = (
    "aten::add", "aten::add_", "aten::sub", "aten::sub_", "aten::rsub", "aten::mul", "aten::mul_", "aten::div",
    "aten::div_", "aten::neg", "aten::exp", "aten::exp_", "aten::log", "aten::sigmoid", "aten::sigmoid_",
    "aten::silu", "aten::silu_", "aten::tanh", "aten::tanh_", "aten::hardtanh", "aten::hardtanh_",
    "aten::clamp_min", "aten::clamp_min_", "aten::clamp_max", "aten::where", "aten::pow", "aten::sqrt",
    "aten::rsqrt", "aten::reciprocal", "aten::abs", "aten::square", "aten::lerp", "aten::addcmul",
    "aten::fill_", "aten::zero_", "aten::masked_fill_", "aten::softplus",
)
_NO_ARITHMETIC_IGNORED = (
    "aten::amax", "aten::amin", "aten::max_pool2d", "aten::max_pool3d", "aten::max_pool3d_with_indices",
    "aten::topk", "aten::sort", "aten::argsort", "aten::argmax", "aten::argmin", "aten::index_select",
    "aten::take_along_dim", "aten::multinomial", "aten::lt", "aten::le", "aten::ne", "aten::logical_and",
    "aten::logical_or", "aten::logical_not", "aten::__or__", "aten::__xor__", "aten::bitwise_and",
    "aten::bitwise_or", "aten::ones_like", "aten::new_ones", "aten::empty_like", "aten::expand_as",
    "aten::repeat", "aten::flip", "aten::pad", "aten::feature_dropout", "aten::alpha_dropout",
    "aten::dropout_", "aten::clone", "aten::detach_", "aten::view_as", "aten::reshape_as", "aten::movedim",
    "aten::lift_fresh", "aten::rand", "aten::rand_like", "aten::randn", "aten::bernoulli",
    "aten::linspace", "aten::floor_divide_", "aten::sign", "aten::round", "aten::ceil", "aten::numel",
    "aten::scatter", "aten::scatter_", "aten::masked_select", "aten::repeat_interleave", "aten::tensor_split",
    "aten::broadcast_to", "aten::contiguous", "aten::resolve_conj", "aten::resolve_neg", "aten::unflatten",
    "prim::PythonOp.NoOpFunction",
)
_WEIGHTED_OPS = ("conv", "linear", "addmm", "matmul", "mm", "bmm", "einsum") + tuple(
    name.split("::")[1] for name in _RECURRENT_OPS
)


def _list_shapes(value: Any) -> List[List[int]]:
    """Shapes of the tensors in a traced ``Tensor[]`` argument (a ``prim::ListConstruct``)."""
    node = value.node()
    if node.kind() != "prim::ListConstruct":
        return []
    return [s for s in (get_shape(v) for v in node.inputs()) if s is not None]


def recurrent_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``aten::gru | lstm | rnn_tanh | rnn_relu`` (input overload): steps x batch x sum of 2-D weights.

    Signature: ``(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)``;
    input is (T, N, in), (N, T, in) when batch_first, or unbatched (T, in).
    """
    shape = get_shape(inputs[0])
    params = _list_shapes(inputs[2])
    if shape is None or not params:
        raise ValueError("recurrent op without a traced input shape or parameter list")
    batch_first = bool(inputs[8].toIValue())
    if len(shape) == 2:
        steps, batch = shape[0], 1
    else:
        steps, batch = (shape[1], shape[0]) if batch_first else (shape[0], shape[1])
    weights = sum(s[0] * s[1] for s in params if len(s) == 2)
    return steps * batch * weights


def _handles() -> Dict[str, Any]:
    handles: Dict[str, Any] = {name: recurrent_flop_jit for name in _RECURRENT_OPS}
    handles.update({name: elementwise_flop_counter(1, 0) for name in _ACCUMULATE_OPS})
    handles["aten::upsample_trilinear3d"] = elementwise_flop_counter(0, 8)
    handles["aten::upsample_nearest3d"] = elementwise_flop_counter(0, 1)
    handles.update({name: None for name in _ELEMENTWISE_IGNORED + _NO_ARITHMETIC_IGNORED})
    return handles


def flop_analysis(model: nn.Module, inputs: Sequence[torch.Tensor]) -> FlopCountAnalysis:
    """An fvcore ``FlopCountAnalysis`` with this module's handles installed (warnings off)."""
    analysis = FlopCountAnalysis(model, tuple(inputs)).set_op_handle(**_handles())
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


def _stage_pieces(model: nn.Module, x: torch.Tensor):
    """Yield (module, input, multiplicity) covering a VideoNet (s1, s2.., head) with each run of identical
    blocks in a stage represented once. Only the input shapes matter; a block whose shortcut is the
    identity keeps its input's shape, so it is not run again to produce the next input."""
    yield model.s1, x, 1
    x = model.s1(x)
    for i in range(model.num_stages):
        blocks = list(getattr(model, f"s{i + 2}").children())
        j = 0
        while j < len(blocks):
            same = j + 1
            while same < len(blocks) and repr(blocks[same]) == repr(blocks[j]) and j > 0:
                same += 1
            yield blocks[j], x, same - j
            if getattr(blocks[j], "has_shortcut", True):  # an identity shortcut means the shape is kept
                x = blocks[j](x)
            j = same
    yield model.head, x, 1


def _count(model: nn.Module, x: torch.Tensor, reuse_repeated_blocks: bool):
    """(total, by_op, unsupported) in FLOPs (not G)."""
    pieces = _stage_pieces(model, x) if reuse_repeated_blocks else [(model, x, 1)]
    total, by_op, unsupported = 0, {}, {}
    for module, inp, times in pieces:
        analysis = flop_analysis(module, (inp,))
        total += times * analysis.total()
        for op, v in analysis.by_operator().items():
            by_op[op] = by_op.get(op, 0) + times * v
        for op, v in analysis.unsupported_ops().items():
            unsupported[op] = unsupported.get(op, 0) + times * v
    return total, by_op, unsupported


def model_stats(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    input_channels: int = 3,
    reuse_repeated_blocks: bool = False,
) -> Dict[str, Any]:
    """Parameters and GFLOPs per view of ``model`` (see the module docstring for the convention).

    Args:
        model: any module taking (N, C, T, H, W); it is run once in eval mode, without gradients, on the
            device of its parameters, and put back in its previous mode.
        input_shape: one view, (C, T, H, W) or (T, H, W) (then C = ``input_channels``); batch 1 is added.
        input_channels: C when ``input_shape`` has 3 entries.
        reuse_repeated_blocks: for a ``VideoNet`` (stem ``s1``, stages ``s2``.., ``head``), trace each run of
            identical blocks of a stage once and multiply its count. Exact when a block's count depends only
            on its input shape, as for X3D and MTNet (frame selection changes which frames, never how many;
            a test checks the equality); several times faster for deep models.

    Returns:
        dict with ``params`` (int), ``gflops`` (total, float), ``gflops_weighted`` (conv + linear + recurrent,
        comparable to the X3D model zoo), ``gflops_by_op`` (dict), ``unsupported_ops`` (dict op -> count,
        empty when every op is handled), ``input_shape`` (C, T, H, W) and ``convention`` (str).
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (input_channels,) + shape
    if len(shape) != 4:
        raise ValueError(f"input_shape must be (C, T, H, W) or (T, H, W), got {tuple(input_shape)}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.rand((1,) + shape, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            total, by_op, unsupported = _count(model, x, reuse_repeated_blocks)
    finally:
        model.train(was_training)
    by_op = {k: v / 1e9 for k, v in by_op.items()}
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": total / 1e9,
        "gflops_weighted": sum(v for k, v in by_op.items() if k in _WEIGHTED_OPS),
        "gflops_by_op": by_op,
        "unsupported_ops": unsupported,
        "input_shape": shape,
        "convention": CONVENTION,
    }
