"""What every C kernel entry point checks before C touches memory (mtnet_plugin/ops/native.py): the legal but
unusual tensors that once read or wrote out of bounds (zero-size dimensions, side tensors of the wrong length,
expanded tensors, overlapping outputs, repeated frame indices) give a clear error or the correct result."""
import math
import os
import shutil

import pytest
import torch
import torch.nn.functional as F

import mtnet_plugin.ops.native as native
from mtnet_plugin.ops import gru_sequence, norm_act_into, softpool_spatial, triplet_cosine_select, trilinear_resize

needs_kernel = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None
                                  or os.environ.get("MTNET_NATIVE", "1") == "0" or not native.available(),
                                  reason="no C kernels here")
pytestmark = needs_kernel


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# --- zero-size dimensions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,size", [((1, 1, 0, 4, 4), (2, 4, 4)), ((2, 3, 2, 4, 0), (2, 4, 4096)),
                                        ((1, 1, 2, 2, 2), (0, 4, 4))])
def test_trilinear_resize_of_a_zero_size_dimension_is_an_error(shape, size):
    # Once: garbage, a segfault, a heap write in backward. Now F.interpolate's error, before any C runs.
    with pytest.raises((RuntimeError, ValueError), match="greater than 0|> 0"):
        trilinear_resize(torch.zeros(shape), size)
    x = torch.zeros(shape, requires_grad=True)
    with pytest.raises((RuntimeError, ValueError), match="greater than 0|> 0"):
        trilinear_resize(x, size)
    with pytest.raises(ValueError, match="> 0"):  # the kernel's own entry points refuse them as well
        native.trilinear_forward(torch.zeros(shape), size)
    with pytest.raises(ValueError, match="> 0"):
        native.trilinear_backward(torch.zeros(1, 1, 2, 4, 4), (0, 4, 4))


def test_trilinear_resize_of_an_empty_batch_and_its_backward():
    x = torch.zeros(0, 3, 2, 3, 3, requires_grad=True)
    out = trilinear_resize(x, (4, 6, 6))
    assert out.shape == (0, 3, 4, 6, 6)
    out.sum().backward()
    assert x.grad.shape == x.shape
    assert native.trilinear_backward(torch.zeros(2, 0, 4, 6, 6), (2, 3, 3)).shape == (2, 0, 2, 3, 3)


@pytest.mark.parametrize("shape", [(1, 2, 0, 4, 4), (1, 2, 3, 0, 4), (1, 2, 3, 4, 0), (0, 2, 3, 4, 4)])
def test_softpool_of_a_zero_size_dimension(shape):
    x = torch.zeros(shape, requires_grad=True)
    out = softpool_spatial(x)
    n, c, t, h, w = shape
    assert out.shape == (n, c, t, math.ceil(h / 2) if h > 1 else h, math.ceil(w / 2) if w > 1 else w)
    out.sum().backward()
    assert x.grad.shape == x.shape and not x.grad.any()
    assert native.softpool2d_backward(x.detach(), torch.zeros(out.shape)).shape == x.shape


def test_softpool_of_no_frames():
    x = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    out = softpool_spatial(x, torch.zeros(2, 0, dtype=torch.long))
    assert out.shape == (2, 3, 0, 2, 2)
    out.sum().backward()
    assert not x.grad.any()


@pytest.mark.parametrize("shape", [(0, 3, 6, 2, 2), (2, 0, 6, 2, 2), (2, 3, 6, 0, 2), (2, 3, 0, 2, 2)])
def test_frame_selection_of_a_zero_size_dimension(monkeypatch, shape):
    x = torch.zeros(shape)
    fast = triplet_cosine_select(x)
    monkeypatch.setattr(native, "available", lambda: False)
    assert torch.equal(fast, triplet_cosine_select(x))


def test_gru_of_an_empty_batch():
    gru = torch.nn.GRU(4, 4, num_layers=2, batch_first=True)
    weights = [p for p in gru.parameters()]
    x = torch.zeros(0, 5, 4, requires_grad=True)
    out = gru_sequence(x, weights, 2)
    assert out.shape == (0, 5, 4)
    out.sum().backward()


