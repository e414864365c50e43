"""mtnet_plugin.ops.native, the fused CPU SoftPool kernel (Eq. 5, frame selection of Eq. 4 fused in): values
and gradients against a slow float64 window loop and against the eager path, strides, threads, NaN, the
loader's errors and its cache, and the MTConv layers that use it."""
import copy
import math
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import mtnet_plugin.ops.native as native
from mtnet_plugin.layers import MTConv
from mtnet_plugin.layers.prolonged import ProlongedDownsample
from mtnet_plugin.ops import pool_spatial, softpool_spatial

HAVE_CC = shutil.which(os.environ.get("CC", "cc")) is not None
SWITCHED_OFF = os.environ.get("MTNET_NATIVE", "1") == "0"
needs_kernel = pytest.mark.skipif(not HAVE_CC or SWITCHED_OFF, reason="no C compiler (or MTNET_NATIVE=0)")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _reference(x, frames=None):
    """Eq. 5 by explicit slicing of every 2x2 window (in-bounds elements only; size-1 dims unpooled), with
    frames gathered first by Python indexing: out[n, :, k] = pool(x[n, :, frames[n][k]]). Differentiable."""
    if frames is not None:
        x = torch.stack([x[n, :, list(frames[n])] for n in range(x.shape[0])])
    n, c, t, h, w = x.shape
    kh, kw = (2 if h > 1 else 1), (2 if w > 1 else 1)
    h2, w2 = math.ceil(h / kh), math.ceil(w / kw)
    outs = []
    for f in range(t):
        for i in range(h2):
            for j in range(w2):
                win = x[:, :, f, i * kh : i * kh + kh, j * kw : j * kw + kw].reshape(n, c, -1)
                e = torch.exp(win - win.max(dim=-1, keepdim=True).values)
                outs.append((e * win).sum(-1) / e.sum(-1))
    return torch.stack(outs, dim=-1).reshape(n, c, t, h2, w2)


def _grad_fns(t):
    """Class names of every node in t's autograd graph."""
    names, seen, stack = set(), set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        stack.extend(f for f, _ in fn.next_functions)
    return names


KERNEL_CALLS = []  # one entry per call of the C SoftPool forward since the last _ran_native


@pytest.fixture(autouse=True)
def _count_kernel_calls(monkeypatch):
    real = native.softpool2d_forward

    def spy(*args, **kwargs):
        KERNEL_CALLS.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(native, "softpool2d_forward", spy)
    KERNEL_CALLS.clear()


def _ran_native(t):
    """Whether the C SoftPool kernel ran since the last call (t: the output it produced)."""
    ran = bool(KERNEL_CALLS)
    KERNEL_CALLS.clear()
    return ran


def _eager_only(monkeypatch):
    monkeypatch.setattr(native, "available", lambda: False)


# --- 1. the kernel is in use wherever it can be built ---------------------------------------------------


@needs_kernel
def test_kernel_is_available_with_a_compiler():
    assert native.available(), f"C compiler present but the kernel did not load: {native.reason()}"
    assert native.reason() == "loaded"
    assert native.library() is not None


# --- 2. forward against the slow reference ----------------------------------------------------------------

# The kernel pools small planes (H * W <= 1024 and W' < 16) several planes at a time, interleaved, and wider
# planes row by row: both layouts, each with even / odd H and W and size-1 dimensions.
SMALL = [
    (1, 1, 1, 2, 2), (1, 2, 3, 4, 6), (1, 2, 2, 5, 7), (2, 3, 2, 6, 5), (2, 3, 1, 3, 3),
    (1, 2, 2, 1, 6), (1, 2, 2, 1, 5), (1, 2, 2, 4, 1), (1, 2, 2, 5, 1), (1, 1, 2, 1, 1), (2, 2, 1, 1, 1),
]
WIDE = [(1, 2, 2, 3, 33), (1, 1, 2, 4, 34), (2, 1, 1, 33, 33), (1, 1, 1, 1, 40), (1, 1, 1, 1100, 1)]
SHAPES = SMALL + WIDE
SCALES = [1.0, 3.0, 50.0, 1e3]


@needs_kernel
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_forward_matches_window_loop(shape, scale):
    x = torch.randn(*shape, generator=_gen(sum(shape))) * scale
    out = native.softpool2d_forward(x)
    n, c, t, h, w = shape
    assert out.shape == (n, c, t, math.ceil(h / 2), math.ceil(w / 2)) and out.dtype == torch.float32
    ref = _reference(x.double())
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5 * scale)
    # SoftPool lies between the window mean and max; max - out = sum_i w_i (m - x_i) <= 3 / e for 4 elements,
    # so at large scales it is max pooling up to a constant.
    wmax = F.max_pool3d(x.double(), (1, 2 if h > 1 else 1, 2 if w > 1 else 1), ceil_mode=True)
    gap = wmax - out.double()
    assert (gap >= -1e-6 * scale).all() and (gap <= 3 / math.e + 1e-6 * scale).all()


