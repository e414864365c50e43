"""Checkpoints in PySlowFast's layout (facts §8), written atomically and resumable.

Layout: ``OUTPUT_DIR/checkpoints/[{TASK}_]checkpoint_epoch_{epoch + 1:05d}.pyth``, a dict with PySlowFast's keys
``epoch`` (0-based, the epoch just finished), ``model_state``, ``optimizer_state``, ``cfg`` (YAML text) and
``scaler_state`` (when ``TRAIN.MIXED_PRECISION``), plus our keys ``rng_state`` (torch / CUDA / numpy / python
generators as tensors and numbers) and ``multigrid_phase``. Everything is a tensor, number, string or a container
of those, so files load with ``torch.load(weights_only=True)`` — ours, and PySlowFast's.

A write goes to a temporary file in the same directory, is flushed and fsynced, then renamed over the target
(``os.replace``), so a crash never leaves a truncated ``.pyth``. Auto-resume still checks each candidate and skips
one that does not load (e.g. truncated by a disk problem), with a warning.

A checkpoint the config names (``TRAIN/TEST.CHECKPOINT_FILE_PATH``) that cannot be read, is not a checkpoint, or
matches none of the model's tensors is an error naming the file and the key (:class:`CheckpointError`), raised at
start; a partial match (a new head for fine-tuning) loads with warnings, as in PySlowFast.
"""
import errno
import logging
import os
import random
import re
import shutil
import uuid
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

_NAME = re.compile(r"checkpoint_epoch_(\d+)\.pyth$")


def checkpoint_dir(output_dir: str) -> str:
    """``OUTPUT_DIR/checkpoints``."""
    return os.path.join(output_dir, "checkpoints")


def checkpoint_path(output_dir: str, cur_epoch: int, task: str = "") -> str:
    """Path of the checkpoint saved after 0-based epoch ``cur_epoch`` (its name holds ``cur_epoch + 1``)."""
    name = f"checkpoint_epoch_{cur_epoch + 1:05d}.pyth"
    return os.path.join(checkpoint_dir(output_dir), f"{task}_{name}" if task else name)


def list_checkpoints(output_dir: str) -> "list[str]":
    """Checkpoint files in ``OUTPUT_DIR/checkpoints``, oldest first (by the epoch in the name)."""
    folder = checkpoint_dir(output_dir)
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(folder) if (m := _NAME.search(name))]
    return [os.path.join(folder, name) for _, name in sorted(found)]


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: unreadable, not a checkpoint dict, or of another model."""


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint dict on CPU with ``weights_only=True`` (PySlowFast and our files both qualify)."""
    with open(path, "rb") as f:
        return torch.load(f, map_location="cpu", weights_only=True)


def _named(path: str, key: str) -> str:
    return f"{key} = {path}" if key else str(path)


def open_checkpoint(path: str, key: str = "") -> dict:
    """:func:`read_checkpoint` whose errors name the file and the config key it came from (faults-found #7).

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
    except Exception as err:
        raise CheckpointError(f"{_named(path, key)}: cannot read a checkpoint ({type(err).__name__}: {err}); "
                              "is the file complete, and a PyTorch .pyth?") from err
    if not isinstance(ckpt, dict) or "model_state" not in ckpt:
        raise CheckpointError(f"{_named(path, key)}: not a checkpoint (a dict with 'model_state')")
    return ckpt


def last_intact_checkpoint(output_dir: str) -> Tuple[Optional[str], Optional[dict]]:
    """Newest checkpoint that loads and holds ``model_state``; broken ones are skipped with a warning.

    Returns:
        ``(path, checkpoint dict)``, or ``(None, None)`` when there is none.
    """
    for path in reversed(list_checkpoints(output_dir)):
        try:
            ckpt = read_checkpoint(path)
        except Exception as err:  # truncated / corrupt file: fall back to an older one
            logger.warning("Skipping unreadable checkpoint %s (%s: %s)", path, type(err).__name__, err)
            continue
        if not isinstance(ckpt, dict) or "model_state" not in ckpt:
            logger.warning("Skipping %s: not a checkpoint dict with 'model_state'", path)
            continue
        return path, ckpt
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


def atomic_save(obj, path: str, hint: str = "") -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace`` (never a partial file).

    The temporary file is created with mode ``0o666 & ~umask``, like a plain ``torch.save``.

    Args:
        obj: what to save.
        path: the file to write.
        hint: what the user can do when the write fails, appended to the error.

    Raises:
        OSError: the write failed (full disk, quota, I/O error); the message names ``path``, the free space in its
            folder and ``hint`` (faults-found #10). Nothing is left behind.
    """
    folder = os.path.dirname(path) or "."
    tmp = os.path.join(folder, f"{_PARTIAL_PREFIX}{os.getpid()}_{uuid.uuid4().hex}{_PARTIAL_SUFFIX}")
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


