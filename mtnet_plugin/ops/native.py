"""Fused CPU kernels for MTNet: SoftPool (``csrc/softpool.c``), the trilinear resize (``csrc/resize.c``),
eval-mode BatchNorm + ReLU into a slot (``csrc/norm_act.c``), the GRU recurrence (``csrc/gru.c``) and the
triplet cosine frame selection (``csrc/select.c``): built with the C compiler on first use, called via ctypes.

Plain C without PyTorch headers compiles in about a second, so nothing is built at install time and a
machine without a compiler loses only speed: :func:`available` is then False and the ops run their eager
PyTorch path, which gives the same values (tests compare the two, with gradients).

- Cache: ``$MTNET_NATIVE_CACHE``, else ``$XDG_CACHE_HOME/mtnet_plugin`` (``~/.cache/mtnet_plugin``); one
  shared object per source, flags, compiler and CPU (it is built with ``-march=native``), written to a
  temporary name and renamed, so concurrent processes (DDP ranks) never load a half-written file.
- ``MTNET_NATIVE=0`` switches the kernel off (eager everywhere); ``CC`` names the compiler (default ``cc``).
- Threads: built with ``-fopenmp``, the kernels split their planes over ``torch.get_num_threads()`` OpenMP
  threads. Loaded after torch, whose OpenMP runtime has the same soname, they run on torch's own thread
  pool instead of a second one spinning against it. Where ``-fopenmp`` does not build, they run serially.
"""
import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional, Tuple

import torch

logger = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = tuple(CSRC / f for f in ("softpool.c", "resize.c", "norm_act.c", "gru.c", "select.c"))
HEADERS = (CSRC / "parallel.h", CSRC / "floatbits.h")
# -ffinite-math-only lets fmaxf become a vector max (softpool.c tests for inf and NaN by their bits instead);
# 256-bit vectors: faster than gcc's 512-bit choice on wide planes here, equal on small ones (docs/benchmarks.md).
FLAGS = ("-O3", "-march=native", "-ffinite-math-only", "-fno-math-errno", "-fno-trapping-math",
         "-mprefer-vector-width=256", "-fPIC", "-shared")
OPENMP = ("-fopenmp",)
TUNING = ("-march=native", "-mprefer-vector-width=256")  # x86 gcc/clang spellings; dropped where refused
# Tried in order: all flags; no OpenMP (e.g. Apple clang); no CPU tuning either (compilers that refuse it).
FLAG_SETS = (FLAGS + OPENMP, FLAGS, tuple(f for f in FLAGS if f not in TUNING))
MIN_PARALLEL_ELEMENTS = 1 << 16  # below this, one thread: starting an OpenMP team costs more than it saves

_lock = threading.Lock()
_state = {"lib": None, "tried": False, "reason": "not built yet"}

_I64 = ctypes.c_int64
_PTR = ctypes.c_void_p
# Every entry point ends with (begin, end, threads) over planes or sequences and returns 0, or -1 when its
# scratch ran out.
_SIGNATURES = {
    "softpool2d_forward_f32": [_PTR, _PTR, _PTR] + [_I64] * 13,
    "softpool2d_backward_f32": [_PTR, _PTR, _PTR, _PTR] + [_I64] * 14,
    "trilinear_forward_f32": [_PTR, _PTR] + [_I64] * 12,
    "trilinear_backward_f32": [_PTR, _PTR] + [_I64] * 9,
    "affine_act_f32": [_PTR, _PTR, _PTR, _PTR] + [_I64] * 7,
    "gru_layer_forward_f32": [_PTR] * 5 + [_I64] * 5,
    "gru_layer_backward_f32": [_PTR] * 6 + [_I64] * 5,
    "triplet_select_f32": [_PTR, _PTR] + [_I64] * 8,
}


