"""Checkpoints in PySlowFast's layout, written atomically and resumable.

Layout: ``OUTPUT_DIR/checkpoints/[{TASK}_]checkpoint_epoch_{epoch + 1:05d}.pyth``, PySlowFast's names; auto-resume
and testing consider only names of exactly this form for the run's ``TASK`` (``backup_of_checkpoint_epoch_00100.pyth``
or another task's files in the folder are never picked). A run stopped by a signal inside an epoch (preemption)
writes ``..._epoch_{epoch + 1:05d}_iter_{iterations done:05d}.pyth``, which only auto-resume reads. Each is a dict
with PySlowFast's keys
``epoch`` (0-based, the epoch just finished), ``model_state``, ``optimizer_state``, ``cfg`` (YAML text) and
``scaler_state`` (when ``TRAIN.MIXED_PRECISION``), plus our keys ``rng_state`` (torch / CUDA / numpy / python
generators as tensors and numbers) and ``multigrid_phase``. Everything is a tensor, number, string or a container
of those, so files load with ``torch.load(weights_only=True)`` — ours, and PySlowFast's.

A write goes to a temporary file in the same directory (``.tmp_HOST_PID_*.pyth.partial``), is flushed and fsynced,
then renamed over the target (``os.replace``), so a crash never leaves a truncated ``.pyth``. A new run removes the
temporary files whose writer process is gone from this host, never a live writer's. Auto-resume still checks each
candidate and skips one that does not load (e.g. truncated by a disk problem), with a warning.

One live training run per OUTPUT_DIR: the main rank holds ``OUTPUT_DIR/run.lock`` (pid, host, start time) while it
trains (:func:`acquire_run_lock`); a second run stops at start naming the holder, and a lock left by a killed run is
taken over with a warning.

A checkpoint the config names (``TRAIN/TEST.CHECKPOINT_FILE_PATH``) that cannot be read, is not a checkpoint, or
matches none of the model's tensors is an error naming the file and the key (:class:`CheckpointError`), raised at
start. A partial match loads with warnings, as in PySlowFast, and the log states the share of the model's parameter
elements it filled; below ``min_loaded_share`` (``TRAIN.CHECKPOINT_MIN_LOADED_SHARE`` for the file
``TRAIN.CHECKPOINT_FILE_PATH`` names) it is an error instead, so a checkpoint of another model cannot pass as
fine-tuning. A classifier that differs only in its class count keeps its fresh initialisation and, being a small
share of the model, loads (docs/recipes.md).
"""
import errno
import json
import logging
import os
import pickle
import random
import re
import shutil
import socket
import time
import uuid
from typing import Any, Optional, Tuple

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

def checkpoint_dir(output_dir: str) -> str:
    """``OUTPUT_DIR/checkpoints``."""
    return os.path.join(output_dir, "checkpoints")


def checkpoint_path(output_dir: str, cur_epoch: int, task: str = "", iters_done: Optional[int] = None) -> str:
    """Path of the checkpoint saved after 0-based epoch ``cur_epoch`` (its name holds ``cur_epoch + 1``).

    With ``iters_done``: the checkpoint written when a run is stopped (preempted) inside 0-based epoch
    ``cur_epoch`` after ``iters_done`` of its iterations, ``[TASK_]checkpoint_epoch_{cur_epoch + 1:05d}_iter_
    {iters_done:05d}.pyth``.
    """
    name = f"checkpoint_epoch_{cur_epoch + 1:05d}"
    if iters_done is not None:
        name += f"_iter_{iters_done:05d}"
    name += ".pyth"
    return os.path.join(checkpoint_dir(output_dir), f"{task}_{name}" if task else name)


def _name_pattern(task: str) -> "re.Pattern":
    """This run's checkpoint names, exactly: ``[TASK_]checkpoint_epoch_NNNNN[_iter_NNNNN].pyth``."""
    prefix = re.escape(f"{task}_") if task else ""
    return re.compile(rf"{prefix}checkpoint_epoch_(\d{{5,}})(?:_iter_(\d{{5,}}))?\.pyth")


