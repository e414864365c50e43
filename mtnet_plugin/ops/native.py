"""Fused CPU kernels for MTNet: SoftPool (``csrc/softpool.c``), the trilinear resize (``csrc/resize.c``),
eval-mode BatchNorm + ReLU into a slot (``csrc/norm_act.c``), the GRU recurrence (``csrc/gru.c``) and the
triplet cosine frame selection (``csrc/select.c``): built with the C compiler on first use, called via ctypes.

Plain C without PyTorch headers compiles in about a second, so nothing is built at install time and a
machine without a compiler loses only speed: :func:`available` is then False and the ops run their eager
PyTorch path, which gives the same values (tests compare the two, with gradients).

Only the ops modules call into this file, through one door per op (docs/design.md, "CPU kernels"): every
wrapper here checks what its C entry point assumes (float32 CPU tensors, sizes including zero, every side
tensor's shape, strides, outputs that overlap nothing, frame indices in range; repeated frames take a gather
path) and raises ValueError before C reads or writes memory.

- Cache: ``$MTNET_NATIVE_CACHE``, else ``$XDG_CACHE_HOME/mtnet_plugin`` (``~/.cache/mtnet_plugin``), in a
  per-user folder ``native-uid<uid>`` made mode 0700. Before anything is loaded, the folder must be a real
  folder owned by the current user and not writable by group or others, and the library a regular file owned by
  the current user and not writable by group or others (checked on the open file, which is what is loaded). A
  folder or file that fails is refused with a warning and never deleted; the kernels are then built in a
  private temporary folder. One shared object per source, flags, compiler and CPU (it is built for this CPU),
  built under an exclusive ``fcntl`` lock (concurrent processes such as DDP ranks build it once), written
  to a temporary name, made 0755 and renamed; temporary files a crashed build left are removed under the lock.
- ``MTNET_NATIVE=0`` switches the kernel off (eager everywhere); ``CC`` names the compiler (default ``cc``);
  ``MTNET_CHANNELWISE_BACKWARD=aten`` switches off :mod:`.channelwise`'s backward (no kernel, same switch idea).
- Flags: :func:`flag_sets` per CPU architecture (x86-64: ``-march=native -mprefer-vector-width=256``;
  aarch64, ppc64le: ``-mcpu=native``) with ``-fopenmp``; a compiler that refuses the tuning keeps OpenMP,
  one that refuses OpenMP keeps the tuning.
- Threads: built with ``-fopenmp``, the kernels split their planes over ``torch.get_num_threads()`` OpenMP
  threads. Loaded after torch, whose OpenMP runtime has the same soname, they run on torch's own thread
  pool instead of a second one spinning against it. Where ``-fopenmp`` does not build, they run serially.
- The ctypes argument lists (``_SIGNATURES``) are compared with the entry points' prototypes parsed from the C
  sources before the library is used: a mismatch leaves the kernels off instead of corrupting memory.
"""
import contextlib
import ctypes
import fcntl
import hashlib
import logging
import os
import platform
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