def _cpu_id() -> str:
    """The model name and feature flags of the first CPU (the -march=native build depends on them)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    keep = [ln for ln in lines if ln.split(":")[0].strip() in ("model name", "flags")]
    return "\n".join(keep[:2])


def _cache_dir() -> Path:
    if os.environ.get("MTNET_NATIVE_CACHE"):
        return Path(os.environ["MTNET_NATIVE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mtnet_plugin"


def _compile(cc: str, target: Path) -> None:
    """Compile SOURCES to ``target`` atomically (temporary file in the same folder, then rename), with the first
    of ``FLAG_SETS`` the compiler accepts (without OpenMP the kernels run serially)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=str(target.parent))
    os.close(fd)
    try:
        for flags in FLAG_SETS:
            cmd = [cc, *flags, "-o", tmp, *(str(s) for s in SOURCES)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                break
        else:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load() -> Optional[ctypes.CDLL]:
    if os.environ.get("MTNET_NATIVE", "1") == "0":
        raise RuntimeError("switched off by MTNET_NATIVE=0")
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        raise RuntimeError(f"no C compiler ({os.environ.get('CC', 'cc')!r} not on PATH)")
    parts = [s.read_bytes() for s in SOURCES + HEADERS] + [" ".join(FLAGS + OPENMP).encode(), cc.encode(),
                                                           _cpu_id().encode()]
    digest = hashlib.sha256(b"".join(p + b"\0" for p in parts)).hexdigest()[:16]
    target = _cache_dir() / f"kernels-{digest}.so"
    if not target.exists():
        try:
            _compile(cc, target)
        except PermissionError:  # unwritable cache: build in a private temporary folder instead
            target = Path(tempfile.mkdtemp(prefix="mtnet_native_")) / target.name
            _compile(cc, target)
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:  # a damaged cached file (it is written atomically, but disks fail): build it anew
        logger.warning("cached kernel library %s does not load (%s); rebuilding it", target, exc)
        target.unlink()
        _compile(cc, target)
        lib = ctypes.CDLL(str(target))
    for name, argtypes in _SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = ctypes.c_int
    lib.team_size.argtypes, lib.team_size.restype = [_I64], ctypes.c_int
    return lib


def library() -> Optional[ctypes.CDLL]:
    """The loaded kernel library, building it on the first call; None when it cannot be had (see :func:`reason`)."""
    if _state["tried"]:
        return _state["lib"]
    with _lock:
        if not _state["tried"]:
            try:
                _state["lib"], _state["reason"] = _load(), "loaded"
            except Exception as exc:  # any failure means: use the eager path
                _state["lib"], _state["reason"] = None, str(exc)
                logger.info("fused CPU kernels unavailable, using eager PyTorch ops: %s", exc)
            _state["tried"] = True
    return _state["lib"]


def available() -> bool:
    """Whether the fused CPU kernels can run here (builds them on the first call)."""
    return library() is not None


def applies(x: torch.Tensor) -> bool:
    """Whether the kernels run for x: eager execution (tracers, compilers and exporters must see the plain
    PyTorch graph), a float32 CPU tensor, and the kernels built here."""
    eager = not torch.jit.is_tracing() and not torch.compiler.is_compiling()
    return eager and x.device.type == "cpu" and x.dtype == torch.float32 and available()


def reason() -> str:
    """Why the kernels are (not) in use: "loaded", or the error that stopped them."""
    library()
    return _state["reason"]


def team_size(threads: int) -> int:
    """How many threads the kernels run on when asked for ``threads`` (1 when built without OpenMP)."""
    return int(library().team_size(threads))


def _run_planes(fn, args, planes: int, elements: int) -> None:
    """Call ``fn(*args, 0, planes, threads)``: torch's thread count for large work, one thread for small work
    (where starting the team costs more than it saves); MemoryError if the kernel could not get scratch."""
    threads = torch.get_num_threads() if elements >= MIN_PARALLEL_ELEMENTS else 1
    if fn(*args, 0, planes, threads) != 0:
        raise MemoryError(f"{fn.__name__}: the C kernel could not allocate its scratch buffers")


def _geometry(x: torch.Tensor, frames: Optional[torch.Tensor]):
    n, c, t, h, w = (int(s) for s in x.shape)
    kh, kw = (2 if h > 1 else 1), (2 if w > 1 else 1)
    t_out = int(frames.shape[1]) if frames is not None else t
    return n, c, t, h, w, kh, kw, t_out


def _check_fp32_cpu(name: str, *tensors: torch.Tensor) -> None:
    """The kernels read raw float32 memory of CPU tensors: anything else is an error, never a misread."""
    for t in tensors:
        if t.device.type != "cpu" or t.dtype != torch.float32:
            raise ValueError(f"{name}: the C kernels take float32 CPU tensors, got {t.dtype} on {t.device}")


def _inputs(x: torch.Tensor, frames: Optional[torch.Tensor]):
    """x with unit W stride (a copy only if needed), frames as contiguous int64 (or None) after checking that
    they index x's frames, and the frames' pointer."""
    _check_fp32_cpu("softpool2d", x)
    if x.dim() != 5:
        raise ValueError(f"softpool2d: x must be (N, C, T, H, W), got shape {tuple(x.shape)}")
    if x.shape[4] > 1 and x.stride(4) != 1:  # the kernel steps W by 1 and everything else by stride
        x = x.contiguous()
    if frames is None:
        return x, None, None
    frames = frames.to(device="cpu", dtype=torch.int64).contiguous()
    t = int(x.shape[2])
    if frames.dim() != 2 or frames.shape[0] != x.shape[0] or (frames.numel() and not 0 <= int(frames.min())
                                                              <= int(frames.max()) < t):
        raise ValueError(f"softpool2d: frames must be (N={x.shape[0]}, T') indices in [0, {t}), got "
                         f"shape {tuple(frames.shape)}")
    return x, frames, frames.data_ptr()


def softpool2d_forward(x: torch.Tensor, frames: Optional[torch.Tensor] = None) -> torch.Tensor:
    """SoftPool over 2x2 windows of each frame of fp32 CPU x (N, C, T, H, W) (Eq. 5), of the frames
    ``frames`` (N, T') per sample when given (Eq. 4's T() fused in). Returns (N, C, T' or T, H', W')."""
    lib = library()
    x, frames, fptr = _inputs(x, frames)
    n, c, t, h, w, kh, kw, t_out = _geometry(x, frames)
    out = torch.empty((n, c, t_out, (h + kh - 1) // kh, (w + kw - 1) // kw), dtype=x.dtype)
    sn, sc, st, sh, _ = x.stride()
    args = (x.data_ptr(), out.data_ptr(), fptr, c, t_out, h, w, sn, sc, st, sh, kh, kw)
    _run_planes(lib.softpool2d_forward_f32, args, n * c * t_out, n * c * t_out * h * w)
    return out


def softpool2d_backward(x: torch.Tensor, grad: torch.Tensor, frames: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Gradient of :func:`softpool2d_forward` w.r.t. x, ``g_i = grad w_i (1 + x_i - out)``; frames not
    selected get zero. ``frames`` must hold distinct frames per sample (the selection's do)."""
    lib = library()
    x, frames, fptr = _inputs(x, frames)
    n, c, t, h, w, kh, kw, t_out = _geometry(x, frames)
    _check_fp32_cpu("softpool2d_backward", grad)
    grad = grad.contiguous()
    expected = (n, c, t_out, (h + kh - 1) // kh, (w + kw - 1) // kw)
    if tuple(grad.shape) != expected:  # the kernel reads grad by these sizes: never past its end
        raise ValueError(f"softpool2d_backward: grad has shape {tuple(grad.shape)}, expected {expected}")
    grad_x = (torch.zeros if frames is not None else torch.empty)((n, c, t, h, w), dtype=x.dtype)
    sn, sc, st, sh, _ = x.stride()
    args = (x.data_ptr(), grad.data_ptr(), grad_x.data_ptr(), fptr, c, t, t_out, h, w, sn, sc, st, sh, kh, kw)
    _run_planes(lib.softpool2d_backward_f32, args, n * c * t_out, n * c * t_out * h * w)
    return grad_x


def _slot_strides(out: torch.Tensor) -> Tuple[int, int]:
    """(stride of N, stride of C) of ``out`` (N, C, *plane) whose planes are contiguous, e.g. a channel slot of a
    larger contiguous tensor; ValueError otherwise."""
    _, c, *plane = (int(s) for s in out.shape)
    inner, size = [], 1
    for s in reversed(plane):  # a contiguous plane's strides, innermost first
        inner.insert(0, size)
        size *= s
    if any(s > 1 and out.stride(2 + k) != inner[k] for k, s in enumerate(plane)) or (c > 1 and out.stride(1) != size):
        raise ValueError(f"output slot with strides {out.stride()} does not have contiguous (C, plane) rows")
    return int(out.stride(0)), size


def trilinear_forward(x: torch.Tensor, size, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Trilinear resize of fp32 CPU x (N, C, t, h, w) to ``size`` (T, H, W), align_corners=False: the values of
    ``F.interpolate(x, size, mode="trilinear")`` up to float rounding. Returns (N, C, T, H, W), written into
    ``out`` when given (it may be a channel slot of a larger tensor, e.g. ``y[:, k:]``)."""
    _check_fp32_cpu("trilinear_forward", x, *([] if out is None else [out]))
    x = x.contiguous()
    n, c, t, h, w = (int(s) for s in x.shape)
    to, ho, wo = (int(s) for s in size)
    if out is None:
        out = torch.empty((n, c, to, ho, wo), dtype=x.dtype)
    if tuple(out.shape) != (n, c, to, ho, wo) or out.dtype != x.dtype:
        raise ValueError(f"trilinear_forward: out is {tuple(out.shape)} {out.dtype}, expected {(n, c, to, ho, wo)}")
    osn, osc = _slot_strides(out)
    args = (x.data_ptr(), out.data_ptr(), t, h, w, to, ho, wo, c, osn, osc)
    _run_planes(library().trilinear_forward_f32, args, n * c, n * c * to * ho * wo)
    return out


def trilinear_backward(grad: torch.Tensor, in_size) -> torch.Tensor:
    """Gradient of :func:`trilinear_forward` w.r.t. its input of size ``in_size`` (t, h, w), given grad
    (N, C, T, H, W). Returns (N, C, t, h, w)."""
    _check_fp32_cpu("trilinear_backward", grad)
    grad = grad.contiguous()
    n, c, to, ho, wo = (int(s) for s in grad.shape)
    t, h, w = (int(s) for s in in_size)
    grad_x = torch.empty((n, c, t, h, w), dtype=grad.dtype)
    args = (grad.data_ptr(), grad_x.data_ptr(), t, h, w, to, ho, wo)
    _run_planes(library().trilinear_backward_f32, args, n * c, n * c * to * ho * wo)
    return grad_x


def affine_act_into(z: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, out: torch.Tensor,
                    relu: bool) -> torch.Tensor:
    """``out = relu(z * scale + shift)`` per channel (without the ReLU when ``relu`` is False): eval-mode
    BatchNorm + ReLU in one pass. z: fp32 CPU (N, C, T, H, W); scale, shift: (C,); out: (N, C, T, H, W) with
    contiguous (C, plane) rows, e.g. a channel slot of a larger tensor. Returns out."""
    _check_fp32_cpu("affine_act_into", z, out)
    z = z.contiguous()
    n, c = int(z.shape[0]), int(z.shape[1])
    if tuple(out.shape) != tuple(z.shape) or out.dtype != z.dtype:
        raise ValueError(f"affine_act_into: out is {tuple(out.shape)} {out.dtype}, z is {tuple(z.shape)} {z.dtype}")
    scale = scale.detach().to(z.dtype).contiguous()
    shift = shift.detach().to(z.dtype).contiguous()
    osn, plane = _slot_strides(out)
    args = (z.data_ptr(), out.data_ptr(), scale.data_ptr(), shift.data_ptr(), c, plane, osn, int(relu))
    _run_planes(library().affine_act_f32, args, n * c, z.numel())
    return out


def _ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


def gru_layer_forward(gi: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor,
                      save: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The recurrence of one GRU layer from h_0 = 0 (nn.GRU's equations), given the input projections
    gi = x W_ih^T + b_ih (N, T, 3H) and W_hh (3H, H), b_hh (3H,). Returns the outputs (N, T, H) and, when
    ``save``, what :func:`gru_layer_backward` needs (N, T, 4H)."""
    _check_fp32_cpu("gru_layer_forward", gi, w_hh, b_hh)
    gi, w_hh, b_hh = gi.contiguous(), w_hh.detach().contiguous(), b_hh.detach().contiguous()
    n, t, h3 = (int(s) for s in gi.shape)
    h = h3 // 3
    if h3 != 3 * h or tuple(w_hh.shape) != (h3, h) or tuple(b_hh.shape) != (h3,):
        raise ValueError(f"gru_layer_forward: gi {tuple(gi.shape)}, w_hh {tuple(w_hh.shape)}, b_hh "
                         f"{tuple(b_hh.shape)} do not fit (N, T, 3H), (3H, H), (3H,)")
    out = torch.empty((n, t, h), dtype=gi.dtype)
    saved = torch.empty((n, t, 4 * h), dtype=gi.dtype) if save else None
    w_hh_t = w_hh.t().contiguous()  # (H, 3H): the kernel's step is then a contiguous multiply-add per input
    args = (gi.data_ptr(), w_hh_t.data_ptr(), b_hh.data_ptr(), out.data_ptr(), _ptr(saved), t, h)
    _run_planes(library().gru_layer_forward_f32, args, n, n * t * h3 * h)
    return out, saved


def gru_layer_backward(dout: torch.Tensor, w_hh: torch.Tensor, out: torch.Tensor,
                       saved: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Backward of :func:`gru_layer_forward` through time: from the outputs' gradient dout (N, T, H), the
    gradients of the input projections and of the hidden projections W_hh h + b_hh, both (N, T, 3H)."""
    _check_fp32_cpu("gru_layer_backward", dout, w_hh, out, saved)
    dout, w_hh = dout.contiguous(), w_hh.detach().contiguous()
    n, t, h = (int(s) for s in out.shape)
    if tuple(dout.shape) != (n, t, h) or tuple(saved.shape) != (n, t, 4 * h):
        raise ValueError(f"gru_layer_backward: dout {tuple(dout.shape)} / saved {tuple(saved.shape)} do not fit "
                         f"the outputs {(n, t, h)}")
    dgi = torch.empty((n, t, 3 * h), dtype=dout.dtype)
    dgh = torch.empty((n, t, 3 * h), dtype=dout.dtype)
    args = (dout.data_ptr(), w_hh.data_ptr(), out.contiguous().data_ptr(), saved.data_ptr(), dgi.data_ptr(),
            dgh.data_ptr(), t, h)
    _run_planes(library().gru_layer_backward_f32, args, n, n * t * 3 * h * h)
    return dgi, dgh


def triplet_select(x: torch.Tensor, highest: bool) -> torch.Tensor:
    """Indices (N, T') of the floor(T/2) centre frames of fp32 CPU x (N, C, T, H, W) with the lowest (or
    highest) triplet cosine scores, ascending, ties to the earlier frame; every frame when T <= 2 (Eq. 6-7,
    spec #1-#5): the indices of :func:`mtnet_plugin.ops.triplet_cosine_select`."""
    _check_fp32_cpu("triplet_select", x)
    x = x.contiguous()
    n, c, t, h, w = (int(s) for s in x.shape)
    keep = t if t <= 2 else t // 2
    idx = torch.empty((n, keep), dtype=torch.int64)
    args = (x.data_ptr(), idx.data_ptr(), c, t, h * w, int(highest), keep)
    _run_planes(library().triplet_select_f32, args, n, x.numel())
    return idx
