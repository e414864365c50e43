"""Fault injection, distributed side: SLURM tasks forming one process group, a rank that fails while the others
wait, and the default rendezvous of single-machine runs.

Two CPU processes (gloo) start ``tools/run_net.py`` through a small driver with SLURM's variables set, as ``srun``
would. Each test is a row of docs/reliability.md; each is bounded in time (a hang fails it).
"""
import os
import socket
import subprocess
import sys

import pytest

from mtnet_plugin.config import get_cfg
from mtnet_plugin.engine import distributed
from mtnet_plugin.engine.checkpoint import list_checkpoints
from mtnet_plugin.engine.logs import read_json_stats
from test_engine_trainer import write_class_videos, write_tiny_yaml
from test_run_net import RUN_NET, cpu_env

DRIVER = """
import os, resource, runpy, shutil, signal, sys
import torch
rank = os.environ["SLURM_PROCID"]
real_save = torch.save
def spy(obj, f, *args, **kwargs):  # who writes checkpoints
    with open(os.path.join({spy!r}, "saved_by_rank" + rank), "a") as log:
        log.write("x\\n")
    return real_save(obj, f, *args, **kwargs)
torch.save = spy
if rank == "0" and {fill_up_rank0}:  # rank 0's disk fills up: files stop at 48 KiB (a checkpoint is ~110 KiB)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (48 * 1024, 48 * 1024))
    shutil.disk_usage = lambda path: shutil._ntuple_diskusage(1 << 40, 1 << 30, 1 << 39)
if rank == "1" and {fail_rank1}:  # rank 1 fails while loading its second training batch
    from mtnet_plugin.data import kinetics
    real_getitem, calls = kinetics.KineticsDataset.__getitem__, []
    def failing(self, index):
        calls.append(index)
        if self.split == "train" and len(calls) > 1:
            raise RuntimeError("injected failure on rank 1")
        return real_getitem(self, index)
    kinetics.KineticsDataset.__getitem__ = failing
sys.argv = ["run_net.py", "--cfg", {cfg!r}, "--opts", "TEST.ENABLE", "False"]
runpy.run_path({run_net!r}, run_name="__main__")
"""


def _slurm_port() -> int:
    """A SLURM_JOB_ID whose derived port (15000 + id % 20000) is free now."""
    for job_id in range(4242, 20000, 97):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", 15000 + job_id))
            except OSError:
                continue
        return job_id
    pytest.skip("no free port in 15000..34999")