logger = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = tuple(CSRC / f for f in ("softpool.c", "resize.c", "norm_act.c", "gru.c", "select.c"))
HEADERS = (CSRC / "parallel.h", CSRC / "floatbits.h")
# -ffinite-math-only lets fmaxf become a vector max (softpool.c tests for inf and NaN by their bits instead).
BASE_FLAGS = ("-O3", "-ffinite-math-only", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared")
OPENMP = ("-fopenmp",)
# Per architecture, the flags that tune the code for this CPU and its vector units. x86-64: 256-bit vectors
# are faster than gcc's 512-bit choice on wide planes here, equal on small ones (docs/benchmarks.md). Arm and
# POWER compilers spell "this CPU" -mcpu=native (-O3 vectorises with NEON / VSX by default there).
TUNING = {
    "x86_64": ("-march=native", "-mprefer-vector-width=256"),
    "aarch64": ("-mcpu=native",),
    "ppc64le": ("-mcpu=native",),
}
ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armv8l": "aarch64"}
MIN_PARALLEL_ELEMENTS = 1 << 16  # below this, one thread: starting an OpenMP team costs more than it saves
CACHE_PREFIX = "native-uid"  # the per-user folder inside the cache root
TEMP_PREFIX = ".tmp-kernels-"  # a build's temporary output (removed under the lock when a crash left it)


def flag_sets(machine: Optional[str] = None) -> Tuple[Tuple[str, ...], ...]:
    """The compiler flag sets to try, in order, for CPU architecture ``machine`` (``platform.machine()``):
    OpenMP and tuning; OpenMP alone (a compiler that refuses the tuning flags); tuning alone (no OpenMP, e.g.
    Apple's clang); neither. An architecture without a TUNING entry gets the plain -O3 builds, with OpenMP."""
    arch = (machine or platform.machine()).lower()
    tuning = TUNING.get(ARCH_ALIASES.get(arch, arch), ())
    sets = [BASE_FLAGS + tuning + OPENMP, BASE_FLAGS + OPENMP, BASE_FLAGS + tuning, BASE_FLAGS]
    return tuple(dict.fromkeys(sets))  # without tuning flags the sets repeat: each once


_lock = threading.Lock()
_state = {"lib": None, "tried": False, "reason": "not built yet"}

_I64 = ctypes.c_int64
_PTR = ctypes.c_void_p
# Every entry point ends with (begin, end, threads) over planes or sequences and returns 0, or -1 when its
# scratch ran out. Checked against the C prototypes (_c_signatures) before the library is used.
_SIGNATURES = {
    "softpool2d_forward_f32": [_PTR, _PTR, _PTR] + [_I64] * 13,
    "softpool2d_backward_f32": [_PTR, _PTR, _PTR, _PTR] + [_I64] * 14,
    "trilinear_forward_f32": [_PTR, _PTR] + [_I64] * 12,
    "trilinear_backward_f32": [_PTR, _PTR] + [_I64] * 9,
    "affine_act_f32": [_PTR, _PTR, _PTR, _PTR] + [_I64] * 7,
    "gru_layer_forward_f32": [_PTR] * 5 + [_I64] * 5,
    "gru_layer_backward_f32": [_PTR] * 6 + [_I64] * 5,
    "triplet_select_f32": [_PTR, _PTR] + [_I64] * 8,
    "team_size": [_I64],
}
_C_TYPES = {"float*": _PTR, "int64_t*": _PTR, "int64_t": _I64}
_PROTOTYPE = re.compile(r"^int\s+(\w+)\s*\(([^)]*)\)\s*\{", re.M)


class UnsafeCacheError(RuntimeError):
    """A cache folder or file that may not be loaded from (another owner, writable by others, not a regular
    file or folder)."""


def _c_signatures(sources: Sequence[Path] = SOURCES) -> Dict[str, List[type]]:
    """The exported entry points (``int name(...) {`` at the start of a line) of the C sources, with their
    parameters as ctypes types; a parameter type this loader does not pass is a RuntimeError."""
    found = {}
    for path in sources:
        for name, params in _PROTOTYPE.findall(path.read_text()):
            types = []
            for param in params.split(","):
                words = param.replace("*", " * ").replace("const", " ").replace("restrict", " ").split()
                spelled = "".join(words[:-1])  # drop the parameter name
                if spelled not in _C_TYPES:
                    raise RuntimeError(f"{path.name}: {name} has a parameter of type {spelled!r} the loader "
                                       "cannot pass")
                types.append(_C_TYPES[spelled])
            found[name] = types
    return found


def check_signatures(sources: Sequence[Path] = SOURCES) -> None:
    """RuntimeError unless every entry point of ``_SIGNATURES`` has exactly that parameter list in C."""
    found = _c_signatures(sources)
    for name, argtypes in _SIGNATURES.items():
        if name not in found:
            raise RuntimeError(f"entry point {name} is missing from the C sources")
        if found[name] != argtypes:
            raise RuntimeError(f"entry point {name}: the C prototype has {len(found[name])} parameters "
                               f"{[t.__name__ for t in found[name]]}, the loader passes {len(argtypes)} "
                               f"{[t.__name__ for t in argtypes]}")


def _cpu_id() -> str:
    """The model name and feature flags of the first CPU (the build is tuned for them)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [ln for ln in lines if ln.split(":")[0].strip() in ("model name", "flags", "Features", "CPU part")]
    return "\n".join(keep[:4]) + "\n" + platform.machine()


def _cache_dir() -> Path:
    """The cache root: ``$MTNET_NATIVE_CACHE``, else ``$XDG_CACHE_HOME/mtnet_plugin``, else
    ``~/.cache/mtnet_plugin`` (the libraries live in a per-user folder inside it, :func:`user_cache_dir`)."""
    if os.environ.get("MTNET_NATIVE_CACHE"):
        return Path(os.environ["MTNET_NATIVE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mtnet_plugin"


def user_cache_dir() -> Path:
    """The current user's folder of built libraries inside the cache root."""
    return _cache_dir() / f"{CACHE_PREFIX}{os.geteuid()}"


def _unsafe(st: os.stat_result, kind: str) -> Optional[str]:
    """Why a folder (``kind`` "folder") or library ("file") with this lstat/fstat may not be trusted, or None."""
    is_kind = stat.S_ISDIR(st.st_mode) if kind == "folder" else stat.S_ISREG(st.st_mode)
    if not is_kind:
        return f"not a regular {kind} (a link or another kind of file)"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not by the current user (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _trusted_folder(folder: Path) -> Path:
    """Create ``folder`` mode 0700 if needed and check it (a real folder, the current user's, not writable by
    group or others); UnsafeCacheError otherwise (nothing is changed or deleted)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    reason = _unsafe(os.lstat(folder), "folder")
    if reason:
        raise UnsafeCacheError(f"cache folder {folder} is {reason}")
    return folder


def _private_folder() -> Path:
    """A fresh folder only the current user can use (mkdtemp makes it 0700)."""
    return Path(tempfile.mkdtemp(prefix="mtnet_native_"))


@contextlib.contextmanager
def _build_lock(folder: Path):
    """An exclusive fcntl lock on ``folder/.build.lock``: one process builds, the others wait and then load."""
    fd = os.open(folder / ".build.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _clean_temps(folder: Path) -> None:
    """Remove the current user's temporary build outputs in ``folder`` (called under the build lock, so none
    of them belongs to a build still running)."""
    for p in folder.glob(TEMP_PREFIX + "*"):
        try:
            if p.lstat().st_uid == os.geteuid() and stat.S_ISREG(p.lstat().st_mode):
                p.unlink()
                logger.info("removed %s, left by an interrupted kernel build", p)
        except OSError:
            pass


def _compile(cc: str, target: Path, sets: Sequence[Sequence[str]] = ()) -> Tuple[str, ...]:
    """Compile SOURCES to ``target`` atomically (a temporary file in the same folder, made 0755, then renamed)
    with the first of ``sets`` (default :func:`flag_sets`) the compiler accepts. Returns those flags."""
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".so", dir=str(target.parent))
    os.close(fd)
    try:
        for flags in sets or flag_sets():
            cmd = [cc, *flags, "-o", tmp, *(str(s) for s in SOURCES)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                break
        else:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
        return tuple(flags)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_open_fds: List[int] = []  # descriptors of loaded libraries, kept open: a /proc/self/fd name is never reused


def _open_trusted(target: Path) -> ctypes.CDLL:
    """dlopen ``target`` after checking it (a regular file, not a link, of the current user, not writable by
    group or others). The open file descriptor that was checked is the one loaded (``/proc/self/fd/N``, kept
    open), so the file cannot be swapped in between. UnsafeCacheError for a refused file, OSError when it
    does not load."""
    reason = _unsafe(os.lstat(target), "file")
    if reason:
        raise UnsafeCacheError(f"kernel library {target} is {reason}")
    fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        reason = _unsafe(os.fstat(fd), "file")
        if reason:
            raise UnsafeCacheError(f"kernel library {target} is {reason}")
        by_fd = os.path.isdir("/proc/self/fd")
        lib = ctypes.CDLL(f"/proc/self/fd/{fd}" if by_fd else str(target))
    except BaseException:
        os.close(fd)
        raise
    if by_fd:
        _open_fds.append(fd)
    else:
        os.close(fd)
    lib.mtnet_path = str(target)
    return lib


def _load_or_build(cc: str, target: Path) -> ctypes.CDLL:
    """Under the folder's build lock: clean leftovers, build ``target`` if missing, load it (rebuilding the
    current user's own damaged file once). A refused file raises UnsafeCacheError and is left in place."""
    with _build_lock(target.parent):
        _clean_temps(target.parent)
        if not os.path.lexists(target):
            _compile(cc, target)
        try:
            return _open_trusted(target)
        except UnsafeCacheError:
            raise
        except OSError as exc:  # the current user's file that does not load (a failed disk): build it anew
            logger.warning("cached kernel library %s does not load (%s); rebuilding it", target, exc)
            _compile(cc, target)
            return _open_trusted(target)


def library_name(cc: str) -> str:
    """The file name of the library built by compiler ``cc`` from these sources, flags, for this CPU."""
    parts = [s.read_bytes() for s in SOURCES + HEADERS] + [repr(flag_sets()).encode(), cc.encode(),
                                                           _cpu_id().encode()]
    digest = hashlib.sha256(b"".join(p + b"\0" for p in parts)).hexdigest()[:16]
    return f"kernels-{digest}.so"


def _load() -> ctypes.CDLL:
    if os.environ.get("MTNET_NATIVE", "1") == "0":
        raise RuntimeError("switched off by MTNET_NATIVE=0")
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        raise RuntimeError(f"no C compiler ({os.environ.get('CC', 'cc')!r} not on PATH)")
    check_signatures()
    name = library_name(cc)
    try:
        lib = _load_or_build(cc, _trusted_folder(user_cache_dir()) / name)
    except (UnsafeCacheError, PermissionError) as exc:  # never load it, never delete it: build privately
        logger.warning("not using the kernel cache (%s); building the kernels in a private temporary folder", exc)
        lib = _load_or_build(cc, _private_folder() / name)
    for fname, argtypes in _SIGNATURES.items():
        getattr(lib, fname).argtypes = argtypes
        getattr(lib, fname).restype = ctypes.c_int
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


def kernel_eligible(x: torch.Tensor) -> bool:
    """Whether the kernels run for x: eager execution (tracers, compilers and exporters must see the plain
    PyTorch graph), a float32 CPU tensor, and the kernels built here."""
    eager = not torch.jit.is_tracing() and not torch.compiler.is_compiling()
    return eager and x.device.type == "cpu" and x.dtype == torch.float32 and available()


def channelwise_backward_switched_off() -> bool:
    """``MTNET_CHANNELWISE_BACKWARD=aten``: :mod:`.channelwise` leaves every call to ``F.conv3d`` (the environment
    is read here, the ops' one module that may read it)."""
    return os.environ.get("MTNET_CHANNELWISE_BACKWARD", "") == "aten"


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


# ---- what every entry point checks before C touches memory ------------------------------------------------


def _check_fp32_cpu(name: str, *tensors: torch.Tensor) -> None:
    """The kernels read raw float32 memory of CPU tensors: anything else is an error, never a misread."""
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a tensor, got {type(t).__name__}")
        if t.device.type != "cpu" or t.dtype != torch.float32:
            raise ValueError(f"{name}: the C kernels take float32 CPU tensors, got {t.dtype} on {t.device}")


def _check_dim(name: str, what: str, t: torch.Tensor, dim: int, layout: str) -> None:
    if t.dim() != dim:
        raise ValueError(f"{name}: {what} must be {layout}, got shape {tuple(t.shape)}")


def _span(t: torch.Tensor) -> Tuple[int, int]:
    """[first, last + 1) byte addresses that t's elements can occupy."""
    start = t.data_ptr()
    last = sum((s - 1) * st for s, st in zip(t.shape, t.stride()) if s > 0)
    return start, start + (last + 1) * t.element_size()


def _check_disjoint(name: str, out: torch.Tensor, *inputs: torch.Tensor) -> None:
    """``out`` may share no memory with an input the kernel reads while writing it."""
    if out.numel() == 0:
        return
    a0, a1 = _span(out)
    for t in inputs:
        if t is None or t.numel() == 0:
            continue
        b0, b1 = _span(t)
        if a0 < b1 and b0 < a1:
            raise ValueError(f"{name}: the output overlaps an input's memory; pass a separate output tensor")


def _slot_strides(out: torch.Tensor, name: str = "output") -> Tuple[int, int]:
    """(stride of N, stride of C) of ``out`` (N, C, *plane) whose (C, plane) rows are contiguous and whose
    samples do not overlap (e.g. a channel slot of a larger contiguous tensor); ValueError otherwise (an
    expanded or overlapping output would be written twice at one address)."""
    n, c, *plane = (int(s) for s in out.shape)
    inner, size = [], 1
    for s in reversed(plane):  # a contiguous plane's strides, innermost first
        inner.insert(0, size)
        size *= s
    if any(s > 1 and out.stride(2 + k) != inner[k] for k, s in enumerate(plane)) or (c > 1 and out.stride(1) != size):
        raise ValueError(f"{name}: output slot with strides {out.stride()} does not have contiguous (C, plane) rows")
    if n > 1 and out.stride(0) < c * size:
        raise ValueError(f"{name}: output with strides {out.stride()} for shape {tuple(out.shape)} overlaps itself "
                         "(an expanded tensor?): every element needs its own memory")
    return int(out.stride(0)), size


def _frames(name: str, frames: Optional[torch.Tensor], n: int, t: int) -> Optional[torch.Tensor]:
    """frames as contiguous int64 CPU (N, T') indices into t frames; ValueError for anything else."""
    if frames is None:
        return None
    if not isinstance(frames, torch.Tensor) or frames.dtype.is_floating_point or frames.dtype.is_complex \
            or frames.dtype == torch.bool:
        raise ValueError(f"{name}: frames must be an integer tensor of frame indices, got "
                         f"{getattr(frames, 'dtype', type(frames).__name__)}")
    frames = frames.to(device="cpu", dtype=torch.int64).contiguous()
    if frames.dim() != 2 or frames.shape[0] != n or (frames.numel() and not 0 <= int(frames.min())
                                                     <= int(frames.max()) < t):
        raise ValueError(f"{name}: frames must be (N={n}, T') indices in [0, {t}), got shape "
                         f"{tuple(frames.shape)}" + (f" with values in [{int(frames.min())}, {int(frames.max())}]"
                                                     if frames.numel() else ""))
    return frames


def has_repeats(frames: torch.Tensor) -> bool:
    """Whether a sample of ``frames`` (N, T') names one frame twice."""
    if frames.shape[1] < 2:
        return False
    s = frames.sort(dim=1).values
    return bool((s[:, 1:] == s[:, :-1]).any())


def _pooled(h: int, w: int) -> Tuple[int, int, int, int]:
    kh, kw = (2 if h > 1 else 1), (2 if w > 1 else 1)
    return kh, kw, (h + kh - 1) // kh, (w + kw - 1) // kw


def _softpool_input(name: str, x: torch.Tensor) -> torch.Tensor:
    _check_fp32_cpu(name, x)
    _check_dim(name, "x", x, 5, "(N, C, T, H, W)")
    if x.shape[4] > 1 and x.stride(4) != 1:  # the kernel steps W by 1 and everything else by stride
        x = x.contiguous()
    return x


# ---- the entry points ------------------------------------------------------------------------------------


def softpool2d_forward(x: torch.Tensor, frames: Optional[torch.Tensor] = None) -> torch.Tensor:
    """SoftPool over 2x2 windows of each frame of fp32 CPU x (N, C, T, H, W) (Eq. 5), of the frames
    ``frames`` (N, T') per sample when given (Eq. 4's T() fused in; repeats allowed). Returns
    (N, C, T' or T, H', W')."""
    x = _softpool_input("softpool2d", x)
    n, c, t, h, w = (int(s) for s in x.shape)
    frames = _frames("softpool2d", frames, n, t)
    kh, kw, h2, w2 = _pooled(h, w)
    t_out = int(frames.shape[1]) if frames is not None else t
    out = torch.empty((n, c, t_out, h2, w2), dtype=x.dtype)
    if out.numel() == 0:  # nothing to pool (a zero-size dimension): C is not called
        return out
    sn, sc, st, sh, _ = x.stride()
    args = (x.data_ptr(), out.data_ptr(), _ptr(frames), c, t_out, h, w, sn, sc, st, sh, kh, kw)
    _run_planes(library().softpool2d_forward_f32, args, n * c * t_out, n * c * t_out * h * w)
    return out


def softpool2d_backward(x: torch.Tensor, grad: torch.Tensor, frames: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Gradient of :func:`softpool2d_forward` w.r.t. x, ``g_i = grad w_i (1 + x_i - out)``; frames not
    selected get zero, a frame selected twice the sum of both gradients."""
    x = _softpool_input("softpool2d_backward", x)
    n, c, t, h, w = (int(s) for s in x.shape)
    frames = _frames("softpool2d_backward", frames, n, t)
    _check_fp32_cpu("softpool2d_backward", grad)
    kh, kw, h2, w2 = _pooled(h, w)
    t_out = int(frames.shape[1]) if frames is not None else t
    expected = (n, c, t_out, h2, w2)
    if tuple(grad.shape) != expected:  # the kernel reads grad by these sizes: never past its end
        raise ValueError(f"softpool2d_backward: grad has shape {tuple(grad.shape)}, expected {expected}")
    if frames is not None and has_repeats(frames):
        # The kernel writes each selected frame's gradient once (it would keep one of two): pool the gathered
        # frames instead and add their gradients up per frame.
        gathered = torch.gather(x, 2, frames.view(n, 1, t_out, 1, 1).expand(n, c, t_out, h, w))
        g = softpool2d_backward(gathered, grad)
        index = frames.view(n, 1, t_out, 1, 1).expand(n, c, t_out, h, w)
        return torch.zeros((n, c, t, h, w), dtype=x.dtype).scatter_add_(2, index, g)
    grad = grad.contiguous()
    grad_x = (torch.zeros if frames is not None else torch.empty)((n, c, t, h, w), dtype=x.dtype)
    if grad.numel() == 0 or grad_x.numel() == 0:
        return grad_x.zero_()
    sn, sc, st, sh, _ = x.stride()
    args = (x.data_ptr(), grad.data_ptr(), grad_x.data_ptr(), _ptr(frames), c, t, t_out, h, w, sn, sc, st, sh,
            kh, kw)
    _run_planes(library().softpool2d_backward_f32, args, n * c * t_out, n * c * t_out * h * w)
    return grad_x


def _sizes(name: str, what: str, size) -> Tuple[int, int, int]:
    size = tuple(int(s) for s in size)
    if len(size) != 3 or min(size) <= 0:
        raise ValueError(f"{name}: {what} must be three sizes > 0 (T, H, W), got {size}")
    return size


def trilinear_forward(x: torch.Tensor, size, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Trilinear resize of fp32 CPU x (N, C, t, h, w) to ``size`` (T, H, W), align_corners=False: the values of
    ``F.interpolate(x, size, mode="trilinear")`` up to float rounding. Returns (N, C, T, H, W), written into
    ``out`` when given (it may be a channel slot of a larger tensor, e.g. ``y[:, k:]``). Every input and
    output size must be > 0 (as for F.interpolate); N or C may be 0."""
    _check_fp32_cpu("trilinear_forward", x, *([] if out is None else [out]))
    _check_dim("trilinear_forward", "x", x, 5, "(N, C, t, h, w)")
    t, h, w = _sizes("trilinear_forward", "the input's (t, h, w)", x.shape[2:])
    to, ho, wo = _sizes("trilinear_forward", "size", size)
    n, c = int(x.shape[0]), int(x.shape[1])
    if out is None:
        out = torch.empty((n, c, to, ho, wo), dtype=x.dtype)
    if tuple(out.shape) != (n, c, to, ho, wo):
        raise ValueError(f"trilinear_forward: out is {tuple(out.shape)}, expected {(n, c, to, ho, wo)}")
    osn, osc = _slot_strides(out, "trilinear_forward")
    _check_disjoint("trilinear_forward", out, x)
    if out.numel() == 0:
        return out
    x = x.contiguous()
    args = (x.data_ptr(), out.data_ptr(), t, h, w, to, ho, wo, c, osn, osc)
    _run_planes(library().trilinear_forward_f32, args, n * c, n * c * to * ho * wo)
    return out


def trilinear_backward(grad: torch.Tensor, in_size) -> torch.Tensor:
    """Gradient of :func:`trilinear_forward` w.r.t. its input of size ``in_size`` (t, h, w), given grad
    (N, C, T, H, W). Returns (N, C, t, h, w)."""
    _check_fp32_cpu("trilinear_backward", grad)
    _check_dim("trilinear_backward", "grad", grad, 5, "(N, C, T, H, W)")
    to, ho, wo = _sizes("trilinear_backward", "the gradient's (T, H, W)", grad.shape[2:])
    t, h, w = _sizes("trilinear_backward", "in_size", in_size)
    n, c = int(grad.shape[0]), int(grad.shape[1])
    grad_x = torch.empty((n, c, t, h, w), dtype=grad.dtype)
    if grad_x.numel() == 0:
        return grad_x
    grad = grad.contiguous()
    args = (grad.data_ptr(), grad_x.data_ptr(), t, h, w, to, ho, wo)
    _run_planes(library().trilinear_backward_f32, args, n * c, n * c * to * ho * wo)
    return grad_x


def _per_channel(name: str, what: str, v: torch.Tensor, c: int, dtype: torch.dtype) -> torch.Tensor:
    """A (C,) side tensor as contiguous CPU ``dtype``; ValueError when it does not hold exactly C values."""
    if not isinstance(v, torch.Tensor) or v.dim() != 1 or int(v.shape[0]) != c:
        shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"{name}: {what} must have shape ({c},), one value per channel, got {shape}")
    return v.detach().to(device="cpu", dtype=dtype).contiguous()


def affine_act_into(z: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, out: torch.Tensor,
                    relu: bool) -> torch.Tensor:
    """``out = relu(z * scale + shift)`` per channel (without the ReLU when ``relu`` is False): eval-mode
    BatchNorm + ReLU in one pass. z: fp32 CPU (N, C, ...); scale, shift: (C,); out: z's shape with
    contiguous (C, plane) rows, e.g. a channel slot of a larger tensor, sharing no memory with z. Returns out."""
    _check_fp32_cpu("affine_act_into", z, out)
    if z.dim() < 2:
        raise ValueError(f"affine_act_into: z must be (N, C, ...), got shape {tuple(z.shape)}")
    if tuple(out.shape) != tuple(z.shape):
        raise ValueError(f"affine_act_into: out is {tuple(out.shape)}, z is {tuple(z.shape)}")
    n, c = int(z.shape[0]), int(z.shape[1])
    scale = _per_channel("affine_act_into", "scale", scale, c, z.dtype)
    shift = _per_channel("affine_act_into", "shift", shift, c, z.dtype)
    osn, plane = _slot_strides(out, "affine_act_into")
    _check_disjoint("affine_act_into", out, z)
    if out.numel() == 0:
        return out
    z = z.contiguous()
    args = (z.data_ptr(), out.data_ptr(), scale.data_ptr(), shift.data_ptr(), c, plane, osn, int(bool(relu)))
    _run_planes(library().affine_act_f32, args, n * c, z.numel())
    return out


def _ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


def _gru_weights(name: str, w_hh: torch.Tensor, h: int, b_hh: Optional[torch.Tensor] = None):
    if tuple(w_hh.shape) != (3 * h, h):
        raise ValueError(f"{name}: w_hh must be (3H, H) = {(3 * h, h)}, got {tuple(w_hh.shape)}")
    if b_hh is not None and tuple(b_hh.shape) != (3 * h,):
        raise ValueError(f"{name}: b_hh must be (3H,) = {(3 * h,)}, got {tuple(b_hh.shape)}")


def gru_layer_forward(gi: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor,
                      save: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The recurrence of one GRU layer from h_0 = 0 (nn.GRU's equations), given the input projections
    gi = x W_ih^T + b_ih (N, T, 3H) and W_hh (3H, H), b_hh (3H,). Returns the outputs (N, T, H) and, when
    ``save``, what :func:`gru_layer_backward` needs (N, T, 4H)."""
    _check_fp32_cpu("gru_layer_forward", gi, w_hh, b_hh)
    _check_dim("gru_layer_forward", "gi", gi, 3, "(N, T, 3H)")
    n, t, h3 = (int(s) for s in gi.shape)
    h = h3 // 3
    if h3 != 3 * h:
        raise ValueError(f"gru_layer_forward: gi's last size {h3} is not 3H")
    _gru_weights("gru_layer_forward", w_hh, h, b_hh)
    out = torch.empty((n, t, h), dtype=gi.dtype)
    saved = torch.empty((n, t, 4 * h), dtype=gi.dtype) if save else None
    if out.numel() == 0:
        return out, saved
    gi, b_hh = gi.contiguous(), b_hh.detach().contiguous()
    w_hh_t = w_hh.detach().t().contiguous()  # (H, 3H): the kernel's step is then a contiguous multiply-add
    args = (gi.data_ptr(), w_hh_t.data_ptr(), b_hh.data_ptr(), out.data_ptr(), _ptr(saved), t, h)
    _run_planes(library().gru_layer_forward_f32, args, n, n * t * h3 * h)
    return out, saved


def gru_layer_backward(dout: torch.Tensor, w_hh: torch.Tensor, out: torch.Tensor,
                       saved: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Backward of :func:`gru_layer_forward` through time: from the outputs' gradient dout (N, T, H), the
    gradients of the input projections and of the hidden projections W_hh h + b_hh, both (N, T, 3H)."""
    _check_fp32_cpu("gru_layer_backward", dout, w_hh, out, saved)
    _check_dim("gru_layer_backward", "out", out, 3, "(N, T, H)")
    n, t, h = (int(s) for s in out.shape)
    if tuple(dout.shape) != (n, t, h) or tuple(saved.shape) != (n, t, 4 * h):
        raise ValueError(f"gru_layer_backward: dout {tuple(dout.shape)} / saved {tuple(saved.shape)} do not fit "
                         f"the outputs {(n, t, h)}")
    _gru_weights("gru_layer_backward", w_hh, h)
    dgi = torch.empty((n, t, 3 * h), dtype=dout.dtype)
    dgh = torch.empty((n, t, 3 * h), dtype=dout.dtype)
    if dgi.numel() == 0:
        return dgi, dgh
    dout, w_hh, out, saved = (v.detach().contiguous() for v in (dout, w_hh, out, saved))
    args = (dout.data_ptr(), w_hh.data_ptr(), out.data_ptr(), saved.data_ptr(), dgi.data_ptr(), dgh.data_ptr(), t, h)
    _run_planes(library().gru_layer_backward_f32, args, n, n * t * 3 * h * h)
    return dgi, dgh


def triplet_select(x: torch.Tensor, highest: bool) -> torch.Tensor:
    """Indices (N, T') of the floor(T/2) centre frames of fp32 CPU x (N, C, T, H, W) with the lowest (or
    highest) triplet cosine scores, ascending: the scores in float64 rounded to multiples of ``2**-SCORE_BITS``
    (csrc/select.c), ties to the earlier frame; every frame when T <= 2 (Eq. 6-7, spec #1-#5): the indices of
    :func:`mtnet_plugin.ops.triplet_cosine_select` on every path."""
    _check_fp32_cpu("triplet_select", x)
    _check_dim("triplet_select", "x", x, 5, "(N, C, T, H, W)")
    n, c, t, h, w = (int(s) for s in x.shape)
    keep = t if t <= 2 else t // 2
    if t <= 2 or x.numel() == 0:  # every frame, or (C or H * W = 0) every score 0: the earliest candidates
        first = 0 if t <= 2 else 1
        return torch.arange(first, first + keep, dtype=torch.int64).expand(n, keep).contiguous()
    x = x.contiguous()
    idx = torch.empty((n, keep), dtype=torch.int64)
    args = (x.data_ptr(), idx.data_ptr(), c, t, h * w, int(bool(highest)), keep)
    _run_planes(library().triplet_select_f32, args, n, x.numel())
    return idx