FRAMES = [
    [[1, 3], [0, 4]],  # ascending, like the selection's
    [[3, 1], [4, 0]],  # not ascending
    [[4, 2, 0, 1, 3], [0, 1, 2, 3, 4]],  # every frame, permuted
    [[2], [2]],
]


@needs_kernel
@pytest.mark.parametrize("frames", FRAMES)
@pytest.mark.parametrize("hw", [(4, 6), (5, 7), (1, 3)])
def test_forward_with_frames_pools_the_gathered_frames(frames, hw):
    x = torch.randn(2, 3, 5, *hw, generator=_gen(3)) * 3
    idx = torch.tensor(frames)
    out = native.softpool2d_forward(x, idx)
    assert out.shape == (2, 3, len(frames[0]), math.ceil(hw[0] / 2), math.ceil(hw[1] / 2))
    torch.testing.assert_close(out.double(), _reference(x.double(), frames), rtol=1e-5, atol=3e-5)
    # int32 frames are accepted too (converted), and agree with the full forward then gathered
    full = native.softpool2d_forward(x)
    gathered = torch.stack([full[n, :, frames[n]] for n in range(2)])
    torch.testing.assert_close(native.softpool2d_forward(x, idx.int()), gathered, rtol=0, atol=0)


# --- 3. backward against autograd through the reference ----------------------------------------------------


@needs_kernel
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", [3.0, 50.0])
def test_backward_matches_autograd_through_window_loop(shape, scale):
    gen = _gen(11 + sum(shape))
    x = torch.randn(*shape, generator=gen) * scale
    xd = x.double().requires_grad_()
    ref = _reference(xd)
    g = torch.randn(ref.shape, generator=gen)
    ref.backward(g.double())
    got = native.softpool2d_backward(x, g)
    assert got.shape == x.shape and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), xd.grad, rtol=1e-4, atol=1e-5)
    # the same through softpool_spatial's autograd Function
    xs = x.clone().requires_grad_()
    out = softpool_spatial(xs)
    assert _ran_native(out)
    out.backward(g)
    assert torch.equal(xs.grad, got)


@needs_kernel
@pytest.mark.parametrize("frames", FRAMES)
def test_backward_with_frames_is_zero_on_unselected_frames(frames):
    gen = _gen(12)
    x = torch.randn(2, 3, 5, 5, 6, generator=gen) * 3
    xs, xd = x.clone().requires_grad_(), x.double().requires_grad_()
    out = softpool_spatial(xs, torch.tensor(frames))
    assert _ran_native(out)
    ref = _reference(xd, frames)
    g = torch.randn(ref.shape, generator=gen)
    out.backward(g)
    ref.backward(g.double())
    torch.testing.assert_close(xs.grad.double(), xd.grad, rtol=1e-4, atol=1e-5)
    for n in range(2):
        for f in range(5):
            selected = f in frames[n]
            assert selected == bool(xs.grad[n, :, f].abs().sum() > 0), (n, f)  # exactly 0 when unselected


@needs_kernel
def test_backward_with_an_expanded_gradient():
    # out.sum().backward() hands the Function a stride-0 gradient
    x = torch.randn(1, 2, 3, 5, 7, generator=_gen(13))
    xs, xd = x.clone().requires_grad_(), x.double().requires_grad_()
    softpool_spatial(xs).sum().backward()
    _reference(xd).sum().backward()
    torch.testing.assert_close(xs.grad.double(), xd.grad, rtol=1e-4, atol=1e-5)


# --- 4. non-contiguous inputs ---------------------------------------------------------------------------


def _views():
    gen = _gen(14)
    return {
        "channel slice, N=2": torch.randn(2, 5, 3, 6, 7, generator=gen)[:, 1:4],
        "time slice with step": torch.randn(2, 2, 7, 5, 6, generator=gen)[:, :, ::2],
        "W stride != 1": torch.randn(1, 2, 3, 6, 5, generator=gen).transpose(3, 4),
        "row slice (H stride != W)": torch.randn(1, 2, 3, 6, 10, generator=gen)[..., 1:8],
        "size-1 W with stride != 1": torch.randn(1, 2, 3, 2, 5, generator=gen)[..., 2:3].transpose(3, 4),
        "wide planes, channel and column slice": torch.randn(2, 4, 3, 5, 40, generator=gen)[:, 1:3, :, :, 3:36],
    }


