"""Shared by tests/test_cuda_*.py: the ``device`` parameters, the tolerance tables, comparison helpers and inputs.

Every CUDA test is parametrised by device: ``cpu`` always runs (tiny sizes, so CI proves the test code), ``cuda``
carries the ``cuda`` marker and is skipped with :data:`NO_CUDA_REASON` where no GPU is visible. On the CPU the
"device path" of an op is the eager PyTorch code that CUDA runs (the C kernels switched off with
:func:`kernels_off`), compared with the default CPU path (the kernels where they are built); on CUDA it is the CUDA
run, compared with the same default CPU path on the same inputs.
"""
import contextlib
import socket
from typing import Dict, Iterator, List, Tuple

import numpy as np
import pytest
import torch

from mtnet_plugin.ops import native

HAVE_CUDA = torch.cuda.is_available()
NO_CUDA_REASON = "needs a CUDA GPU: torch.cuda.is_available() is False here (run tools/gpu_check.sh on a GPU machine)"
CUDA_MARKS = (pytest.mark.cuda, pytest.mark.skipif(not HAVE_CUDA, reason=NO_CUDA_REASON))

# Model sizes: the native input of each preset on CUDA (batch NATIVE_BATCH); on the CPU a tiny network of the same
# family (the six presets would all shrink to the same two networks, so the CPU runs the _S names only).
PRESETS = ("MTNet_S", "MTNet_M", "MTNet_L", "X3D_S", "X3D_M", "X3D_L")
CPU_PRESETS = ("MTNet_S", "X3D_S")
NATIVE_BATCH = 2
TINY_OVERRIDES = dict(width_factor=0.5, depth_factor=0.4, bottleneck_factor=1.0, dim_c1=8, dim_c5=16)
TINY_INPUT = (6, 32)  # T x S: 6 frames, so frame selection keeps 3 of 4 candidates in the first blocks

# ---------------------------------------------------------------------------------------------- tolerances
# A device's fp32 result against the CPU path's on the same input (TF32 off, see exact_fp32): the two differ by
# summation order (cuDNN / cuBLAS reductions, atomics in interpolate's backward), a few ulps per op.
OP_TOL = {
    torch.float32: dict(rtol=1e-4, atol=1e-5),
    # half input: computed in fp32 inside the op (spec #19), the output rounded to half (2^-11 relative)
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}
# A whole tiny network in fp32 on the device against the CPU path, same frames: errors compound with depth;
# ``tie``: largest score gap at which the device may pick another frame than the CPU (fp32 rounding).
NET_TOL = dict(logits_rel=1e-3, grad_rel=1e-3, tie=1e-4)

# Autocast against fp32 on the same device, whole networks at their native input, forward + backward (loss scaled
# by LOSS_SCALE, as a GradScaler would, so fp16 gradients do not underflow), fp32's frames replayed (SelectionPin):
# relative L2 error of the logits and of the concatenated parameter gradients, and their cosine, with eval-mode
# (affine) BatchNorm; ``train_grad_rel``: the gradient bound of the train-mode step, which also may go up to
# SENSITIVITY_FACTOR x the move that rounding only the input causes in fp32; ``tie``: the largest fp32 score gap at
# which autocast may pick another frame. Measured with CPU autocast (which also runs convolutions and matmuls in
# half), MTNet_S at 13x160, batch 2: eval-BN logits / gradients fp16 5.6e-4 / 6.1e-4, bf16 6.4e-3 / 4.3e-3
# (cosine 1.0); train step gradients fp16 1.5e-2, bf16 4.3e-2 (input-rounding move 7.2e-3 / 2.6e-2); 0 and 5
# of 156 selections swapped, largest gap 4.1e-4. The bounds leave about 10x of room for CUDA's kernels, M and L.
# X3D_S at 13x160 is ill-conditioned in train mode at this init: rounding only its input to fp16 / bf16 moves its
# fp32 gradients by 33 % / 84 % (fp32 against float64: 0.6 %), hence the sensitivity-relative bound.
AMP_TOL = {
    torch.float16: dict(logits_rel=0.01, grad_rel=0.01, grad_cos=0.9995, train_grad_rel=0.1, tie=2e-3),
    torch.bfloat16: dict(logits_rel=0.05, grad_rel=0.05, grad_cos=0.998, train_grad_rel=0.25, tie=2e-2),
}
# Train-mode gradients may move further than AMP_TOL's grad_rel: at most this many times the move that rounding
# just the input to the autocast dtype causes in fp32 (see test_cuda_models.py).
SENSITIVITY_FACTOR = 4.0
LOSS_SCALE = 2.0 ** 10


