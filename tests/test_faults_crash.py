"""Fault injection, process side: SIGKILL mid-epoch and mid-checkpoint-write, a NaN loss, an unusable OUTPUT_DIR.

The killed runs are ``tools/run_net.py`` in a subprocess whose driver patches one function to SIGKILL the process at
an exact point; the rerun (TRAIN.AUTO_RESUME) runs in this process. Each test is a row of docs/reliability.md.
"""
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import torch

import fault_files
from mtnet_plugin.config import load_config
from mtnet_plugin.engine import Trainer, TrainingDiverged, run, train
from mtnet_plugin.engine.checkpoint import (RunLockedError, checkpoint_path, list_checkpoints, read_checkpoint,
                                           release_run_lock)
from mtnet_plugin.engine import evaluate
from mtnet_plugin.engine.logs import read_json_stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 4


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("clips"))
    good = [fault_files.good_video(os.path.join(folder, f"good_{i}.mp4"), seed=i) for i in range(4)]
    fault_files.write_list(os.path.join(folder, "train.csv"), [(p, i % 2) for i, p in enumerate(good)])
    return folder


def _yaml(tmp_path, data_dir, out, **sections):
    sections.setdefault("SOLVER", {"MAX_EPOCH": EPOCHS})
    sections.setdefault("TRAIN", {"BATCH_SIZE": 2, "EVAL_PERIOD": 100})
    return fault_files.write_yaml(str(tmp_path / "cfg.yaml"), fault_files.tiny_cfg_dict(data_dir, out, **sections))


def _frozen(path):
    cfg = load_config([path])
    cfg.freeze()
    return cfg


DRIVER_HEAD = """
import os, resource, shutil, signal, sys
sys.argv = ["run_net.py", "--cfg", {cfg!r}]
sys.path.insert(0, {tools!r})
import torch
torch.set_num_threads(1)
"""
DRIVER_TAIL = """
import run_net
run_net.main()
"""

# Third epoch, second iteration: SIGKILL (preemption, OOM killer) after two checkpoints.
KILL_IN_STEP = """
from mtnet_plugin.engine import trainer as trainer_module
_step = trainer_module.Trainer.run_step
def run_step(self, batch, dt_data=0.0):
    if self.epoch == 2 and self.iter == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return _step(self, batch, dt_data)
trainer_module.Trainer.run_step = run_step
"""

# Second checkpoint: half of its bytes reach the disk, then SIGKILL (power loss in the middle of a write).
KILL_IN_SAVE = """
import io
_save = torch.save
calls = []
def save(obj, f, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2 and hasattr(f, "write"):
        buf = io.BytesIO()
        _save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return _save(obj, f, *args, **kwargs)
torch.save = save
"""

# A disk with LIMIT bytes left: no file may grow past it, and statvfs / disk_usage say so.
FULL_DISK = """
LIMIT = {limit}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writing past the limit raises OSError(EFBIG) instead
resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))
_statvfs = os.statvfs
def statvfs(path):
    s = _statvfs(path)
    free = LIMIT // s.f_frsize
    return os.statvfs_result((s.f_bsize, s.f_frsize, s.f_blocks, free, free, s.f_files, s.f_ffree, s.f_favail,
                              s.f_flag, s.f_namemax))
os.statvfs = statvfs
shutil.disk_usage = lambda path: shutil._ntuple_diskusage(LIMIT * 100, LIMIT * 99, LIMIT)
"""


# The disk fills up during the run: the start-up check saw room, then no file may grow past LIMIT.
FILLS_UP = """
LIMIT = {limit}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))
shutil.disk_usage = lambda path: shutil._ntuple_diskusage(1 << 40, 1 << 30, 1 << 39)
"""


def _run_driver(tmp_path, cfg_path, patch, timeout=240):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER_HEAD.format(cfg=cfg_path, tools=os.path.join(ROOT, "tools")) + patch + DRIVER_TAIL)
    return subprocess.run([sys.executable, str(driver)], capture_output=True, text=True, timeout=timeout,
                          cwd=str(tmp_path), env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})


def _train_epochs(out):
    return [s["epoch"] for s in read_json_stats(os.path.join(out, "json_stats.log")) if s["_type"] == "train_epoch"]