def _srun(tmp_path, cfg, timeout=240, **flags):
    """Two 'SLURM tasks' of one step on this host; returns (return codes, outputs)."""
    spy = tmp_path / "spy"
    spy.mkdir(exist_ok=True)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(spy=str(spy), cfg=cfg, run_net=RUN_NET,
                                    fill_up_rank0=flags.get("fill_up_rank0", False),
                                    fail_rank1=flags.get("fail_rank1", False)))
    job = str(_slurm_port())
    procs = []
    for rank in range(2):
        env = cpu_env(SLURM_PROCID=str(rank), SLURM_NTASKS="2", SLURM_LOCALID=str(rank), SLURM_JOB_ID=job,
                      SLURM_JOB_NODELIST="127.0.0.[1-4]", SLURM_JOB_NUM_NODES="1", SLURM_NTASKS_PER_NODE="2")
        for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
            env.pop(key, None)
        procs.append(subprocess.Popen([sys.executable, str(driver)], cwd=str(tmp_path), env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [p.returncode for p in procs], outs, spy


def _cfg(tmp_path, make_video, epochs=1):
    data_dir = write_class_videos(make_video, splits=("train",), per_class=2)
    out = str(tmp_path / "out")
    cfg = write_tiny_yaml(str(tmp_path / "slurm.yaml"), data_dir, out,
                          TRAIN={"BATCH_SIZE": 2, "EVAL_PERIOD": 100, "CHECKPOINT_PERIOD": 1},
                          SOLVER={"MAX_EPOCH": epochs, "WARMUP_EPOCHS": 0.0})
    return cfg, out


@pytest.mark.slow  # two processes training a tiny model
def test_two_slurm_tasks_form_one_group_and_only_rank0_writes_checkpoints(tmp_path, make_video):
    cfg, out = _cfg(tmp_path, make_video)
    codes, outs, spy = _srun(tmp_path, cfg)
    assert codes == [0, 0], "\n".join(o[-3000:] for o in outs)
    assert "rank 0 / 2, backend gloo" in open(os.path.join(out, "stdout.log")).read()
    assert "rank 1 / 2, backend gloo" in open(os.path.join(out, "stdout_rank1.log")).read()
    assert "SLURM task 0 of 2: process group at 127.0.0.1:" in open(os.path.join(out, "stdout.log")).read()
    # one run, not two: BATCH_SIZE 2 is the machine's batch, 1 clip per task -> 2 iterations of 2 clips each
    assert '"iter": "2/2"' in open(os.path.join(out, "stdout.log")).read()
    stats = read_json_stats(os.path.join(out, "json_stats.log"))
    assert [s["epoch"] for s in stats if s["_type"] == "train_epoch"] == ["1/1"]
    assert [os.path.basename(p) for p in list_checkpoints(out)] == ["checkpoint_epoch_00001.pyth"]
    assert sorted(os.listdir(spy)) == ["saved_by_rank0"]  # rank 1 never wrote a checkpoint


@pytest.mark.slow  # two processes training a tiny model
def test_rank0_checkpoint_write_failure_stops_every_rank(tmp_path, make_video):
    cfg, out = _cfg(tmp_path, make_video)
    codes, outs, _ = _srun(tmp_path, cfg, timeout=180, fill_up_rank0=True)
    assert codes[0] != 0 and codes[1] != 0, "\n".join(o[-3000:] for o in outs)
    assert "could not write checkpoint" in outs[0]
    # rank 1 does not sit in a barrier: it stops, naming rank 0's error
    assert "PeerFailed: rank 0 failed while writing a checkpoint: OSError" in outs[1], outs[1][-3000:]
    assert "could not write checkpoint" in outs[1]


@pytest.mark.slow  # two processes training a tiny model
def test_a_rank_failing_mid_epoch_stops_the_others_naming_it(tmp_path, make_video):
    cfg, out = _cfg(tmp_path, make_video, epochs=2)
    codes, outs, _ = _srun(tmp_path, cfg, timeout=180, fail_rank1=True)
    assert codes[0] != 0 and codes[1] != 0, "\n".join(o[-3000:] for o in outs)
    assert "RuntimeError: injected failure on rank 1" in outs[1]
    assert "rank 1 failed: RuntimeError: injected failure on rank 1" in outs[0], outs[0][-3000:]


def test_default_rendezvous_of_one_machine_is_a_free_port(monkeypatch):
    """Two spawn-launched runs on one host must not both take tcp://localhost:9999."""
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    cfg = get_cfg()
    with socket.socket() as busy:
        try:
            busy.bind(("127.0.0.1", 9999))
            busy.listen()
        except OSError:
            pass  # 9999 is taken already: the point stands
        first, second = distributed.default_init_method(cfg), distributed.default_init_method(cfg)
    for method in (first, second):
        assert method.startswith("tcp://127.0.0.1:") and not method.endswith(":9999")
        with socket.socket() as s:
            s.bind(("127.0.0.1", int(method.rsplit(":", 1)[1])))  # free
    spec = __import__("importlib.util").util.spec_from_file_location("run_net_cli", RUN_NET)
    cli = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.parse_args(["--cfg", "x.yaml"]).init_method is None  # the CLI leaves the choice to launch()
    cfg.NUM_SHARDS = 2  # several machines need one agreed address: PySlowFast's default stays
    assert distributed.default_init_method(cfg) == "tcp://localhost:9999"