def checkpoint_position(path: str, task: str = "") -> Optional[Tuple[int, int]]:
    """``(epochs done, iterations done in the next epoch)`` that a checkpoint name of this run records.

    ``checkpoint_epoch_00003.pyth`` is ``(3, 0)``; ``checkpoint_epoch_00003_iter_00017.pyth`` (stopped inside the
    third epoch) is ``(2, 17)``. None for any other name (another task's, ``backup_of_checkpoint_epoch_...``).
    """
    match = _name_pattern(task).fullmatch(os.path.basename(path))
    if not match:
        return None
    epoch, iters = int(match.group(1)), match.group(2)
    return (epoch, 0) if iters is None else (epoch - 1, int(iters))


def list_checkpoints(output_dir: str, task: str = "", mid_epoch: bool = False) -> "list[str]":
    """This run's checkpoint files in ``OUTPUT_DIR/checkpoints``, oldest first (by the position in the name).

    Only names :func:`checkpoint_path` writes for ``task`` (``TASK``) count; other files in the folder
    (``pretrain_checkpoint_epoch_00030.pyth``, a renamed backup) are never resumed from or tested.

    Args:
        mid_epoch: also list checkpoints written inside an epoch (a preempted run's; :func:`checkpoint_path`).
    """
    folder = checkpoint_dir(output_dir)
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        position = checkpoint_position(name, task)
        if position is not None and (mid_epoch or position[1] == 0):
            found.append((position, name))
    return [os.path.join(folder, name) for _, name in sorted(found)]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, not a checkpoint dict, or of another model."""


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint dict on CPU with ``weights_only=True`` (PySlowFast and our files both qualify)."""
    with open(path, "rb") as f:
        return torch.load(f, map_location="cpu", weights_only=True)


def _named(path: str, key: str) -> str:
    return f"{key} = {path}" if key else str(path)


