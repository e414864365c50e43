"""engine.workers: a DataLoader worker's death is named with the video it was loading, however PyTorch reports it
(its dead-worker RuntimeError, or a ConnectionResetError / EOFError when the worker dies while handing over a
batch). Breadcrumbs are written by hand here: one per worker pid, holding the video's path."""
import os
import subprocess
import time
from types import SimpleNamespace

import pytest

from mtnet_plugin.engine import workers


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: the pid is gone
    return proc.pid


def _crumb(folder, pid, path):
    with open(os.path.join(folder, str(pid)), "w") as f:
        f.write(path)


def test_pid_dead_sees_running_exited_and_zombie_processes():
    assert not workers._pid_dead(os.getpid())
    assert workers._pid_dead(_dead_pid())
    proc = subprocess.Popen(["true"])  # exits, and stays a zombie until waited for
    deadline = time.monotonic() + 10
    while not workers._pid_dead(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert workers._pid_dead(proc.pid) and proc.poll() == 0


def test_transfer_error_names_only_the_worker_that_died_in_this_loop(tmp_path):
    loader = SimpleNamespace(breadcrumb_dir=str(tmp_path))
    _crumb(tmp_path, _dead_pid(), "/v/last_epoch.mp4")  # a worker of an earlier loop, gone normally
    before = workers._crumbs(str(tmp_path))
    time.sleep(0.01)
    _crumb(tmp_path, os.getpid(), "/v/alive.mp4")  # a worker still running
    err = ConnectionResetError(104, "Connection reset by peer")
    assert workers.name_worker_death(loader, err, before, wait_s=0.2) is err  # nobody of this loop died
    _crumb(tmp_path, _dead_pid(), "/v/poison.mp4")
    named = workers.name_worker_death(loader, err, before, wait_s=0.2)
    assert isinstance(named, RuntimeError) and "/v/poison.mp4" in str(named) and "ConnectionResetError" in str(named)
    assert "last_epoch" not in str(named) and "alive" not in str(named)
    eof = workers.name_worker_death(loader, EOFError(), before, wait_s=0.2)
    assert "/v/poison.mp4" in str(eof)


def test_other_errors_pass_at_once_and_named_errors_are_not_named_twice(tmp_path):
    loader = SimpleNamespace(breadcrumb_dir=str(tmp_path))
    before = workers._crumbs(str(tmp_path))
    model_error = RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    start = time.monotonic()
    assert workers.name_worker_death(loader, model_error, before) is model_error
    assert time.monotonic() - start < 1.0  # no waiting for a worker that is not dying
    reset = ConnectionResetError()
    assert workers.name_worker_death(SimpleNamespace(), reset, {}) is reset  # a loader without breadcrumbs: as is
    _crumb(tmp_path, 4242, "/v/poison.mp4")
    torch_error = RuntimeError("DataLoader worker (pid(s) 4242) exited unexpectedly")
    named = workers.name_worker_death(loader, torch_error, before)
    assert str(named).count("/v/poison.mp4") == 1
    try:  # what the loader raises: its named error, from PyTorch's
        raise named from torch_error
    except RuntimeError as raised:
        assert workers.name_worker_death(loader, raised, before) is raised


def test_sigchld_report_during_the_wait_is_named_by_its_pid(tmp_path, monkeypatch):
    loader = SimpleNamespace(breadcrumb_dir=str(tmp_path))
    _crumb(tmp_path, 4343, "/v/poison.mp4")
    before = workers._crumbs(str(tmp_path))  # crumb older than the loop: only the pid in PyTorch's report names it

    def sigchld(seconds):
        raise RuntimeError("DataLoader worker (pid 4343) exited unexpectedly with exit code 3.")

    monkeypatch.setattr(workers.time, "sleep", sigchld)
    named = workers.name_worker_death(loader, ConnectionResetError(), before, wait_s=1.0)
    assert "pid 4343" in str(named) and "/v/poison.mp4" in str(named)


def test_context_manager_reraises_named_from_the_original_and_leaves_other_errors(tmp_path):
    loader = SimpleNamespace(breadcrumb_dir=str(tmp_path))
    err = ConnectionResetError(104, "Connection reset by peer")
    with pytest.raises(RuntimeError, match="poison.mp4") as info:
        with workers.naming_worker_deaths(loader):
            _crumb(tmp_path, _dead_pid(), "/v/poison.mp4")
            raise err
    assert info.value.__cause__ is err
    other = ValueError("not a loader problem")
    with pytest.raises(ValueError) as info:
        with workers.naming_worker_deaths(loader):
            raise other
    assert info.value is other
