"""Two CPU processes through torchrun (gloo): DDP training and gathered test predictions, same stats format."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from mtnet_plugin.config import get_cfg
from mtnet_plugin.engine import distributed
from mtnet_plugin.engine.checkpoint import list_checkpoints
from mtnet_plugin.engine.logs import read_json_stats
from test_engine_trainer import write_class_videos, write_tiny_yaml
from test_run_net import RUN_NET, cpu_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_train_and_test(tmp_path, make_video):
    data_dir = write_class_videos(make_video, splits=("train", "val", "test"), per_class=2)
    out = str(tmp_path / "out")
    cfg = write_tiny_yaml(str(tmp_path / "ddp.yaml"), data_dir, out,
                          TRAIN={"BATCH_SIZE": 2, "EVAL_PERIOD": 2, "CHECKPOINT_PERIOD": 2},
                          TEST={"ENABLE": True, "NUM_ENSEMBLE_VIEWS": 2, "NUM_SPATIAL_CROPS": 1, "BATCH_SIZE": 2},
                          SOLVER={"MAX_EPOCH": 2}, BN={"NORM_TYPE": "sync_batchnorm"})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), RUN_NET, "--cfg", cfg]
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=cpu_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "rank 1 / 2, backend gloo" in open(os.path.join(out, "stdout_rank1.log")).read()
    # BATCH_SIZE 2 is the machine's batch: 1 clip per process, 2 of the 4 clips per process -> 2 iterations
    assert '"iter": "2/2"' in open(os.path.join(out, "stdout.log")).read()
    stats = read_json_stats(os.path.join(out, "json_stats.log"))
    train = [s for s in stats if s["_type"] == "train_epoch"]
    val = [s for s in stats if s["_type"] == "val_epoch"]
    assert [s["epoch"] for s in train] == ["1/2", "2/2"] and [s["epoch"] for s in val] == ["2/2"]  # rank 0 only
    # same format as a single-process run (test_engine_trainer checks the same key set)
    assert set(train[0]) == {"_type", "epoch", "dt", "dt_data", "dt_net", "eta", "loss", "lr", "grad_norm",
                             "gpu_mem", "RAM", "top1_err", "top5_err", "data_failures", "data_failure_paths",
                             "nonfinite_grad_skips", "nonfinite_grad_iters"}
    assert [os.path.basename(p) for p in list_checkpoints(out)] == ["checkpoint_epoch_00002.pyth"]
    res = json.load(open(os.path.join(out, "test_results.json")))
    # each rank tested half of the 8 views; gathered and de-duplicated: every video has exactly its 2 views
    assert res["num_videos"] == 4 and [v["views"] for v in res["per_video"]] == [2, 2, 2, 2]
    assert sorted(v["video_idx"] for v in res["per_video"]) == [0, 1, 2, 3]


def test_pyslowfast_shard_flags_without_torchrun(tmp_path, make_video):
    """``--init_method tcp://... --num_shards 2 --shard_id i``: one CPU process per "machine", as PySlowFast."""
    data_dir = write_class_videos(make_video, splits=("train",), per_class=2)
    out = str(tmp_path / "out")
    cfg = write_tiny_yaml(str(tmp_path / "shards.yaml"), data_dir, out,
                          TRAIN={"BATCH_SIZE": 2, "EVAL_PERIOD": 100}, SOLVER={"MAX_EPOCH": 1, "WARMUP_EPOCHS": 0.0})
    init = f"tcp://127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, RUN_NET, "--cfg", cfg, "--init_method", init, "--num_shards", "2",
                               "--shard_id", str(i), "--opts", "TEST.ENABLE", "False"],
                              cwd=str(tmp_path), env=cpu_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for i in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert "rank 0 / 2, backend gloo" in open(os.path.join(out, "stdout.log")).read()
    assert "rank 1 / 2, backend gloo" in open(os.path.join(out, "stdout_rank1.log")).read()
    stats = read_json_stats(os.path.join(out, "json_stats.log"))
    assert [s["epoch"] for s in stats if s["_type"] == "train_epoch"] == ["1/1"]  # written by rank 0 only
    assert [os.path.basename(p) for p in list_checkpoints(out)] == ["checkpoint_epoch_00001.pyth"]


@pytest.mark.parametrize("nodelist, hosts", [
    ("node[01-03,07]", ["node01", "node02", "node03", "node07"]),
    ("gpu-a[1-2],gpu-b3", ["gpu-a1", "gpu-a2", "gpu-b3"]),
    ("rack[1-2]-n[8-9]", ["rack1-n8", "rack1-n9", "rack2-n8", "rack2-n9"]),
    ("single", ["single"]),
    ("n[098-101]", ["n098", "n099", "n100", "n101"]),
])
def test_slurm_nodelist_expansion(nodelist, hosts):
    assert distributed.expand_nodelist(nodelist) == hosts


def test_slurm_variables_become_the_process_layout(monkeypatch):
    monkeypatch.setattr(os, "environ", dict(os.environ))  # slurm_to_env writes the variables: keep them here
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE",
                "MTNET_FROM_SLURM", "MTNET_IGNORE_SLURM"):
        os.environ.pop(key, None)
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "123456")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-10]")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "4")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2(x4)")
    assert distributed.slurm_to_env()
    env = {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                      "MASTER_PORT")}
    assert env == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                   "MASTER_ADDR": "gpu07", "MASTER_PORT": str(15000 + 123456 % 20000)}
    assert distributed.launch_rank(get_cfg()) == 5
    # the user's MASTER_ADDR / MASTER_PORT win
    for key in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "MTNET_FROM_SLURM"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.9")
    monkeypatch.setenv("MASTER_PORT", "29511")
    assert distributed.slurm_to_env() and (os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]) == (
        "10.0.0.9", "29511")
    # a single task, or the opt-out, is an ordinary process
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("MTNET_FROM_SLURM")
    monkeypatch.setenv("MTNET_IGNORE_SLURM", "1")
    assert not distributed.slurm_to_env() and "WORLD_SIZE" not in os.environ


def _group_worker(rank, port, queue):
    """One rank of a two-process gloo group whose work ends in an orderly stop (an exception with ``exit_code``)."""
    os.environ.pop("MASTER_ADDR", None)
    cfg = get_cfg()
    cfg.NUM_GPUS = 0

    class OrderlyStop(Exception):
        exit_code = 143

    def func(_):
        if rank == 1:
            time.sleep(3)  # rank 0 stops first: rank 1 must not take it for a failure
        raise OrderlyStop(f"stop on rank {rank}")

    try:
        distributed._run_in_group(cfg, func, f"tcp://127.0.0.1:{port}", rank, 2, rank)
    except BaseException as e:  # reported to the test
        queue.put((rank, type(e).__name__, str(e)))


@pytest.mark.slow  # two spawned processes
def test_an_orderly_stop_of_every_rank_is_not_turned_into_a_peer_failure():
    """The trainer's Preempted (an exception with ``exit_code``) is raised by every rank together: each rank must
    see its own exception, not a PeerFailed naming the rank that happened to raise first (run_net exits with the
    signal's code only for Preempted). A real failure is tests/test_faults_distributed.py's."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_group_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict((rank, (name, message)) for rank, name, message in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():
            p.kill()
    assert got == {0: ("OrderlyStop", "stop on rank 0"), 1: ("OrderlyStop", "stop on rank 1")}