@needs_kernel
@pytest.mark.parametrize("name", list(_views()))
def test_non_contiguous_input_equals_contiguous_copy(name):
    view = _views()[name]
    assert not view.is_contiguous()
    dense = view.contiguous()
    frames = torch.tensor([[2, 0]] * view.shape[0])
    for idx in (None, frames):
        # same per-window arithmetic: only the addresses differ (tiny tolerance for a compiler's epilogue)
        torch.testing.assert_close(native.softpool2d_forward(view, idx), native.softpool2d_forward(dense, idx),
                                   rtol=1e-6, atol=1e-6)
        g = torch.randn((view.shape[0], view.shape[1], view.shape[2] if idx is None else 2) + tuple(
            math.ceil(s / 2) for s in view.shape[3:]), generator=_gen(15))
        torch.testing.assert_close(native.softpool2d_backward(view, g, idx),
                                   native.softpool2d_backward(dense, g, idx), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(native.softpool2d_forward(view).double(), _reference(view.double()),
                               rtol=1e-5, atol=1e-5)


# --- 5. kernel vs the eager path ---------------------------------------------------------------------------


def _run(fn, x, frames=None, seed=16):
    xs = x.clone().requires_grad_()
    out = fn(xs, frames)
    g = torch.randn(out.shape, generator=_gen(seed)).to(out.dtype)
    out.backward(g)
    return out.detach(), xs.grad, _ran_native(out)


POOLERS = {
    "softpool_spatial": softpool_spatial,
    "pool_spatial": lambda x, frames: pool_spatial(x, "softpool", training=True, frames=frames),
}


@needs_kernel
@pytest.mark.parametrize("pooler", list(POOLERS))
@pytest.mark.parametrize("frames", [None, [[1, 3], [2, 4]]])
def test_kernel_matches_eager_path(monkeypatch, pooler, frames):
    fn, idx = POOLERS[pooler], (torch.tensor(frames) if frames else None)
    x = torch.randn(2, 3, 5, 5, 6, generator=_gen(17)) * 3
    fast = _run(fn, x, idx)
    _eager_only(monkeypatch)
    slow = _run(fn, x, idx)
    assert fast[2] and not slow[2]  # each path really ran
    torch.testing.assert_close(fast[0], slow[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast[1], slow[1], rtol=1e-5, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("frames", [None, [[1, 3], [2, 4]]])
def test_kernel_matches_eager_path_under_bf16_autocast(monkeypatch, frames):
    idx = torch.tensor(frames) if frames else None
    x = (torch.randn(2, 3, 5, 5, 6, generator=_gen(18)) * 3).bfloat16()

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return _run(softpool_spatial, x, idx)

    fast = run()
    _eager_only(monkeypatch)
    slow = run()
    assert fast[2] and not slow[2]
    assert fast[0].dtype == slow[0].dtype == fast[1].dtype == torch.bfloat16
    torch.testing.assert_close(fast[0], slow[0], rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(fast[1], slow[1], rtol=1e-2, atol=1e-2)
    ref = _reference(x.double(), frames)
    torch.testing.assert_close(fast[0].double(), ref, rtol=1e-2, atol=2e-2)


@needs_kernel
def test_dtypes_that_take_the_kernel(monkeypatch):
    x = torch.randn(1, 2, 2, 4, 4, generator=_gen(19))
    assert _ran_native(softpool_spatial(x.half().requires_grad_()))  # upcast to fp32 first
    assert not _ran_native(softpool_spatial(x.double().requires_grad_()))  # float64 stays eager
    calls = []
    kernel = native.softpool2d_forward
    monkeypatch.setattr(native, "softpool2d_forward", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    with torch.no_grad():  # no graph: the kernel's forward alone, against Eq. 5 window by window
        out = softpool_spatial(x)
    assert calls, "the no-graph forward did not run the kernel"
    torch.testing.assert_close(out.double(), _reference(x.double()), rtol=1e-5, atol=1e-6)


# --- 6. threads -----------------------------------------------------------------------------------------


@needs_kernel
@pytest.mark.parametrize("shape", [(2, 4, 8, 33, 65), (2, 10, 64, 7, 15)], ids=["wide planes", "small planes"])
def test_two_threads_are_bitwise_equal_to_one(monkeypatch, shape):
    x = torch.randn(*shape, generator=_gen(20)) * 3  # odd H and W: edge windows in every plane
    t = shape[2]
    frames = torch.stack([torch.randperm(t, generator=_gen(30 + n))[: t // 2] for n in range(2)])
    assert x[:, :, : t // 2].numel() >= native.MIN_PARALLEL_ELEMENTS
    if native.team_size(2) != 2:
        pytest.skip("the kernels were built without OpenMP here: they run serially")
    teams = []  # the thread count each C kernel call was handed (its last argument)
    real_run_planes = native._run_planes

    def spy(fn, args, planes, elements):
        def recorded(*call):
            teams.append(call[-1])
            return fn(*call)

        recorded.__name__ = fn.__name__
        return real_run_planes(recorded, args, planes, elements)

    monkeypatch.setattr(native, "_run_planes", spy)

    def run():
        results = []
        for idx in (None, frames):
            out = native.softpool2d_forward(x, idx)
            g = torch.randn(out.shape, generator=_gen(21))
            results += [out, native.softpool2d_backward(x, g, idx)]
        return results

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run()
        assert set(teams) == {1}
        teams.clear()
        torch.set_num_threads(2)
        two = run()
    finally:
        torch.set_num_threads(before)
    assert set(teams) == {2}, "the kernels did not run on two threads"
    for a, b in zip(one, two):
        assert torch.equal(a, b)


# --- 7. NaN and extreme values ------------------------------------------------------------------------------

# (frame, row, col) of the NaN -> its window (frame, row // 2, col // 2); col -1 is the last (odd) column
NAN_AT = [(1, 2, 2), (1, 2, 3), (1, 3, 2), (1, 3, 3), (0, 4, 1), (0, 1, -1), (0, 4, -1), (0, 0, 0)]


@needs_kernel
@pytest.mark.parametrize("where", NAN_AT)
@pytest.mark.parametrize("width", [7, 35], ids=["small planes", "wide planes"])
def test_nan_reaches_exactly_its_window(where, width):
    f, r, c = where
    c %= width
    x = torch.randn(1, 2, 2, 5, width, generator=_gen(22)) * 3
    x[0, 1, f, r, c] = float("nan")
    out = native.softpool2d_forward(x)
    nan = torch.zeros_like(out, dtype=torch.bool)
    nan[0, 1, f, r // 2, c // 2] = True
    assert torch.equal(torch.isnan(out), nan), torch.isnan(out).nonzero().tolist()
    grad = native.softpool2d_backward(x, torch.ones_like(out))
    window = torch.zeros_like(x, dtype=torch.bool)
    window[0, 1, f, r // 2 * 2 : r // 2 * 2 + 2, c // 2 * 2 : c // 2 * 2 + 2] = True
    assert torch.isfinite(grad[~window]).all()


@needs_kernel
@pytest.mark.parametrize("width", [7, 35], ids=["small planes", "wide planes"])
def test_extreme_values_stay_finite(width):
    big = 3e38  # near float32's max: x_i - max overflows to -inf
    x = torch.tensor([[big, -big], [1.0, 0.0]]).repeat(2, 18)[:3, :width].reshape(1, 1, 1, 3, width)
    out = native.softpool2d_forward(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.full_like(out, big))
    y = torch.randn(1, 2, 2, 5, width, generator=_gen(23)).sign() * 1e30  # +-1e30 mixed in every window
    out = native.softpool2d_forward(y)
    grad = native.softpool2d_backward(y, torch.ones_like(out))
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(out.double(), _reference(y.double()), rtol=1e-6, atol=0)


@needs_kernel
@pytest.mark.parametrize("v", [-1e36, -3e38])
@pytest.mark.parametrize("width", [6, 34], ids=["small planes", "wide planes"])
def test_elements_far_below_the_max_get_no_weight(v, width):
    # Windows {v, 1, 0, v} and, in the overhanging last row, {v, 1}: e^(v - max) is 0 in float64. A weight
    # floored at e^-87 instead gave out -6.49 and grad -3.6 for v = -3e38 (e^-87 * v is not negligible).
    x = torch.tensor([[v, 1.0], [0.0, v]]).repeat(2, 17)[:3, :width].reshape(1, 1, 1, 3, width)
    xd = x.double().requires_grad_()
    ref = _reference(xd)
    ref.backward(torch.ones_like(ref))
    out = native.softpool2d_forward(x)
    grad = native.softpool2d_backward(x, torch.ones_like(out))
    torch.testing.assert_close(out.double(), ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad.double(), xd.grad, rtol=1e-4, atol=1e-5)  # 0 for the far elements


@needs_kernel
@pytest.mark.parametrize("v", [3e38, 1e8, -1e8])
def test_windows_of_equal_large_values(v):
    x = torch.full((1, 1, 1, 2, 2), v)
    out = native.softpool2d_forward(x)
    grad = native.softpool2d_backward(x, torch.ones_like(out))
    # The kernel forms m + sum_i w_i (x_i - m) and 1 + ((x_i - m) - (out - m)): neither the sum (v = 3e38)
    # nor the gradient's 1 (|v| = 1e8) is lost, as they were with sum_i e_i x_i / sum_i e_i and 1 - out + x_i.
    assert out.item() == x.flatten()[0].item()  # a constant window's softmax average is that constant
    torch.testing.assert_close(grad, torch.full_like(x, 0.25))  # d out / d x_i = w_i = 1/4


# --- 8. the loader: switches, compiler errors, cache --------------------------------------------------------


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("MTNET_NATIVE", "0")
    with pytest.raises(RuntimeError, match="MTNET_NATIVE"):
        native._load()


@pytest.mark.parametrize("cc, why", [("no-such-compiler-mtnet", r"no C compiler \('no-such-compiler-mtnet' not on PATH\)"),
                                     ("false", "failed")], ids=["no compiler", "failing compiler"])
def test_a_build_that_fails_falls_back_to_eager_with_one_log_line(monkeypatch, tmp_path, caplog, cc, why):
    import logging
    import re

    if shutil.which(cc) is None and cc == "false":
        pytest.skip("no 'false' program")
    monkeypatch.delenv("MTNET_NATIVE", raising=False)
    monkeypatch.setenv("CC", cc)
    monkeypatch.setenv("MTNET_NATIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_state", {"lib": None, "tried": False, "reason": "not built yet"})  # a new process
    x = torch.randn(1, 2, 3, 5, 6, generator=_gen(40))
    with caplog.at_level(logging.INFO, logger=native.__name__):
        outs = [softpool_spatial(x.clone().requires_grad_()) for _ in range(2)]
    lines = [r.getMessage() for r in caplog.records if "fused CPU kernels unavailable" in r.getMessage()]
    assert len(lines) == 1, lines  # said once, not at every call
    assert lines[0].startswith("fused CPU kernels unavailable, using eager PyTorch ops: ") and re.search(why, lines[0])
    assert not native.available() and re.search(why, native.reason())
    for out in outs:
        assert not _ran_native(out)
        torch.testing.assert_close(out.detach().double(), _reference(x.double()), rtol=1e-5, atol=1e-6)


def test_missing_compiler_is_named(monkeypatch):
    monkeypatch.delenv("MTNET_NATIVE", raising=False)
    monkeypatch.setenv("CC", "no-such-compiler-mtnet")
    with pytest.raises(RuntimeError, match="no C compiler.*no-such-compiler-mtnet"):
        native._load()


def test_failing_compiler_is_reported_and_leaves_no_files(monkeypatch, tmp_path):
    if shutil.which("false") is None:
        pytest.skip("no 'false' program")
    monkeypatch.delenv("MTNET_NATIVE", raising=False)
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("MTNET_NATIVE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="failed"):
        native._load()
    folder = native.user_cache_dir()
    assert [p.name for p in folder.iterdir()] == [".build.lock"]  # no library, no temporary file


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("MTNET_NATIVE_CACHE", str(tmp_path / "a"))
    assert native._cache_dir() == tmp_path / "a"
    monkeypatch.delenv("MTNET_NATIVE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert native._cache_dir() == tmp_path / "xdg" / "mtnet_plugin"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert native._cache_dir() == tmp_path / "home" / ".cache" / "mtnet_plugin"


@needs_kernel
def test_build_into_a_fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MTNET_NATIVE_CACHE", str(tmp_path))
    lib = native._load()
    built = Path(lib.mtnet_path)  # the file that was checked and loaded
    folder = tmp_path / f"native-uid{os.geteuid()}"
    assert built.parent == folder and built.suffix == ".so"
    assert sorted(p.name for p in folder.iterdir()) == sorted([built.name, ".build.lock"])  # no temporary files
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE(built.stat().st_mode) == 0o755
    stamp = built.stat().st_mtime_ns
    native._load()  # a second load reuses the file
    assert built.stat().st_mtime_ns == stamp and len(list(folder.glob("*.so"))) == 1
    # the freshly built library computes Eq. 5
    monkeypatch.setattr(native, "library", lambda: lib)
    x = torch.randn(2, 2, 2, 5, 6, generator=_gen(24)) * 3
    torch.testing.assert_close(native.softpool2d_forward(x).double(), _reference(x.double()), rtol=1e-5, atol=1e-5)


@needs_kernel
def test_a_damaged_cached_library_is_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("MTNET_NATIVE_CACHE", str(tmp_path))
    built = Path(native._load().mtnet_path)
    built.unlink()  # a new file, not an overwrite: the library loaded here must keep its pages
    built.write_bytes(b"not a shared object")  # e.g. a disk that failed under the cache
    built.chmod(0o755)
    # A fresh process (this one has the file loaded already, and dlopen would hand that back).
    code = ("import logging; logging.basicConfig(); import mtnet_plugin.ops.native as n; "
            "lib = n._load(); print(lib.mtnet_path, lib.team_size(1))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "rebuilding" in done.stderr and str(built) in done.stderr
    assert done.stdout.split() == [str(built), "1"] and built.read_bytes()[:4] == b"\x7fELF"


# --- the cache refuses what it cannot trust: a planted library's constructor never runs -------------------------

PLANTED = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(getenv("MTNET_PLANT_MARKER"), "w");
    if (f) { fputs("constructor ran", f); fclose(f); }
}
int team_size(long long threads) { (void)threads; return 99; }
"""


def _plant(tmp_path):
    """A shared object whose constructor writes $MTNET_PLANT_MARKER, and the env of a process that would load
    the kernels from tmp_path/cache."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    src = tmp_path / "planted.c"
    src.write_text(PLANTED)
    so = tmp_path / "planted.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(so), str(src)], check=True, capture_output=True)
    env = dict(os.environ, MTNET_NATIVE_CACHE=str(tmp_path / "cache"), MTNET_PLANT_MARKER=str(tmp_path / "ran"))
    env.pop("MTNET_NATIVE", None)
    return so, env


# The planted library is refused, so the loader builds in a private folder: with CC=false that build fails at
# once (the test is about what is loaded, not about building), and the name it looks for is library_name(CC).
# One process tries every cache root in turn (argv), reporting one line per root.
LOAD_EACH = """
import logging, os, sys
logging.basicConfig(stream=sys.stderr)
import mtnet_plugin.ops.native as n
for root in sys.argv[1:]:
    os.environ["MTNET_NATIVE_CACHE"] = root
    os.environ["MTNET_PLANT_MARKER"] = os.path.join(root, "ran")  # where a constructor that runs writes
    try:
        lib = n._load()
        print(root, "loaded", lib.team_size(2), flush=True)
    except (RuntimeError, AttributeError) as exc:
        print(root, "refused" if "false" in str(exc) else "error", flush=True)
"""
PLANTS = ["folder owned by uid 12345", "folder writable by others", "file owned by uid 12345",
          "file writable by group", "file is a symlink", "trusted (control)"]


@needs_kernel
def test_a_planted_library_never_runs(tmp_path):
    if shutil.which("false") is None:
        pytest.skip("no 'false' program")
    so, env = _plant(tmp_path)
    env["CC"] = "false"
    roots, targets = [], {}
    for k, how in enumerate(PLANTS):
        if os.geteuid() != 0 and "12345" in how:
            continue  # chown to another uid needs root
        root = tmp_path / f"cache{k}"
        folder = root / f"native-uid{os.geteuid()}"
        folder.mkdir(parents=True, mode=0o700)
        target = folder / native.library_name(shutil.which("false"))
        if how == "file is a symlink":
            target.symlink_to(so)
        else:
            shutil.copy(so, target)
            target.chmod(0o755)
        if how == "folder owned by uid 12345":
            os.chown(folder, 12345, 12345)
        elif how == "folder writable by others":
            folder.chmod(0o777)
        elif how == "file owned by uid 12345":
            os.chown(target, 12345, 12345)
        elif how == "file writable by group":
            target.chmod(0o775)
        roots.append(str(root))
        targets[str(root)] = (how, folder, target)
    # the control goes last: its constructor runs, proving the library would have run in the others' place
    done = subprocess.run([sys.executable, "-c", LOAD_EACH, *roots], env=env, capture_output=True, text=True,
                          timeout=300)
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    for root in roots[:-1]:
        how, folder, target = targets[root]
        assert lines.get(root) == "refused", (how, done.stdout, done.stderr[-2000:])
        assert not (Path(root) / "ran").exists(), f"{how}: the planted library's constructor ran"
        assert "not using the kernel cache" in done.stderr and str(folder) in done.stderr, how  # a log line
        assert os.path.lexists(target), how  # never deleted
        assert target.is_symlink() or target.read_bytes() == so.read_bytes(), how
    assert targets[roots[-1]][0] == "trusted (control)"
    assert (Path(roots[-1]) / "ran").read_text() == "constructor ran"  # the control's load ran it
    assert done.stderr.count("not using the kernel cache") == len(roots) - 1


@needs_kernel
def test_concurrent_processes_build_once(tmp_path):
    # Two processes (e.g. DDP ranks) start on an empty cache at once: one compiles, the others wait and load.
    env = dict(os.environ, MTNET_NATIVE_CACHE=str(tmp_path / "cache"))
    env.pop("MTNET_NATIVE", None)
    code = ("import mtnet_plugin.ops.native as n, subprocess; calls = []; real = subprocess.run\n"
            "def spy(cmd, *a, **k):\n    calls.append(1)\n    return real(cmd, *a, **k)\n"
            "subprocess.run = spy\nlib = n._load(); print(len(calls), lib.mtnet_path)")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-500:] for r in results]
    compiles = [int(r[0].split()[0]) for r in results]
    assert sum(1 for c in compiles if c > 0) == 1, compiles  # exactly one process ran the compiler
    assert len({r[0].split()[1] for r in results}) == 1


@needs_kernel
def test_leftover_temporary_files_are_removed(monkeypatch, tmp_path):
    monkeypatch.setenv("MTNET_NATIVE_CACHE", str(tmp_path))
    folder = native._trusted_folder(native.user_cache_dir())
    left = folder / (native.TEMP_PREFIX + "crashed.so")
    left.write_bytes(b"half a library")
    cc = shutil.which(os.environ.get("CC", "cc"))
    shutil.copy(native.library().mtnet_path, folder / native.library_name(cc))  # no build needed
    (folder / native.library_name(cc)).chmod(0o755)
    native._load()
    assert not left.exists() and (folder / native.library_name(cc)).exists()


def test_flag_sets_keep_openmp_and_tuning_on_every_architecture():
    for machine, tuning in [("x86_64", "-march=native"), ("AMD64", "-march=native"), ("aarch64", "-mcpu=native"),
                            ("arm64", "-mcpu=native"), ("ppc64le", "-mcpu=native")]:
        sets = native.flag_sets(machine)
        assert "-fopenmp" in sets[0] and tuning in sets[0], (machine, sets[0])
        assert "-O3" in sets[0] and "-fPIC" in sets[0]
        # a compiler that refuses the tuning flags keeps OpenMP; one that refuses OpenMP keeps the tuning
        assert "-fopenmp" in sets[1] and tuning not in sets[1]
        assert "-fopenmp" not in sets[2] and tuning in sets[2]
        assert "-fopenmp" not in sets[3] and tuning not in sets[3]
    assert not any("-mprefer-vector-width" in f for s in native.flag_sets("aarch64") for f in s)  # x86-only
    riscv = native.flag_sets("riscv64")
    assert riscv[0] == native.BASE_FLAGS + native.OPENMP and len(riscv) == 2


def _load_with_a_compiler_refusing(monkeypatch, tmp_path, refused: str):
    """Builds the kernels, in a fresh cache, with $CC wrapped so that it fails on any flag of ``refused`` (a shell
    case pattern such as ``-fopenmp|-march=native``) and passes everything else to the real compiler."""
    real_cc = shutil.which(os.environ.get("CC", "cc"))
    wrapper = tmp_path / "picky-cc"
    wrapper.write_text(f"#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in {refused}) exit 1;; esac; done\n"
                       f"exec {real_cc} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    monkeypatch.setenv("MTNET_NATIVE_CACHE", str(tmp_path / "cache"))
    return native._load()


@needs_kernel
def test_a_compiler_refusing_the_tuning_keeps_openmp(monkeypatch, tmp_path):
    lib = _load_with_a_compiler_refusing(monkeypatch, tmp_path, "-march=native|-mcpu=native")
    assert lib.team_size(2) == 2  # still OpenMP


def test_ctypes_signatures_match_the_c_prototypes(tmp_path):
    native.check_signatures()  # the shipped sources
    src = tmp_path / "gru.c"
    text = (native.CSRC / "gru.c").read_text().replace("int64_t T, int64_t H, int64_t n_begin",
                                                          "int64_t T, int64_t H, int64_t extra, int64_t n_begin", 1)
    src.write_text(text)
    sources = [s if s.name != "gru.c" else src for s in native.SOURCES]
    with pytest.raises(RuntimeError, match="gru_layer_forward_f32"):
        native.check_signatures(sources)


SUBPROCESS = """
import sys, torch
import mtnet_plugin.ops.native as native
from mtnet_plugin.ops import softpool_spatial
x = (torch.randn(2, 3, 4, 5, 7, generator=torch.Generator().manual_seed(25)) * 3).requires_grad_()
out = softpool_spatial(x, torch.tensor([[0, 2], [3, 1]]))
out.sum().backward()
torch.save({"available": native.available(), "reason": native.reason(), "grad_fn": type(out.grad_fn).__name__,
            "out": out.detach(), "grad": x.grad}, sys.argv[1])
"""


def test_switched_off_process_falls_back_to_eager(tmp_path):
    env = dict(os.environ, MTNET_NATIVE="0")
    done = subprocess.run([sys.executable, "-c", SUBPROCESS, str(tmp_path / "r.pt")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    got = torch.load(tmp_path / "r.pt")
    assert got["available"] is False and "MTNET_NATIVE" in got["reason"]
    assert "MTNET_NATIVE" in got["reason"]
    x = (torch.randn(2, 3, 4, 5, 7, generator=_gen(25)) * 3).double().requires_grad_()
    ref = _reference(x, [[0, 2], [3, 1]])
    ref.sum().backward()
    torch.testing.assert_close(got["out"].double(), ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["grad"].double(), x.grad, rtol=1e-4, atol=1e-5)


# --- 9. layers: kernel path == eager path ---------------------------------------------------------------------


def _forward_backward(module, inputs, seed=26):
    module = copy.deepcopy(module)
    leaves = [t.clone().requires_grad_() for t in inputs]
    outs = module(*leaves)
    outs = outs if isinstance(outs, tuple) else (outs,)
    gen = _gen(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen)).sum() for o in outs)
    loss.backward()
    params = {k: p.grad for k, p in module.named_parameters()}
    return [o.detach() for o in outs], [t.grad for t in leaves], params, any(_ran_native(o) for o in outs)


def _compare_paths(monkeypatch, module, inputs):
    fast = _forward_backward(module, inputs)
    _eager_only(monkeypatch)
    slow = _forward_backward(module, inputs)
    assert fast[3] and not slow[3]
    for a, b in zip(fast[0] + fast[1], slow[0] + slow[1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert fast[2].keys() == slow[2].keys()
    for k in fast[2]:
        torch.testing.assert_close(fast[2][k], slow[2][k], rtol=1e-4, atol=1e-5, msg=k)


@needs_kernel
def test_prolonged_downsample_kernel_equals_eager(monkeypatch):
    gen = _gen(27)
    a_in = torch.randn(2, 4, 6, 10, 10, generator=gen)
    a_local = torch.randn(2, 7, 6, 10, 10, generator=gen).relu()
    _compare_paths(monkeypatch, ProlongedDownsample(pool="softpool", selection="lowest"), (a_in, a_local))


@needs_kernel
@pytest.mark.parametrize("kernel,groups,n", [(1, 1, 2), (3, 8, 1)])
def test_mtconv_kernel_equals_eager(monkeypatch, kernel, groups, n):
    torch.manual_seed(28)
    m = MTConv(8, 8, kernel, padding=kernel // 2, groups=groups, delta=0.875).train()
    assert m.prolonged_channels == 1
    _compare_paths(monkeypatch, m, (torch.randn(n, 8, 6, 10, 10, generator=_gen(29)),))


@needs_kernel
def test_backward_rejects_a_gradient_of_the_wrong_shape():
    # The kernel reads grad by the sizes x implies: a wrong gradient is an error, never a read past its end.
    x = torch.randn(1, 2, 4, 6, 6)
    with pytest.raises(ValueError, match="expected"):
        native.softpool2d_backward(x, torch.randn(1, 2, 3, 3, 3))
    with pytest.raises(ValueError, match="expected"):
        native.softpool2d_backward(x, torch.randn(1, 2, 3, 3, 3), torch.tensor([[1, 2]]))


@needs_kernel
@pytest.mark.parametrize("relu", [True, False])
def test_affine_act_into_a_slot_is_eval_batchnorm(relu):
    # out = relu(z * scale + shift): eval-mode BatchNorm (+ ReLU) of torch, written into y[:, :4] only.
    gen = _gen(40)
    bn = torch.nn.BatchNorm3d(4).eval()
    bn.running_mean = torch.randn(4, generator=gen)
    bn.running_var = torch.rand(4, generator=gen) + 0.5
    bn.weight.data = torch.rand(4, generator=gen) + 0.5
    bn.bias.data = torch.randn(4, generator=gen)
    z = torch.randn(2, 4, 3, 5, 7, generator=gen)
    z[1, 2, 1, 2, 3] = float("nan")
    y = torch.full((2, 6, 3, 5, 7), -9.0)
    scale = torch.rsqrt(bn.running_var + bn.eps) * bn.weight
    shift = bn.bias - bn.running_mean * scale
    native.affine_act_into(z, scale, shift, y[:, :4], relu=relu)
    with torch.no_grad():
        ref = torch.relu(bn(z)) if relu else bn(z)
    torch.testing.assert_close(y[:, :4], ref, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert torch.isnan(y[1, 2, 1, 2, 3]) and torch.isnan(y[:, :4]).sum() == 1  # NaN passes the ReLU
    assert (y[:, 4:] == -9.0).all()
    with pytest.raises(ValueError):
        native.affine_act_into(z, scale, shift, y[:, :3], relu=relu)  # wrong shape
    with pytest.raises(ValueError, match="contiguous"):
        native.affine_act_into(z, scale, shift, torch.empty(2, 3, 5, 7, 4).permute(0, 4, 1, 2, 3), relu=relu)


@needs_kernel
def test_kernels_refuse_inputs_they_would_misread():
    # They read raw memory by the sizes they are given: bad indices or another dtype are errors, not misreads.
    x = torch.randn(2, 2, 4, 6, 6)
    for frames in (torch.tensor([[0, 4], [1, 2]]), torch.tensor([[-1, 2], [1, 2]]), torch.tensor([[0, 1]])):
        with pytest.raises(ValueError, match="frames"):
            native.softpool2d_forward(x, frames)
    with pytest.raises(ValueError, match="float32 CPU"):
        native.softpool2d_forward(x.double())
    with pytest.raises(ValueError, match="float32 CPU"):
        native.trilinear_forward(x.half(), (8, 12, 12))
    with pytest.raises(ValueError, match="float32 CPU"):
        native.affine_act_into(x, torch.ones(2), torch.zeros(2), torch.empty_like(x, dtype=torch.float64), True)


@needs_kernel
def test_a_compiler_without_openmp_or_cpu_tuning_still_builds_serial_kernels(monkeypatch, tmp_path):
    # E.g. Apple's clang (no -fopenmp) or a compiler that refuses -march=native: the next flag set is tried.
    lib = _load_with_a_compiler_refusing(monkeypatch, tmp_path, "-fopenmp|-march=native")
    assert lib.team_size(2) == 1  # built without OpenMP: serial
    monkeypatch.setattr(native, "library", lambda: lib)
    x = torch.randn(1, 2, 3, 6, 8, generator=_gen(41)) * 3
    torch.testing.assert_close(native.softpool2d_forward(x).double(), _reference(x.double()), rtol=1e-5, atol=1e-5)