def device_params(cpu: bool = True) -> List:
    """``pytest.param`` list for a ``device`` argument: "cpu" (unless ``cpu=False``) and "cuda" (marked)."""
    params = [pytest.param("cuda", marks=CUDA_MARKS, id="cuda")]
    if cpu:
        params.insert(0, pytest.param("cpu", id="cpu"))
    return params


def preset_params(cuda_names: Tuple[str, ...] = PRESETS) -> List:
    """(device, preset name) pairs: ``cuda_names`` (the six presets) on CUDA, the _S pair on the CPU."""
    out = [pytest.param("cpu", name, id=f"cpu-{name}") for name in CPU_PRESETS]
    out += [pytest.param("cuda", name, marks=CUDA_MARKS, id=f"cuda-{name}") for name in cuda_names]
    return out


def model_size(device: str, name: str) -> Tuple[Dict, int, int, int]:
    """(preset overrides, batch, T, S) for ``name`` on ``device``: native on CUDA, tiny on the CPU."""
    from mtnet_plugin.models import preset_input_shape

    if device == "cuda":
        _, t, s, _ = preset_input_shape(name)
        return {}, NATIVE_BATCH, t, s
    return dict(TINY_OVERRIDES), 2, TINY_INPUT[0], TINY_INPUT[1]


@contextlib.contextmanager
def kernels_off() -> Iterator[None]:
    """Run the eager PyTorch ops (the CUDA code path) on the CPU: the C kernels report themselves unavailable."""
    real = native.available
    native.available = lambda: False
    try:
        yield
    finally:
        native.available = real


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off for cuDNN and cuBLAS (on by default for cuDNN convolutions on Ampere and later), restored after."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@contextlib.contextmanager
def device_path(device: str) -> Iterator[None]:
    """The context a "device path" runs in: :func:`kernels_off` on the CPU, :func:`exact_fp32` on CUDA."""
    with (kernels_off() if device == "cpu" else exact_fp32()):
        yield


# --------------------------------------------------------------------------------------------- comparison
def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64 on the CPU (0 when both are zero)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    den = float(b.norm())
    return float((a - b).norm()) / den if den > 0 else float((a - b).norm())


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu().flatten(), b.detach().double().cpu().flatten()
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0, eps=1e-30))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, tol: Dict[str, float]) -> None:
    """``torch.testing.assert_close`` on the CPU in fp32, with ``what`` and the largest error in the message."""
    a, e = actual.detach().float().cpu(), expected.detach().float().cpu()
    torch.testing.assert_close(a, e, rtol=tol["rtol"], atol=tol["atol"],
                               msg=lambda m: f"{what}: {m} (max |diff| {float((a - e).abs().max()):.3g})")