# --- side tensors of the wrong length --------------------------------------------------------------------------


@pytest.mark.parametrize("length", [3, 5])
def test_affine_act_into_checks_scale_and_shift_lengths(length):
    # The kernel reads scale[c] and shift[c] for every channel: a shorter tensor read past its end (garbage,
    # a segfault at C = 2**22).
    z = torch.randn(2, 4, 3, 5, 5)
    out = torch.empty_like(z)
    with pytest.raises(ValueError, match="scale must have shape \\(4,\\)"):
        native.affine_act_into(z, torch.ones(length), torch.zeros(4), out, True)
    with pytest.raises(ValueError, match="shift must have shape \\(4,\\)"):
        native.affine_act_into(z, torch.ones(4), torch.zeros(length), out, True)
    with pytest.raises(ValueError, match="scale"):
        native.affine_act_into(z, torch.ones(1, 4), torch.zeros(4), out, True)


def test_affine_act_into_with_many_channels_and_two_scales():
    z = torch.zeros(1, 1 << 22, 1)
    with pytest.raises(ValueError, match="one value per channel"):
        native.affine_act_into(z, torch.ones(2), torch.zeros(2), torch.empty_like(z), True)


def test_gru_backward_with_an_expanded_saved_tensor_and_wrong_weights():
    h, n, t = 4, 3, 5
    gen = _gen(1)
    gi = torch.randn(n, t, 3 * h, generator=gen)
    w_hh, b_hh = torch.randn(3 * h, h, generator=gen), torch.randn(3 * h, generator=gen)
    out, saved = native.gru_layer_forward(gi, w_hh, b_hh, save=True)
    dout = torch.randn(n, t, h, generator=gen)
    # an expanded (stride-0) saved tensor: read through its real layout (it once segfaulted)
    expanded = saved[:1, :1].expand(n, t, 4 * h)
    assert expanded.stride()[:2] == (0, 0)
    got = native.gru_layer_backward(dout, w_hh, out, expanded)
    want = native.gru_layer_backward(dout, w_hh, out, expanded.contiguous())
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    for bad in (torch.randn(3 * h, h + 1), torch.randn(h, 3 * h), torch.randn(3 * h)):
        with pytest.raises(ValueError, match="w_hh must be"):
            native.gru_layer_backward(dout, bad, out, saved)
        with pytest.raises(ValueError, match="w_hh must be"):
            native.gru_layer_forward(gi, bad, b_hh, save=False)
    with pytest.raises(ValueError, match="b_hh must be"):
        native.gru_layer_forward(gi, w_hh, torch.randn(3 * h + 1), save=False)


# --- outputs that overlap themselves or an input ------------------------------------------------------------------


def test_an_expanded_output_is_refused():
    # copy_ refuses to write one address twice; so do the kernels (once written silently)
    x = torch.randn(2, 3, 2, 3, 4)
    expanded = torch.empty(1, 3, 4, 6, 8).expand(2, 3, 4, 6, 8)
    with pytest.raises(ValueError, match="overlaps itself"):
        native.trilinear_forward(x, (4, 6, 8), out=expanded)
    with pytest.raises(ValueError, match="overlaps itself"):
        trilinear_resize(x, (4, 6, 8), out=expanded)
    z = torch.randn(2, 3, 4, 6, 8)
    with pytest.raises(ValueError, match="overlaps itself"):
        native.affine_act_into(z, torch.ones(3), torch.zeros(3), expanded, True)
    with pytest.raises(ValueError, match="overlaps itself"):
        norm_act_into(z, torch.zeros(3), torch.ones(3), None, None, 1e-5, expanded, True)
    with pytest.raises(RuntimeError, match="more than one element"):  # copy_'s own words, for comparison
        expanded.copy_(z)