def remove_partial_writes(output_dir: str) -> "list[str]":
    """Delete temporary files left by checkpoint writes that were killed (call before this run writes any)."""
    folder = checkpoint_dir(output_dir)
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(_PARTIAL_PREFIX) and name.endswith(_PARTIAL_SUFFIX):
            os.remove(os.path.join(folder, name))
            removed.append(name)
    if removed:
        logger.warning("Removed %d partial checkpoint write(s) of an interrupted run in %s: %s", len(removed),
                       folder, ", ".join(removed))
    return removed


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
) -> str:
    """Write the checkpoint of 0-based epoch ``cur_epoch``; call it on the main rank only.

    Returns:
        The file written.
    """
    state = {
        "epoch": int(cur_epoch),
        "model_state": unwrap(model).state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "cfg": cfg.dump(),
        "rng_state": rng_state(),
    }
    if cfg.TRAIN.MIXED_PRECISION and scaler is not None:
        state["scaler_state"] = scaler.state_dict()
    if multigrid_phase is not None:
        state["multigrid_phase"] = int(multigrid_phase)
    path = checkpoint_path(output_dir, cur_epoch, cfg.get("TASK", ""))
    atomic_save(state, path, hint=f"free space there and rerun: with TRAIN.AUTO_RESUME True the run continues from "
                                  f"the newest checkpoint in {checkpoint_dir(output_dir)}")
    logger.info("Saved checkpoint %s", path)
    return path


def _strip_prefixes(name: str, prefixes) -> str:
    for prefix in prefixes:
        if prefix and name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def match_model_state(model: nn.Module, state: dict, clear_name_patterns=()) -> "tuple[dict, dict[str, list]]":
    """Which tensors of ``state`` fit ``model`` by name and shape (facts §8); nothing is loaded.

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


def load_model_state(model: nn.Module, state: dict, clear_name_patterns=()) -> "dict[str, list]":
    """Shape-matched, non-strict loading of ``state`` into ``model`` (facts §8), logging what did not load.

    Returns:
        :func:`match_model_state`'s report.
    """
    matched, report = match_model_state(model, state, clear_name_patterns)
    unwrap(model).load_state_dict(matched, strict=False)
    total = len(matched) + len(report["missing"])
    logger.info("Loaded %d/%d tensors of the model from the checkpoint", len(matched), total)
    for kind in ("shape_mismatch", "unexpected", "missing"):
        if report[kind]:
            logger.warning("Not loaded (%s, %d): %s", kind, len(report[kind]), ", ".join(report[kind]))
    return report


def check_fits_model(path: str, ckpt: dict, model: nn.Module, clear_name_patterns=(), key: str = "") -> None:
    """Refuse a checkpoint that matches none of the model's tensors (faults-found #8); partial matches pass.

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

    Returns:
        The 0-based epoch stored in the file, or -1 with ``epoch_reset`` or when it has none.

    Raises:
        FileNotFoundError, CheckpointError: see :func:`open_checkpoint` and :func:`check_fits_model`; nothing is
        loaded then.
    """
    if ckpt is None:
        ckpt = open_checkpoint(path, key)
    elif not isinstance(ckpt, dict) or "model_state" not in ckpt:
        raise CheckpointError(f"{_named(path, key)}: not a checkpoint (a dict with 'model_state')")
    check_fits_model(path, ckpt, model, clear_name_patterns, key)
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
