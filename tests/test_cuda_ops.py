"""Each MTNet op on the device against the CPU path on the same inputs: values and gradients within OP_TOL
(tests/cuda_helpers.py), and the same selected frames on inputs whose triplet scores are well apart.

On CUDA the device path is the CUDA run; on the CPU it is the eager PyTorch code CUDA runs (the C kernels off),
so CI runs every test body. The CPU reference is the default CPU path (the C kernels where they are built).
"""
import copy

import pytest
import torch

from mtnet_plugin.layers import SqueezeRecursion
from mtnet_plugin.ops import (
    select_frames,
    softpool_spatial,
    softpool_symmetric,
    trilinear_resize,
    triplet_cosine_select,
)

from cuda_helpers import (
    OP_TOL,
    assert_close,
    device_params,
    device_path,
    expected_selection,
    selection_margin,
    well_separated_clip,
)

DEVICES = device_params()


def _both(fn, x, device, dtype=torch.float32, grad_seed=1):
    """fn on the CPU path (fp32 ``x``) and on ``device`` (``x`` cast to ``dtype``), with the gradient of a fixed
    random upstream gradient. Returns ((out_cpu, grad_cpu), (out_dev, grad_dev))."""
    x_cpu = x.clone().to(dtype).float().requires_grad_(True)  # the same (rounded) values on both sides
    out_cpu = fn(x_cpu)
    g = torch.randn(out_cpu.shape, generator=torch.Generator().manual_seed(grad_seed))
    out_cpu.backward(g)
    with device_path(device):
        x_dev = x.clone().to(dtype).to(device).requires_grad_(True)
        out_dev = fn(x_dev)
        out_dev.backward(g.to(device, out_dev.dtype))
    return (out_cpu, x_cpu.grad), (out_dev, x_dev.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("shape", [(2, 5, 6, 9, 11), (1, 3, 4, 2, 1), (2, 4, 3, 56, 56)])
@pytest.mark.parametrize("device", DEVICES)
def test_softpool_matches_the_cpu_path(device, shape, dtype):
    x = 3.0 * torch.randn(shape, generator=torch.Generator().manual_seed(0))
    (ref, ref_grad), (out, grad) = _both(softpool_spatial, x, device, dtype)
    assert out.device.type == device and out.dtype == dtype
    assert_close(out, ref, f"softpool_spatial {shape} {dtype}", OP_TOL[dtype])
    assert_close(grad, ref_grad, f"softpool_spatial gradient {shape} {dtype}", OP_TOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
def test_softpool_of_selected_frames_and_symmetric_match_the_cpu_path(device):
    x = 2.0 * torch.randn(2, 6, 8, 14, 14, generator=torch.Generator().manual_seed(2))
    frames = torch.tensor([[1, 2, 5, 6], [0, 3, 4, 7]])
    (ref, ref_grad), (out, grad) = _both(lambda v: softpool_spatial(v, frames=frames.to(v.device)), x, device)
    assert out.shape == (2, 6, 4, 7, 7)
    assert_close(out, ref, "softpool_spatial(frames=...)", OP_TOL[torch.float32])
    assert_close(grad, ref_grad, "softpool_spatial(frames=...) gradient", OP_TOL[torch.float32])
    assert float(grad[:, :, [2, 3]].abs().sum()) > 0 and float(grad[0, :, 0].abs().sum()) == 0  # unselected: 0
    (ref, ref_grad), (out, grad) = _both(softpool_symmetric, x[:, :, :7, :13, :13], device)
    assert_close(out, ref, "softpool_symmetric", OP_TOL[torch.float32])
    assert_close(grad, ref_grad, "softpool_symmetric gradient", OP_TOL[torch.float32])


@pytest.mark.parametrize("highest", [False, True])
@pytest.mark.parametrize("frames", [3, 6, 13, 16])
@pytest.mark.parametrize("device", DEVICES)
def test_frame_selection_picks_the_same_frames(device, frames, highest):
    x = well_separated_clip(2, 8, frames, 5, 7, margin=0.05, seed=frames)
    assert selection_margin(x) >= 0.05
    expected = expected_selection(x, highest)  # float64 numpy, independent of the op
    ref = triplet_cosine_select(x, highest=highest)
    with device_path(device):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):  # a 0.05 gap survives half rounding
            got = triplet_cosine_select(x.to(device, dtype), highest=highest)
            assert got.device.type == device and got.dtype == torch.long
            assert torch.equal(got.cpu(), expected), (dtype, got, expected)
    assert torch.equal(ref, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_frame_gather_values_and_gradient_match_the_cpu_path(device):
    x = well_separated_clip(3, 4, 16, 6, 6, seed=5)
    idx = expected_selection(x)
    (ref, ref_grad), (out, grad) = _both(lambda v: select_frames(v, idx.to(v.device)), x, device)
    assert out.shape == (3, 4, 8, 6, 6)
    assert torch.equal(out.detach().cpu(), ref.detach())  # a gather: exact
    assert_close(grad, ref_grad, "select_frames gradient", OP_TOL[torch.float32])
    one = x[:1]  # one sample takes index_select instead of gather
    (ref, ref_grad), (out, grad) = _both(lambda v: select_frames(v, idx[:1].to(v.device)), one, device)
    assert torch.equal(out.detach().cpu(), ref.detach())
    assert_close(grad, ref_grad, "select_frames (one sample) gradient", OP_TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("sizes", [((3, 5, 6), (6, 10, 11)), ((8, 28, 28), (16, 56, 56)), ((2, 1, 1), (4, 2, 2))])
@pytest.mark.parametrize("device", DEVICES)
def test_trilinear_resize_matches_the_cpu_path(device, sizes, dtype):
    src, dst = sizes
    x = torch.randn((2, 4) + src, generator=torch.Generator().manual_seed(3))
    (ref, ref_grad), (out, grad) = _both(lambda v: trilinear_resize(v, dst), x, device, dtype)
    assert out.shape == (2, 4) + dst and out.dtype == dtype
    assert_close(out, ref, f"trilinear_resize {sizes} {dtype}", OP_TOL[dtype])
    assert_close(grad, ref_grad, f"trilinear_resize gradient {sizes} {dtype}", OP_TOL[dtype])


@pytest.mark.parametrize("cell,layers", [("gru", 2), ("gru", 1), ("lstm", 2)])
@pytest.mark.parametrize("device", DEVICES)
def test_squeeze_recursion_matches_the_cpu_path(device, cell, layers):
    """The recurrent unit (cuDNN on CUDA, the C kernel or nn.GRU on the CPU): output, input and weight
    gradients; and under autocast it still runs in fp32 (spec #19), so AMP changes nothing for fp32 input."""
    torch.manual_seed(0)
    sr = SqueezeRecursion(24, cell=cell, num_layers=layers)
    x = torch.randn(2, 24, 8, 5, 5, generator=torch.Generator().manual_seed(4))
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    x_cpu = x.clone().requires_grad_(True)
    ref = sr(x_cpu)
    ref.backward(g)
    ref_w = {k: p.grad.clone() for k, p in sr.named_parameters()}
    dev = copy.deepcopy(sr).to(device)
    dev.zero_grad(set_to_none=True)
    with device_path(device):
        x_dev = x.clone().to(device).requires_grad_(True)
        out = dev(x_dev)
        out.backward(g.to(device))
        tol = OP_TOL[torch.float32]
        assert_close(out, ref, f"SqueezeRecursion({cell}, {layers})", tol)
        assert_close(x_dev.grad, x_cpu.grad, "SqueezeRecursion input gradient", tol)
        for k, p in dev.named_parameters():
            assert_close(p.grad, ref_w[k], f"SqueezeRecursion gradient of {k}", tol)
        for amp in (torch.float16, torch.bfloat16):
            with torch.autocast(device, dtype=amp):
                out_amp = dev(x.to(device))
                out_half = dev(x.to(device, amp))  # activations arrive in half under AMP
            assert out_amp.dtype == torch.float32 and out_half.dtype == amp
            assert_close(out_amp, ref, f"SqueezeRecursion under {amp} autocast, fp32 input", tol)
            assert_close(out_half, ref, f"SqueezeRecursion under {amp} autocast, {amp} input", OP_TOL[amp])