def test_an_output_overlapping_the_input_is_refused():
    buf = torch.randn(2, 6, 2, 3, 4)
    with pytest.raises(ValueError, match="overlaps an input"):
        native.affine_act_into(buf[:, :3], torch.ones(3), torch.zeros(3), buf[:, 2:5], True)
    big = torch.randn(1, 2, 4, 6, 8)
    with pytest.raises(ValueError, match="overlaps an input"):
        native.trilinear_forward(big[:, :, :2, :3, :4], (4, 6, 8), out=big)


def test_a_slot_of_a_larger_output_is_still_written():
    z = torch.randn(2, 3, 4, 5, 6, generator=_gen(2))
    y = torch.full((2, 5, 4, 5, 6), -7.0)
    native.affine_act_into(z, torch.ones(3), torch.zeros(3), y[:, 1:4], True)
    assert torch.equal(y[:, 1:4], z.relu()) and (y[:, 0] == -7).all() and (y[:, 4] == -7).all()


# --- frame indices ---------------------------------------------------------------------------------------------------


def _pool_gathered(x, frames):
    """Reference: gather the frames first (autograd accumulates a repeated frame), then pool them."""
    idx = frames.view(frames.shape[0], 1, frames.shape[1], 1, 1).expand(-1, x.shape[1], -1, *x.shape[3:])
    return softpool_spatial(torch.gather(x, 2, idx))


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "eager"])
def test_softpool_backward_with_a_repeated_frame_sums_both_gradients(monkeypatch, kernel):
    if not kernel:
        monkeypatch.setattr(native, "available", lambda: False)
    x = torch.ones(1, 1, 2, 2, 2)
    frames = torch.tensor([[0, 0]])
    xs = x.clone().requires_grad_()
    softpool_spatial(xs, frames).sum().backward()
    # each of frame 0's four elements has weight 1/4 in each of the two outputs that pool it: 2 * 1/4 (the
    # kernel once gave 1/4, half the gradient); frame 1 is not selected
    assert torch.equal(xs.grad[0, 0, 0], torch.full((2, 2), 0.5)) and not xs.grad[0, 0, 1].any()
    gen = _gen(3)
    x = torch.randn(2, 3, 5, 5, 6, generator=gen) * 3
    frames = torch.tensor([[1, 3, 1], [4, 4, 4]])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = softpool_spatial(a, frames)
    g = torch.randn(out.shape, generator=gen)
    out.backward(g)
    ref = _pool_gathered(b, frames)
    ref.backward(g)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)
    assert a.grad[1, :, 4].abs().sum() > 0 and not a.grad[1, :, :4].any()


@pytest.mark.parametrize("frames,match", [
    (torch.tensor([[0.0, 1.0]]), "integer tensor"), (torch.tensor([[True, False]]), "integer tensor"),
    (torch.tensor([[0, 5]]), "indices in \\[0, 5\\)"), (torch.tensor([[-1, 2]]), "indices in"),
    (torch.tensor([0, 2]), "frames must be \\(N=1, T'\\)"), (torch.tensor([[0], [1]]), "frames must be"),
])
def test_softpool_refuses_frames_it_would_misread(frames, match):
    x = torch.randn(1, 2, 5, 4, 4)
    with pytest.raises(ValueError, match=match):
        native.softpool2d_forward(x, frames)
    with pytest.raises(ValueError, match=match):
        native.softpool2d_backward(x, torch.zeros(1, 2, 2, 2, 2), frames)


def test_kernels_refuse_the_wrong_rank():
    with pytest.raises(ValueError, match="must be \\(N, C, T, H, W\\)"):
        native.softpool2d_forward(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="must be \\(N, C, T, H, W\\)"):
        native.triplet_select(torch.randn(2, 3, 4, 4), False)
    with pytest.raises(ValueError, match="must be \\(N, C, t, h, w\\)"):
        native.trilinear_forward(torch.randn(2, 3, 4, 4), (2, 2, 2))
    with pytest.raises(ValueError, match="gi must be"):
        native.gru_layer_forward(torch.randn(2, 12), torch.randn(12, 4), torch.randn(12), False)