def grad_vector(model: torch.nn.Module) -> torch.Tensor:
    """Every parameter's gradient (zeros where None) concatenated, float64 on the CPU."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().double().cpu().flatten()
                      for p in model.parameters()])


def all_finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


# -------------------------------------------------------------------------------------------------- inputs
def triplet_scores_reference(x: torch.Tensor, eps: float = 1e-6) -> np.ndarray:
    """Eq. 6-7 computed here in float64 numpy: scores (N, T - 2) of the centre frames 1..T-2."""
    v = x.detach().double().cpu().numpy().sum(axis=(3, 4))  # (N, C, T)
    norm = np.maximum(np.linalg.norm(v, axis=1), eps)  # (N, T)
    c = (v[:, :, :-1] * v[:, :, 1:]).sum(axis=1) / (norm[:, :-1] * norm[:, 1:])  # (N, T - 1)
    return c[:, :-1] + c[:, 1:]


def expected_selection(x: torch.Tensor, highest: bool = False) -> torch.Tensor:
    """The floor(T/2) frames of lowest (highest) triplet score per sample, ascending: (N, T') LongTensor."""
    scores = triplet_scores_reference(x)
    keep = x.shape[2] // 2
    order = np.argsort(-scores if highest else scores, axis=1, kind="stable")[:, :keep]
    return torch.from_numpy(np.sort(order, axis=1) + 1)


def selection_margin(x: torch.Tensor) -> float:
    """The smallest score gap at the selection boundary over samples, for both the lowest and highest rule."""
    scores = np.sort(triplet_scores_reference(x), axis=1)
    m, keep = scores.shape[1], x.shape[2] // 2
    if keep >= m:  # T <= 4: every candidate is kept, there is no boundary
        return float("inf")
    gaps = [scores[:, keep] - scores[:, keep - 1]]  # lowest: the keep-th lowest vs the next
    gaps.append(scores[:, m - keep] - scores[:, m - keep - 1])  # highest: the keep-th highest vs the next lower
    return float(np.min(np.stack(gaps)))


def well_separated_clip(n: int, c: int, t: int, h: int, w: int, margin: float = 0.05, seed: int = 0) -> torch.Tensor:
    """A random fp32 (N, C, T, H, W) tensor whose triplet scores are at least ``margin`` apart at the selection
    boundary (both rules), so every correct implementation selects the same frames; tries seeds from ``seed``."""
    for s in range(seed, seed + 1000):
        g = torch.Generator().manual_seed(s)
        frame = torch.randn(n, c, t, 1, 1, generator=g)  # per-frame direction, dominates the spatial sums
        x = frame + 0.5 * torch.randn(n, c, t, h, w, generator=g)
        if selection_margin(x) >= margin:
            return x
    raise AssertionError(f"no seed in {seed}..{seed + 999} gives a selection margin >= {margin}")


class SelectionPin:
    """Forward hooks on every ``FrameSelect`` of a model: ``record`` the frames each one picks (and, per sample, the
    fp32 score gap at its selection boundary), then ``replay`` them in a later forward so that a run in another
    precision or on another device uses the same frames, while noting the frames it would have picked itself.

    Frame selection is a discontinuous function of its input: where two candidate frames score within rounding of
    each other, any change of precision may swap them, and the network's output then changes by far more than the
    rounding. Pinning separates the two effects: numeric agreement with the same frames, and swaps allowed only
    where the recorded gap was below a tie threshold.
    """

    def __init__(self, model: torch.nn.Module):
        from mtnet_plugin.layers.prolonged import FrameSelect

        self.mode, self.recorded, self.own, self.margins, self._i = "off", [], [], [], 0
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, FrameSelect)]

    def _hook(self, module, inputs, output):
        from mtnet_plugin.ops import select_frames

        idx, _ = output
        if self.mode == "record":
            self.recorded.append(idx.detach().clone())
            self.margins.append(sample_margins(inputs[0], module.highest))
            return None
        if self.mode == "replay":
            self.own.append(idx.detach().clone())
            pinned = self.recorded[self._i].to(idx.device)
            self._i += 1
            return pinned, select_frames(inputs[0], pinned)
        return None

    def record(self) -> "SelectionPin":
        self.mode, self.recorded, self.margins = "record", [], []
        return self

    def replay(self) -> "SelectionPin":
        self.mode, self.own, self._i = "replay", [], 0
        return self

    def swaps(self) -> List[Tuple[int, int, float]]:
        """(selection number, sample, recorded gap) of every sample whose own choice in the replayed run differed."""
        out = []
        for k, (ref, own) in enumerate(zip(self.recorded, self.own)):
            for n in range(ref.shape[0]):
                if not torch.equal(ref[n].cpu(), own[n].cpu()):
                    out.append((k, n, float(self.margins[k][n])))
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.mode = "off"


def sample_margins(x: torch.Tensor, highest: bool) -> np.ndarray:
    """Per sample, the gap between the last kept and the first dropped triplet score (inf when none is dropped)."""
    t, keep = x.shape[2], x.shape[2] // 2
    if t <= 2 or keep >= t - 2:  # every frame, or every candidate, is kept
        return np.full(x.shape[0], np.inf)
    scores = np.sort(triplet_scores_reference(x.float()), axis=1)
    m = t - 2
    if highest:
        return scores[:, m - keep] - scores[:, m - keep - 1]
    return scores[:, keep] - scores[:, keep - 1]


def free_port() -> int:
    """A TCP port free on localhost now (for a process group's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