def open_checkpoint(path: str, key: str = "") -> dict:
    """:func:`read_checkpoint` whose errors name the file and the config key it came from.

    Args:
        path: the file.
        key: the config key that named it (``TRAIN.CHECKPOINT_FILE_PATH``), or ``""``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: it does not load (truncated, not a PyTorch file) or is not a dict with ``model_state``.
    """
    try:
        ckpt = read_checkpoint(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{key + ': ' if key else ''}no such checkpoint file", path) from None
    except pickle.UnpicklingError as err:
        unsafe = re.search(r"Unsupported global: GLOBAL [\w.]+|Unsupported operand \d+", str(err))
        raise CheckpointError(
            f"{_named(path, key)}: refused: it holds pickled Python objects other than tensors, numbers and strings"
            f"{' (' + unsafe.group(0) + ')' if unsafe else ''}, which could run code when loaded; checkpoints are "
            "read with torch.load(weights_only=True). Re-save the weights from a trusted source as a plain dict of "
            "tensors") from err
    except Exception as err:
        raise CheckpointError(f"{_named(path, key)}: cannot read a checkpoint ({type(err).__name__}: {err}); "
                              "is the file complete, and a PyTorch .pyth?") from err
    return require_model_state(ckpt, path, key)


def require_model_state(ckpt: Any, path: str, key: str = "") -> dict:
    """``ckpt`` itself when it is a checkpoint dict (it holds ``model_state``).

    Raises:
        CheckpointError: naming the file and the config key it came from.
    """
    if not isinstance(ckpt, dict) or "model_state" not in ckpt:
        raise CheckpointError(f"{_named(path, key)}: not a checkpoint (a dict with 'model_state')")
    return ckpt


def last_intact_checkpoint(output_dir: str, task: str = "", mid_epoch: bool = False
                           ) -> Tuple[Optional[str], Optional[dict]]:
    """Newest of this run's checkpoints (:func:`list_checkpoints`) that loads and holds ``model_state``; broken ones
    are skipped with a warning.

    Returns:
        ``(path, checkpoint dict)``, or ``(None, None)`` when there is none.
    """
    for path in reversed(list_checkpoints(output_dir, task, mid_epoch)):
        try:
            return path, open_checkpoint(path)
        except (FileNotFoundError, CheckpointError) as err:  # truncated / corrupt file: fall back to an older one
            logger.warning("Skipping unreadable checkpoint %s: %s", path, err)
    return None, None


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP / DataParallel wrapper."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def rng_state() -> dict:
    """All generators' states as tensors and numbers (weights_only-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_cached_gaussian": float(np_state[4]),
        "python_version": int(py_state[0]),
        "python_state": torch.tensor(py_state[1], dtype=torch.int64),
        "python_gauss": py_state[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(
        ("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"], state["numpy_cached_gaussian"])
    )
    random.setstate((state["python_version"], tuple(int(v) for v in state["python_state"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


_PARTIAL_PREFIX, _PARTIAL_SUFFIX = ".tmp_", ".pyth.partial"
_HOST = socket.gethostname().replace("/", "-")


def atomic_save(obj, path: str, hint: str = "") -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace`` (never a partial file).

    The temporary file is created with mode ``0o666 & ~umask``, like a plain ``torch.save``.

    Args:
        obj: what to save.
        path: the file to write.
        hint: what the user can do when the write fails, appended to the error.

    Raises:
        OSError: the write failed (full disk, quota, I/O error); the message names ``path``, the free space in its
            folder and ``hint``. Nothing is left behind.
    """
    folder = os.path.dirname(path) or "."
    tmp = os.path.join(folder, f"{_PARTIAL_PREFIX}{_HOST}_{os.getpid()}_{uuid.uuid4().hex}{_PARTIAL_SUFFIX}")
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if not isinstance(err, (OSError, RuntimeError)):  # interrupts, pickling bugs: as they are
            raise
        raise _write_error(err, path, folder, hint) from err
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _write_error(err: Exception, path: str, folder: str, hint: str) -> OSError:
    """An ``OSError`` naming the file that could not be written, on one line (torch's errors span several)."""
    code = err.errno if isinstance(err, OSError) and err.errno else errno.EIO
    cause = " ".join(f"{type(err).__name__}: {err}".split())
    try:
        free = f"{shutil.disk_usage(folder).free:,} bytes free in {folder}"
    except OSError:
        free = f"{folder} not accessible"
    message = f"could not write checkpoint ({cause[:300]}); {free}" + (f"; {hint}" if hint else "")
    return OSError(code, message, path)


def _partial_writer(name: str) -> Optional[Tuple[str, int]]:
    """``(host, pid)`` of the process writing temporary file ``name`` (host ``""`` in the older ``.tmp_PID_*``
    names), or None when ``name`` is not one of :func:`atomic_save`'s temporary files."""
    if not (name.startswith(_PARTIAL_PREFIX) and name.endswith(_PARTIAL_SUFFIX)):
        return None
    parts = name[len(_PARTIAL_PREFIX):-len(_PARTIAL_SUFFIX)].rsplit("_", 2)
    if len(parts) == 2:
        parts = [""] + parts
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _pid_start_time(pid: int) -> Optional[str]:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/PID/stat``), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int, start_time: Optional[str] = None) -> bool:
    """Whether process ``pid`` of this host runs (and, given ``start_time``, is the same process, not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    if start_time is not None:
        current = _pid_start_time(pid)
        return current is None or current == start_time
    return True


def remove_partial_writes(output_dir: str) -> "list[str]":
    """Delete temporary files left by checkpoint writes that were killed (call before this run writes any).

    A temporary file is removed only when its name's writer (host and pid) is a process of this host that is gone;
    a live writer's file (another run, or this one) and another host's are left alone.
    """
    folder = checkpoint_dir(output_dir)
    if not os.path.isdir(folder):
        return []
    removed, kept = [], []
    for name in sorted(os.listdir(folder)):
        writer = _partial_writer(name)
        if writer is None:
            continue
        host, pid = writer
        if host in ("", _HOST) and not process_alive(pid):
            try:
                os.remove(os.path.join(folder, name))
            except FileNotFoundError:  # its writer's run removed it meanwhile
                continue
            removed.append(name)
        else:
            kept.append(name)
    if removed:
        logger.warning("Removed %d partial checkpoint write(s) of an interrupted run in %s: %s", len(removed),
                       folder, ", ".join(removed))
    if kept:
        logger.info("Left %d temporary checkpoint file(s) of running processes (or of other hosts) in %s: %s",
                    len(kept), folder, ", ".join(kept))
    return removed


RUN_LOCK_FILE = "run.lock"


class RunLockedError(RuntimeError):
    """Another live run holds ``OUTPUT_DIR/run.lock``: two runs must not share an OUTPUT_DIR."""


def _read_lock(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            holder = json.load(f)
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def acquire_run_lock(output_dir: str) -> str:
    """Claim ``OUTPUT_DIR/run.lock`` for this process (call on the main rank before the run writes anything).

    The file holds the holder's pid, host, process start time and start date. A lock of this process is kept; a
    lock whose process is gone from this host (a killed run) is taken over with a warning; an unreadable lock
    (killed while writing it) too.

    Returns:
        The lock file, for :func:`release_run_lock`.

    Raises:
        RunLockedError: a live process of this host, or any process of another host, holds the lock; the message
            names it and says what to do.
    """
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, RUN_LOCK_FILE)
    me = {"pid": os.getpid(), "host": _HOST, "start_time": _pid_start_time(os.getpid()),
          "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if holder is not None and (holder["pid"], holder.get("host")) == (me["pid"], me["host"]):
                return path
            if holder is not None:
                who = f"process {holder['pid']} on host {holder.get('host')} (since {holder.get('since')})"
                if holder.get("host") != _HOST:
                    raise RunLockedError(
                        f"OUTPUT_DIR {output_dir} is in use by {who}, lock file {path}: two runs must not share an "
                        f"OUTPUT_DIR. Choose another OUTPUT_DIR, or delete {path} if that run is no longer running")
                if process_alive(holder["pid"], holder.get("start_time")):
                    raise RunLockedError(
                        f"OUTPUT_DIR {output_dir} is in use by {who}, which is still running (lock file {path}): "
                        f"two runs must not share an OUTPUT_DIR. Wait for it, stop it, or choose another OUTPUT_DIR")
                logger.warning("Taking over the run lock %s of %s, which is no longer running", path, who)
            else:
                logger.warning("Taking over the unreadable run lock %s (a run killed while writing it)", path)
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return path
    raise RunLockedError(f"OUTPUT_DIR {output_dir}: could not take the run lock {path} (other runs start there)")


def release_run_lock(path: Optional[str]) -> None:
    """Remove the lock file when this process holds it."""
    if path and (_read_lock(path) or {}).get("pid") == os.getpid():
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def ensure_room_for_checkpoints(output_dir: str, model: nn.Module, cfg) -> int:
    """Fail at start, naming OUTPUT_DIR, when its disk cannot hold one more checkpoint.

    Estimate: the model state, two tensors per parameter of optimizer state (e.g. Adam's moments), the cfg text,
    and 32 KiB for the RNG states and the container.

    Returns:
        The estimated checkpoint size in bytes.

    Raises:
        OSError (ENOSPC): not enough free space in ``OUTPUT_DIR/checkpoints``.
    """
    target = unwrap(model)
    state_bytes = sum(t.numel() * t.element_size() for t in target.state_dict().values())
    param_bytes = sum(p.numel() * p.element_size() for p in target.parameters())
    needed = state_bytes + 2 * param_bytes + len(cfg.dump()) + 32 * 1024
    folder = checkpoint_dir(output_dir)
    probe = folder
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:  # nothing is created here
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"OUTPUT_DIR {output_dir} has {free:,} bytes free; one checkpoint needs about "
                                    f"{needed:,} bytes. Free space or choose another OUTPUT_DIR", folder)
    return needed


def save_checkpoint(
    output_dir: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cur_epoch: int,
    cfg,
    scaler=None,
    multigrid_phase: Optional[int] = None,
    iters_done: Optional[int] = None,
    epoch_start_rng: Optional[torch.Tensor] = None,
) -> str:
    """Write the checkpoint of 0-based epoch ``cur_epoch``; call it on the main rank only.

    With ``iters_done`` the run stops inside epoch ``cur_epoch`` (preemption): the file is named by
    :func:`checkpoint_path` with ``iters_done``, its ``epoch`` is ``cur_epoch - 1`` (the last complete epoch, what
    PySlowFast reads), ``iters_done`` records how many iterations of ``cur_epoch`` are done and ``epoch_start_rng``
    the torch RNG state the epoch's data order was drawn from. A checkpoint of a complete epoch removes this run's
    older mid-epoch checkpoints.

    Returns:
        The file written.
    """
    state = {
        "epoch": int(cur_epoch if iters_done is None else cur_epoch - 1),
        "model_state": unwrap(model).state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "cfg": cfg.dump(),
        "rng_state": rng_state(),
    }
    if cfg.TRAIN.MIXED_PRECISION and scaler is not None:
        state["scaler_state"] = scaler.state_dict()
    if multigrid_phase is not None:
        state["multigrid_phase"] = int(multigrid_phase)
    if iters_done is not None:
        state["iters_done"] = int(iters_done)
        if epoch_start_rng is not None:
            state["epoch_start_rng"] = epoch_start_rng
    task = cfg.get("TASK", "")
    path = checkpoint_path(output_dir, cur_epoch, task, iters_done)
    atomic_save(state, path, hint=f"free space there and rerun: with TRAIN.AUTO_RESUME True the run continues from "
                                  f"the newest checkpoint in {checkpoint_dir(output_dir)}")
    logger.info("Saved checkpoint %s", path)
    if iters_done is None:
        for old in list_checkpoints(output_dir, task, mid_epoch=True):
            if checkpoint_position(old, task)[1] and checkpoint_position(old, task) < (cur_epoch + 1, 0):
                os.remove(old)
                logger.info("Removed the mid-epoch checkpoint %s: %s is newer", old, path)
    return path


def _strip_prefixes(name: str, prefixes) -> str:
    for prefix in prefixes:
        if prefix and name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def match_model_state(model: nn.Module, state: dict, clear_name_patterns=()) -> "tuple[dict, dict[str, list]]":
    """Which tensors of ``state`` fit ``model`` by name and shape; nothing is loaded.

    ``module.`` prefixes (DDP) are removed from the checkpoint's names and the model is unwrapped.

    Returns:
        ``(matched, report)``: ``{model name: tensor}`` and ``{"loaded": [...], "shape_mismatch": [...],
        "unexpected": [...], "missing": [...]}`` (parameter names).
    """
    own = unwrap(model).state_dict()
    patterns = ("module.",) + tuple(clear_name_patterns)
    report = {"loaded": [], "shape_mismatch": [], "unexpected": [], "missing": []}
    matched = {}
    for key, value in state.items():
        name = _strip_prefixes(key, patterns)
        if name not in own:
            report["unexpected"].append(name)
        elif tuple(own[name].shape) != tuple(value.shape):
            theirs, ours = tuple(value.shape), tuple(own[name].shape)
            report["shape_mismatch"].append(f"{name}: checkpoint {theirs} vs model {ours}")
        else:
            matched[name] = value
            report["loaded"].append(name)
    report["missing"] = [k for k in own if k not in matched]
    return matched, report


def loaded_share(model: nn.Module, matched: dict) -> float:
    """Share of the model's parameter elements (not buffers) that ``matched`` fills, in [0, 1]."""
    params = dict(unwrap(model).named_parameters())
    total = sum(p.numel() for p in params.values())
    return sum(p.numel() for name, p in params.items() if name in matched) / max(total, 1)


def load_model_state(model: nn.Module, state: dict, clear_name_patterns=()) -> "dict[str, list]":
    """Shape-matched, non-strict loading of ``state`` into ``model``, logging what did not load.

    Returns:
        :func:`match_model_state`'s report, plus ``"share"``: :func:`loaded_share` of what was loaded.
    """
    matched, report = match_model_state(model, state, clear_name_patterns)
    unwrap(model).load_state_dict(matched, strict=False)
    total = len(matched) + len(report["missing"])
    report["share"] = loaded_share(model, matched)
    logger.info("Loaded %d/%d tensors of the model from the checkpoint: %.1f%% of its parameters", len(matched),
                total, 100 * report["share"])
    if report["shape_mismatch"]:
        logger.warning("Re-initialised, the checkpoint's shape differs (e.g. a classifier for another class count; "
                       "%d): %s", len(report["shape_mismatch"]), ", ".join(report["shape_mismatch"]))
    for kind in ("unexpected", "missing"):
        if report[kind]:
            logger.warning("Not loaded (%s, %d): %s", kind, len(report[kind]), ", ".join(report[kind]))
    return report


def check_loaded_share(path: str, ckpt: dict, model: nn.Module, min_share: float, clear_name_patterns=(),
                       key: str = "") -> float:
    """The share :func:`loaded_share` that ``ckpt`` would fill; an error when it is below ``min_share``.

    Raises:
        CheckpointError: naming the file, the key, the share and ``TRAIN.CHECKPOINT_MIN_LOADED_SHARE``.
    """
    matched, report = match_model_state(model, ckpt["model_state"], clear_name_patterns)
    share = loaded_share(model, matched)
    if share < min_share:
        raise CheckpointError(
            f"{_named(path, key)} fills only {100 * share:.1f}% of the model's parameters ({len(matched)} of "
            f"{len(matched) + len(report['missing'])} tensors), below TRAIN.CHECKPOINT_MIN_LOADED_SHARE "
            f"({min_share:g}): is it a checkpoint of another model? Not loaded: {_first(report['missing'])}. "
            f"To start from it anyway, set TRAIN.CHECKPOINT_MIN_LOADED_SHARE 0"
        )
    return share


def check_fits_model(path: str, ckpt: dict, model: nn.Module, clear_name_patterns=(), key: str = "") -> None:
    """Refuse a checkpoint that matches none of the model's tensors; partial matches pass.

    Raises:
        CheckpointError: naming the file, the key, and a few names of each side.
    """
    _, report = match_model_state(model, ckpt["model_state"], clear_name_patterns)
    if report["loaded"] or not report["missing"]:
        return
    theirs, ours = report["shape_mismatch"] + report["unexpected"], report["missing"]
    raise CheckpointError(
        f"{_named(path, key)}: none of its {len(theirs)} tensors fits one of the {len(ours)} tensors of the "
        f"config's model (names or shapes differ): is it a checkpoint of another model? It holds "
        f"{_first(theirs) or 'nothing'}; the model has {_first(ours)}"
    )


def _first(names: "list[str]", n: int = 4) -> str:
    return ", ".join(names[:n]) + (" ..." if len(names) > n else "")


def load_checkpoint(
    path: str,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scaler=None,
    epoch_reset: bool = False,
    clear_name_patterns=(),
    restore_rng: bool = False,
    ckpt: Optional[dict] = None,
    key: str = "",
    min_loaded_share: float = 0.0,
) -> int:
    """Load a checkpoint (ours or PySlowFast's ``.pyth``) into ``model`` and, unless ``epoch_reset``, the rest.

    Args:
        path: the file (read unless ``ckpt`` is given).
        model: the model, possibly DDP-wrapped.
        optimizer, scaler: restored when given, present in the file, and ``epoch_reset`` is False.
        epoch_reset: ignore the file's epoch (fine-tuning starts at epoch 0).
        clear_name_patterns: name prefixes to strip (``TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN``).
        restore_rng: restore the RNG state saved in the file (auto-resume).
        ckpt: the already-loaded dict.
        key: the config key that named ``path`` (``TRAIN.CHECKPOINT_FILE_PATH``), quoted in errors.
        min_loaded_share: refuse (nothing loaded) a file that fills a smaller share of the model's parameter
            elements (:func:`check_loaded_share`).

    Returns:
        The 0-based epoch stored in the file, or -1 with ``epoch_reset`` or when it has none.

    Raises:
        FileNotFoundError, CheckpointError: see :func:`open_checkpoint`, :func:`check_fits_model` and
        :func:`check_loaded_share`; nothing is loaded then.
    """
    ckpt = open_checkpoint(path, key) if ckpt is None else require_model_state(ckpt, path, key)
    check_fits_model(path, ckpt, model, clear_name_patterns, key)
    if min_loaded_share > 0:
        check_loaded_share(path, ckpt, model, min_loaded_share, clear_name_patterns, key)
    logger.info("Loading checkpoint %s", path)
    report = load_model_state(model, ckpt["model_state"], clear_name_patterns)
    if epoch_reset or "epoch" not in ckpt:
        return -1
    if optimizer is not None and "optimizer_state" in ckpt:
        if report["shape_mismatch"] or report["missing"]:
            logger.warning("Optimizer state of %s not loaded: the model does not match the checkpoint", path)
        else:
            optimizer.load_state_dict(ckpt["optimizer_state"])
    if scaler is not None and ckpt.get("scaler_state"):
        scaler.load_state_dict(ckpt["scaler_state"])
    if restore_rng and "rng_state" in ckpt:
        set_rng_state(ckpt["rng_state"])
    return int(ckpt["epoch"])
