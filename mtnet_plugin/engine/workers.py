"""Naming the video whose loading killed a DataLoader worker, however PyTorch reports the death.

A worker that dies (an FFmpeg crash, an out-of-memory kill) reaches the main process in one of three ways:
PyTorch's ``RuntimeError: DataLoader worker (pid N) exited unexpectedly`` from the loader or from its SIGCHLD
handler (named by :func:`mtnet_plugin.data.name_dead_worker` through the pid), or — when the worker dies while
its batch is being handed over — a ``ConnectionResetError`` / ``EOFError`` that names no worker at all. For the
latter, the video is found from the workers' breadcrumbs (``breadcrumb_dir/<pid>``, written before each video):
a crumb written during this loop by a process that is no longer alive.
"""
import contextlib
import os
import time
import traceback
from typing import Dict, List, Optional

from mtnet_plugin import data as mt_data


_TRANSFER_ERRORS = (ConnectionError, EOFError)  # a batch's shared memory fetched from a worker that died
_WAIT_S = 3.0  # how long a dying worker may take to be gone


def _pid_dead(pid: int) -> bool:
    """True when ``pid`` is gone or a zombie (dead, not yet reaped by its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        pass
    try:  # no /proc: a zombie counts as alive here
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _crumbs(folder: Optional[str]) -> Dict[str, int]:
    """``{file name: mtime_ns}`` of the breadcrumbs in ``folder``."""
    if not folder or not os.path.isdir(folder):
        return {}
    found = {}
    for name in os.listdir(folder):
        try:
            found[name] = os.stat(os.path.join(folder, name)).st_mtime_ns
        except OSError:
            continue
    return found


def _dead_workers_paths(folder: Optional[str], before: Dict[str, int]) -> List[str]:
    """Videos of crumbs written since ``before`` (a :func:`_crumbs` snapshot) by processes that are dead now."""
    paths = []
    for name, mtime in sorted(_crumbs(folder).items()):
        if before.get(name) == mtime or not name.isdigit() or not _pid_dead(int(name)):
            continue
        try:
            with open(os.path.join(folder, name)) as f:
                paths.append(f.read())
        except OSError:
            continue
    return paths


def _already_named(loader, err: BaseException) -> bool:
    """``err`` is the loader's own named version of the dead-worker error it was raised from."""
    cause = err.__cause__
    return (isinstance(cause, RuntimeError) and mt_data.name_dead_worker(loader, cause) is not cause
            and str(err).startswith(str(cause)))


def name_worker_death(loader, err: BaseException, before: Dict[str, int], wait_s: float = _WAIT_S) -> BaseException:
    """``err`` extended with the video(s) a dead worker of ``loader`` was loading, else ``err`` itself.

    Args:
        loader: the DataLoader looped over (a ``NamingDataLoader`` knows its ``breadcrumb_dir``).
        err: what the loop raised.
        before: the breadcrumbs when the loop started (:func:`_crumbs`).
        wait_s: after a transfer error, how long to wait for the worker to be gone.
    """
    if _already_named(loader, err):
        return err
    named = mt_data.name_dead_worker(loader, err)
    folder = getattr(loader, "breadcrumb_dir", None)
    if named is not err or not folder:
        return named
    deadline = time.monotonic() + (wait_s if isinstance(err, _TRANSFER_ERRORS) else 0.0)
    while True:
        paths = _dead_workers_paths(folder, before)
        if paths or time.monotonic() >= deadline:
            break
        try:
            time.sleep(0.05)
        except RuntimeError as sigchld:  # PyTorch's SIGCHLD handler: the worker is gone and named by its pid
            named = mt_data.name_dead_worker(loader, sigchld)
            if named is not sigchld:
                return named
            raise
    if not paths:
        return err
    try:  # let PyTorch's SIGCHLD handler report the death now rather than while Python prints the error
        time.sleep(0.1)
    except RuntimeError:
        pass
    return RuntimeError(f"a DataLoader worker died while handing over a batch ({type(err).__name__}: {err}) -- the "
                        f"dead worker was loading {', '.join(paths)} (a decoder crash or an out-of-memory kill on that "
                        f"video; check it with tools/check_videos.py)")


@contextlib.contextmanager
def naming_worker_deaths(loader):
    """Run a loop over ``loader`` so that a worker's death is re-raised naming the video it was loading.

    Use: ``with naming_worker_deaths(loader): for batch in loader: ...``. Other errors pass unchanged.
    """
    before = _crumbs(getattr(loader, "breadcrumb_dir", None))
    try:
        yield
    except (RuntimeError,) + _TRANSFER_ERRORS as err:
        named = name_worker_death(loader, err, before)
        if named is err:
            raise
        # The finished loader frames in the traceback keep the loader's iterator, and so its workers and PyTorch's
        # SIGCHLD watch over them, alive until exit, where a second, unnamed report garbles the error: drop them.
        traceback.clear_frames(err.__traceback__)
        raise named from err
