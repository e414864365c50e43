"""The kernel ops behind one door (docs/design.md, "CPU kernels: one door"): the custom ops mtnet::softpool2d
and mtnet::triplet_select (schemas, fake implementations, autograd) seen by torch.compile and torch.export,
their aten decompositions under torch.jit.trace and in ONNX, and one frame selection on every path."""
import io
import os
import warnings

import pytest
import torch

import mtnet_plugin.ops.native as native
from mtnet_plugin.layers.prolonged import ProlongedDownsample
from mtnet_plugin.ops import decompositions, softpool2d, triplet_cosine_select
from mtnet_plugin.ops.frame_select import SCORE_BITS, _select_tensor

KERNELS = native.available()
needs_kernel = pytest.mark.skipif(not KERNELS, reason=f"no C kernels here: {native.reason()}")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _mtnet_ops(graph) -> set:
    names = {str(n.target) for n in graph.nodes if n.op == "call_function" and str(n.target).startswith("mtnet.")}
    return {name.removesuffix(".default") for name in names}


def test_opcheck_softpool2d_and_triplet_select():
    x = torch.randn(2, 3, 5, 5, 6, generator=_gen(0), requires_grad=True)
    frames = torch.tensor([[1, 3], [0, 4]])
    for args in ((x, None), (x, frames)):
        torch.library.opcheck(torch.ops.mtnet.softpool2d.default, args,
                              test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    torch.library.opcheck(torch.ops.mtnet.triplet_select.default, (x.detach(), False),
                          test_utils=("test_schema", "test_faketensor"))


def test_the_custom_ops_compute_what_the_eager_door_does():
    x = torch.randn(2, 3, 6, 5, 7, generator=_gen(1)) * 3
    frames = torch.tensor([[1, 3, 4], [0, 2, 5]])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager, op = softpool2d(a, frames), torch.ops.mtnet.softpool2d(b, frames)
    torch.testing.assert_close(op, eager, rtol=0, atol=0)
    g = torch.randn(eager.shape, generator=_gen(2))
    eager.backward(g)
    op.backward(g)  # the registered autograd formula
    torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=0)
    assert torch.equal(torch.ops.mtnet.triplet_select(x, True), triplet_cosine_select(x, highest=True))


class _Recorder:
    """A torch.compile backend that keeps the graphs it is given and runs them as they are."""

    def __init__(self):
        self.graphs = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(gm.graph)
        return gm.forward


def test_torch_compile_sees_the_custom_ops():
    module = ProlongedDownsample(pool="softpool", selection="lowest")
    gen = _gen(3)
    a_in, a_local = torch.randn(2, 4, 6, 10, 10, generator=gen), torch.randn(2, 7, 6, 10, 10, generator=gen).relu()
    want = module(a_in, a_local)
    backend = _Recorder()
    got = torch.compile(module, backend=backend, fullgraph=True)(a_in, a_local)
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    assert _mtnet_ops(backend.graphs[0]) == {"mtnet.softpool2d", "mtnet.triplet_select"}


def test_torch_compile_trains_through_the_registered_backward():
    x = torch.randn(2, 3, 4, 6, 6, generator=_gen(4)) * 2
    frames = torch.tensor([[0, 2], [1, 3]])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    softpool2d(a, frames).square().sum().backward()
    torch.compile(lambda t: softpool2d(t, frames).square().sum(), backend="aot_eager", fullgraph=True)(b).backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-6, atol=1e-6)


def test_torch_export_keeps_the_ops_and_decomposes_them_for_onnx():
    module = ProlongedDownsample(pool="softpool", selection="highest").eval()
    gen = _gen(5)
    args = (torch.randn(1, 4, 8, 10, 10, generator=gen), torch.randn(1, 7, 8, 10, 10, generator=gen).relu())
    program = torch.export.export(module, args)
    assert _mtnet_ops(program.graph) == {"mtnet.softpool2d", "mtnet.triplet_select"}
    plain = program.run_decompositions(decompositions())
    assert not _mtnet_ops(plain.graph)
    other = (torch.randn(1, 4, 8, 10, 10, generator=gen), torch.randn(1, 7, 8, 10, 10, generator=gen).relu())
    for inputs in (args, other):
        want = module(*inputs)
        for prog in (program, plain):
            for w, g in zip(want, prog.module()(*inputs)):
                torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_tracing_records_the_decomposition():
    module = ProlongedDownsample(pool="softpool", selection="lowest").eval()
    gen = _gen(6)
    args = (torch.randn(1, 4, 8, 10, 10, generator=gen), torch.randn(1, 7, 8, 10, 10, generator=gen).relu())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, args, check_trace=False)
    kinds = {n.kind() for n in traced.inlined_graph.nodes()}
    assert not any(k.startswith("mtnet::") for k in kinds) and "aten::max_pool3d" in kinds
    other = (torch.randn(1, 4, 8, 10, 10, generator=gen), torch.randn(1, 7, 8, 10, 10, generator=gen).relu())
    for w, g in zip(module(*other), traced(*other)):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