def test_sigkill_mid_epoch_then_rerun_resumes_from_last_checkpoint(data_dir, tmp_path, caplog):
    out = str(tmp_path / "out")
    cfg_path = _yaml(tmp_path, data_dir, out)
    proc = _run_driver(tmp_path, cfg_path, KILL_IN_STEP)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert [read_checkpoint(p)["epoch"] for p in list_checkpoints(out)] == [0, 1]
    with caplog.at_level(logging.INFO):
        train(_frozen(cfg_path))
    assert f"Resuming from {checkpoint_path(out, 1)}" in caplog.text
    assert [read_checkpoint(p)["epoch"] for p in list_checkpoints(out)] == list(range(EPOCHS))
    # only the killed epoch is trained again: every epoch is logged once
    assert _train_epochs(out) == [f"{e}/{EPOCHS}" for e in range(1, EPOCHS + 1)]


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def torn_save(data_dir, tmp_path_factory):
    """A run SIGKILLed halfway through writing its second checkpoint, then rerun (in this process) to the end.

    Returns ``{"out", "after_kill": files in checkpoints/ after the kill, "log": the rerun's log text}``.
    """
    tmp_path = tmp_path_factory.mktemp("torn")
    out = str(tmp_path / "out")
    cfg_path = _yaml(tmp_path, data_dir, out)
    proc = _run_driver(tmp_path, cfg_path, KILL_IN_SAVE)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    after_kill = sorted(os.listdir(os.path.join(out, "checkpoints")))
    package_logger, collect, threads = logging.getLogger("mtnet_plugin"), _Collect(), torch.get_num_threads()
    level = package_logger.level
    package_logger.addHandler(collect)
    package_logger.setLevel(logging.INFO)
    torch.set_num_threads(1)
    try:
        train(_frozen(cfg_path))
    finally:
        package_logger.removeHandler(collect)
        package_logger.setLevel(level)
        torch.set_num_threads(threads)
    return {"out": out, "after_kill": after_kill, "log": "\n".join(collect.messages)}


def test_sigkill_mid_checkpoint_write_keeps_the_previous_checkpoint(torn_save):
    out = torn_save["out"]
    # the torn write never replaced a checkpoint: epoch 1's is intact, epoch 2's does not exist
    assert [f for f in torn_save["after_kill"] if f.endswith(".pyth")] == ["checkpoint_epoch_00001.pyth"]
    assert f"Resuming from {checkpoint_path(out, 0)}" in torn_save["log"]
    assert [read_checkpoint(p)["epoch"] for p in list_checkpoints(out)] == list(range(EPOCHS))
    # epoch 2 was logged before its checkpoint write died, and is trained once more: nothing else is redone
    assert _train_epochs(out) == ["1/4", "2/4", "2/4", "3/4", "4/4"]


def test_torn_checkpoint_write_leaves_no_file_behind_after_resume(torn_save):
    assert len(torn_save["after_kill"]) == 2, torn_save["after_kill"]  # the good checkpoint and the torn temp file
    left = sorted(os.listdir(os.path.join(torn_save["out"], "checkpoints")))
    fault_files.expect_handled(left == [f"checkpoint_epoch_{e:05d}.pyth" for e in range(1, EPOCHS + 1)],
                               f"files left in checkpoints/ after the resumed run: {left}")