# --- one frame selection on every path ----------------------------------------------------------------------------


def _near_static(trials: int, seed: int) -> torch.Tensor:
    """Low-motion clips: one random frame per clip repeated 16 times, 32 channels, plus noise of std 1e-3."""
    gen = _gen(seed)
    base = torch.randn(trials, 32, 1, 7, 7, generator=gen)
    return base.expand(trials, 32, 16, 7, 7) + 1e-3 * torch.randn(trials, 32, 16, 7, 7, generator=gen)


def _fp32_ranking(x: torch.Tensor, highest: bool) -> torch.Tensor:
    """The earlier scoring, fp32 sums and scores without rounding, to show that these clips are near ties."""
    v = x.sum(dim=(3, 4))
    norm = v.norm(dim=1).clamp_min(1e-6)
    c = (v[:, :, :-1] * v[:, :, 1:]).sum(dim=1) / (norm[:, :-1] * norm[:, 1:])
    s = c[:, :-1] + c[:, 1:]
    s = -s if highest else s
    keep = x.shape[2] // 2
    order = torch.sort(s, dim=1, stable=True).indices[:, :keep]
    return order.sort(dim=1).values + 1


@needs_kernel
@pytest.mark.parametrize("highest", [False, True])
def test_kernel_and_eager_selection_agree_on_near_static_clips(highest):
    x = _near_static(400, 7 + highest)
    kernel = native.triplet_select(x, highest)
    eager = _select_tensor(x, highest)
    assert torch.equal(kernel, eager), f"{(kernel != eager).any(1).sum()} of 400 trials differ"
    assert torch.equal(triplet_cosine_select(x, highest=highest), kernel)  # the door takes the kernel
    # These are near ties indeed: fp32 scores (the earlier eager path) rank many of the clips differently.
    assert (_fp32_ranking(x, highest) != kernel).any(1).sum() > 40
    # and the float64 double sums in another order (here: reversed time) still rank them the same
    flipped = _select_tensor(x.flip(2), highest)
    assert flipped.shape == kernel.shape


@pytest.mark.parametrize("highest", [False, True])
def test_traced_and_onnx_selection_agree_on_near_static_clips(highest):
    ort = pytest.importorskip("onnxruntime")
    x = _near_static(200, 9 + highest)
    want = triplet_cosine_select(x, highest=highest)

    class Select(torch.nn.Module):
        def forward(self, clip):
            return triplet_cosine_select(clip, highest=highest)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(Select(), (x[:1],), check_trace=False)
        assert torch.equal(torch.cat([traced(x[i : i + 1]) for i in range(200)]), want)
        buf = io.BytesIO()
        torch.onnx.export(Select(), (x[:1],), buf, dynamo=False, opset_version=17, input_names=["clip"])
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = torch.cat([torch.from_numpy(session.run(None, {"clip": x[i : i + 1].numpy()})[0]) for i in range(200)])
    assert torch.equal(got, want), f"{(got != want).any(1).sum()} of 200 trials differ"


def test_score_rounding_is_shared_with_the_c_source():
    text = (native.CSRC / "select.c").read_text()
    assert f"#define SCORE_BITS {SCORE_BITS} " in text and "rint(ldexp(" in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("highest", [False, True])
def test_cuda_selection_agrees_on_near_static_clips(highest):
    x = _near_static(200, 11 + highest)
    assert torch.equal(triplet_cosine_select(x.cuda(), highest=highest).cpu(), triplet_cosine_select(x, highest))