def test_checkpoints_written_atomically_keep_the_usual_file_mode(torn_save):
    umask = os.umask(0)
    os.umask(umask)
    path = checkpoint_path(torn_save["out"], EPOCHS - 1)
    mode = os.stat(path).st_mode & 0o777
    fault_files.expect_handled(mode == 0o666 & ~umask, f"{path} has mode {oct(mode)}, expected {oct(0o666 & ~umask)}")


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    out = str(tmp_path / "out")
    cfg = _frozen(_yaml(tmp_path, data_dir, out))
    trainer = Trainer(cfg)

    def poison(module, inputs, output):  # the second epoch's logits turn NaN
        return output * float("nan") if trainer.epoch == 1 else output

    trainer.model.register_forward_hook(poison)
    with pytest.raises(TrainingDiverged) as err:
        trainer.train()
    message = str(err.value)
    assert "nan" in message.lower() and "epoch 2" in message and checkpoint_path(out, 0) in message
    assert list_checkpoints(out) == [checkpoint_path(out, 0)]
    state = read_checkpoint(checkpoint_path(out, 0))["model_state"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def _poison_gradient(trainer, when):
    """The first parameter's gradient turns NaN in the iterations ``when(trainer)`` names; the loss stays finite."""
    first = next(p for p in trainer.model.parameters() if p.requires_grad)
    first.register_hook(lambda grad: grad * float("nan") if when(trainer) else grad)


def _count_steps(trainer):
    calls = []
    step = trainer.optimizer.step

    def counted(*args, **kwargs):
        calls.append((trainer.epoch, trainer.iter))
        return step(*args, **kwargs)

    trainer.optimizer.step = counted
    return calls


def test_nan_gradient_with_a_finite_loss_stops_naming_the_iteration(data_dir, tmp_path):
    out = str(tmp_path / "out")
    cfg = _frozen(_yaml(tmp_path, data_dir, out))
    assert cfg.TRAIN.NONFINITE_GRAD == "stop"  # the default
    trainer = Trainer(cfg)
    _poison_gradient(trainer, lambda t: (t.epoch, t.iter) == (1, 1))
    steps = _count_steps(trainer)
    with pytest.raises(TrainingDiverged) as err:
        trainer.train()
    message = str(err.value)
    assert "Gradient norm is nan" in message and "epoch 2, iteration 2" in message, message
    assert checkpoint_path(out, 0) in message
    assert steps == [(0, 0), (0, 1), (1, 0)]  # the poisoned step was never taken
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert list_checkpoints(out) == [checkpoint_path(out, 0)]


def test_nan_gradient_in_skip_mode_skips_the_step_and_names_it(data_dir, tmp_path):
    out = str(tmp_path / "out")
    cfg = _frozen(_yaml(tmp_path, data_dir, out, TRAIN={"BATCH_SIZE": 2, "EVAL_PERIOD": 100,
                                                        "NONFINITE_GRAD": "skip"}))
    trainer = Trainer(cfg)
    _poison_gradient(trainer, lambda t: (t.epoch, t.iter) == (1, 1))  # the last step of epoch 2
    steps = _count_steps(trainer)
    trainer.train()
    assert len(steps) == 2 * EPOCHS - 1 and (1, 1) not in steps
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    epochs = [s for s in read_json_stats(os.path.join(out, "json_stats.log")) if s["_type"] == "train_epoch"]
    assert [s["nonfinite_grad_skips"] for s in epochs] == [0, 1, 0, 0]
    assert [s["nonfinite_grad_iters"] for s in epochs] == [[], [2], [], []]
    assert epochs[1]["grad_norm"] == "nan"  # the epoch line logs the last iteration's norm: written, not a crash

    # a NaN in every step: more than NONFINITE_GRAD_MAX_SKIPS in one epoch stops training
    cfg = _frozen(_yaml(tmp_path, data_dir, str(tmp_path / "out2"), TRAIN={
        "BATCH_SIZE": 2, "EVAL_PERIOD": 100, "NONFINITE_GRAD": "skip", "NONFINITE_GRAD_MAX_SKIPS": 1}))
    trainer = Trainer(cfg)
    _poison_gradient(trainer, lambda t: True)
    with pytest.raises(TrainingDiverged, match=r"2 optimizer steps skipped .* epoch 1 .*MAX_SKIPS = 1"):
        trainer.train()


def test_output_dir_that_cannot_be_created_fails_at_start(data_dir, tmp_path, root_handlers):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = str(blocker / "out")  # root ignores chmod; a path below a regular file fails for everyone
    cfg = _frozen(_yaml(tmp_path, data_dir, out))
    with pytest.raises(OSError) as err:
        run(cfg)
    assert str(blocker) in str(err.value)


def test_full_output_dir_fails_at_start_naming_it(data_dir, tmp_path):
    out = str(tmp_path / "out")
    cfg_path = _yaml(tmp_path, data_dir, out)
    # room for config.yaml and the logs, not for one checkpoint of the tiny model
    proc = _run_driver(tmp_path, cfg_path, FULL_DISK.format(limit=48 * 1024))
    seen = proc.stdout + proc.stderr
    assert proc.returncode not in (0, -signal.SIGKILL), seen[-3000:]
    fault_files.expect_handled("train_epoch" not in seen,
                               "an epoch was trained before the full OUTPUT_DIR was noticed:\n" + seen[-3000:])
    fault_files.expect_handled(any(out in line for line in seen.splitlines()[-5:]),
                               "the error does not name OUTPUT_DIR:\n" + seen[-3000:])


def test_disk_filling_up_during_the_run_stops_naming_the_checkpoint(data_dir, tmp_path):
    out = str(tmp_path / "out")
    cfg_path = _yaml(tmp_path, data_dir, out)
    proc = _run_driver(tmp_path, cfg_path, FILLS_UP.format(limit=48 * 1024))  # a checkpoint is ~110 KiB
    seen = proc.stdout + proc.stderr
    assert proc.returncode not in (0, -signal.SIGKILL), seen[-3000:]
    assert "train_epoch" in seen  # the start-up check passed: the write itself fails
    assert os.listdir(os.path.join(out, "checkpoints")) == [], "a partial checkpoint was left behind"
    last = "\n".join(seen.splitlines()[-3:])
    fault_files.expect_handled(checkpoint_path(out, 0) in last or os.path.join(out, "checkpoints") in last,
                               "the error does not name the checkpoint it could not write:\n" + seen[-3000:])


def test_foreign_checkpoint_names_are_never_resumed_or_tested(data_dir, tmp_path, caplog):
    out = str(tmp_path / "out")
    train(_frozen(_yaml(tmp_path, data_dir, out, SOLVER={"MAX_EPOCH": 2})))
    folder = os.path.join(out, "checkpoints")
    first = checkpoint_path(out, 0)
    for name in ("pretrain_checkpoint_epoch_00030.pyth", "backup_of_checkpoint_epoch_00100.pyth",
                 "checkpoint_epoch_00050.pyth.bak", "checkpoint_epoch_00060_old.pyth", "ssl_checkpoint_epoch_00070.pyth"):
        shutil.copy(first, os.path.join(folder, name))  # a loadable checkpoint of this model, at a foreign name
    cfg = _frozen(_yaml(tmp_path, data_dir, out, SOLVER={"MAX_EPOCH": 3}))
    with caplog.at_level(logging.INFO):
        train(cfg)
    assert f"Resuming from {checkpoint_path(out, 1)}: epoch 2 done" in caplog.text
    assert _train_epochs(out) == ["1/2", "2/2", "3/3"]
    assert evaluate.test_checkpoint_source(cfg) == (checkpoint_path(out, 2), "")

    # TASK names this run's files ({TASK}_checkpoint_epoch_NNNNN.pyth): it resumes and tests only those
    caplog.clear()
    cfg = _frozen(_yaml(tmp_path, data_dir, out, SOLVER={"MAX_EPOCH": 1}, TASK="ssl"))
    with caplog.at_level(logging.INFO):
        train(cfg)  # ssl_checkpoint_epoch_00070.pyth (a copy of epoch 1's) is this task's: nothing left to train
    assert "Resuming from " + os.path.join(folder, "ssl_checkpoint_epoch_00070.pyth") in caplog.text
    os.remove(os.path.join(folder, "ssl_checkpoint_epoch_00070.pyth"))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(cfg)
    assert "Resuming" not in caplog.text  # checkpoint_epoch_00003.pyth is another task's
    assert evaluate.test_checkpoint_source(cfg) == (checkpoint_path(out, 0, "ssl"), "")
    assert os.path.exists(os.path.join(folder, "ssl_checkpoint_epoch_00001.pyth"))


HOLD_LOCK = """
import sys, time
from mtnet_plugin.engine.checkpoint import acquire_run_lock
acquire_run_lock(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def test_second_run_in_the_same_output_dir_is_refused_and_a_dead_runs_lock_taken_over(data_dir, tmp_path, caplog):
    out = str(tmp_path / "out")
    cfg = _frozen(_yaml(tmp_path, data_dir, out, SOLVER={"MAX_EPOCH": 1}))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, out], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError) as err:
            train(cfg)
        message = str(err.value)
        assert f"process {holder.pid} on host {socket.gethostname()}" in message and "still running" in message
        assert os.path.join(out, "run.lock") in message
        assert not os.path.exists(os.path.join(out, "checkpoints")), "the refused run wrote into OUTPUT_DIR"
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level(logging.WARNING):
        train(cfg)  # the holder was killed: its lock is stale
    assert f"Taking over the run lock {os.path.join(out, 'run.lock')} of process {holder.pid}" in caplog.text
    assert list_checkpoints(out) == [checkpoint_path(out, 0)]
    assert not os.path.exists(os.path.join(out, "run.lock"))  # released at the end


SLOW_WRITER = """
import sys, time, torch
from mtnet_plugin.engine import checkpoint as ck
def slow_save(obj, f):
    f.write(b"the first bytes")
    f.flush()
    print("writing", flush=True)
    time.sleep(120)
torch.save = slow_save
ck.atomic_save({"a": 1}, sys.argv[1])
"""


def test_a_live_writers_temporary_checkpoint_is_not_removed_by_a_new_run(data_dir, tmp_path, caplog):
    out = str(tmp_path / "out")
    folder = os.path.join(out, "checkpoints")
    os.makedirs(folder)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    leftovers = [f".tmp_{host}_{dead.pid}_{'0' * 32}.pyth.partial",  # a killed writer of this host: removed
                 f".tmp_other-node_{os.getpid()}_{'1' * 32}.pyth.partial"]  # another host's: cannot tell, kept
    for name in leftovers:
        open(os.path.join(folder, name), "wb").close()
    writer = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, os.path.join(folder, "checkpoint_epoch_00009.pyth")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        live = [n for n in os.listdir(folder) if n.startswith(f".tmp_{host}_{writer.pid}_")]
        assert len(live) == 1
        with caplog.at_level(logging.INFO):
            trainer = Trainer(_frozen(_yaml(tmp_path, data_dir, out, SOLVER={"MAX_EPOCH": 1})))
        release_run_lock(trainer.run_lock)
        left = sorted(os.listdir(folder))
        fault_files.expect_handled(live[0] in left, f"the live writer's {live[0]} was removed: {left}")
        assert left == sorted(live + leftovers[1:])
        assert f"Removed 1 partial checkpoint write(s) of an interrupted run in {folder}: {leftovers[0]}" in caplog.text
        assert writer.poll() is None
    finally:
        writer.kill()
        writer.wait()
