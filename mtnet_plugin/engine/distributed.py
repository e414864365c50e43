"""Distributed set-up and helpers: torchrun, SLURM tasks, or PySlowFast's ``--init_method/--shard_id/--num_shards``.

Process layout (as PySlowFast's, with torchrun and SLURM added):

- Under ``torchrun`` (``$WORLD_SIZE`` set): one process per launched rank, ``init_method="env://"``, ranks from
  ``$RANK`` / ``$LOCAL_RANK``.
- Under SLURM (``srun``: ``$SLURM_PROCID`` set and ``$SLURM_NTASKS > 1``, no ``$WORLD_SIZE``): one process per task,
  ``rank = SLURM_PROCID``, ``world = SLURM_NTASKS``, ``local_rank = SLURM_LOCALID``; the rendezvous is
  ``$MASTER_ADDR:$MASTER_PORT`` when the user sets them, else the first host of ``$SLURM_JOB_NODELIST`` and port
  ``15000 + SLURM_JOB_ID % 20000`` (every task computes the same one). :func:`slurm_to_env` turns this into the
  torchrun variables, so the torchrun path runs. ``MTNET_IGNORE_SLURM=1`` turns it off (one independent run per
  task, as before).
- Otherwise, with CUDA and ``NUM_GPUS > 1``: ``torch.multiprocessing.spawn`` of ``NUM_GPUS`` processes per shard,
  ``rank = SHARD_ID * NUM_GPUS + local_rank``, ``world = NUM_GPUS * NUM_SHARDS``, as PySlowFast's ``launch_job``.
  Without ``--init_method`` a single machine's group meets on a free local port (two runs on one host do not
  collide); several shards meet on ``$MASTER_ADDR:$MASTER_PORT`` if set, else PySlowFast's ``tcp://localhost:9999``.
- Otherwise, with ``NUM_SHARDS > 1`` (e.g. one CPU process per machine): ``rank = SHARD_ID``,
  ``world = NUM_SHARDS``.
- Otherwise a single process, no process group.

Failures (docs/reliability.md): rank 0's work that the others wait for (the checkpoint write) goes through
:func:`run_on_main`, which hands its error to every rank. An exception in any rank is posted in the group's store;
the others, whether they see a broken connection or sit in a collective that would wait until the group's
timeout, stop within seconds naming the rank and its error (:class:`PeerFailed`). An exception with an
``exit_code`` attribute (the trainer's ``Preempted``, raised by every rank together) is not a failure and passes
as it is.

Backend: NCCL when CUDA is used and ``DIST_BACKEND`` is nccl, else gloo (CPU).
Batch semantics: ``TRAIN.BATCH_SIZE`` is the batch of one machine, split over its processes (PySlowFast's
``BATCH_SIZE / NUM_GPUS``; the global batch is ``BATCH_SIZE x NUM_SHARDS``). Under a process group the loaders see
``NUM_GPUS = local_world_size()`` (``process_setup.loader_cfg``), so CPU processes stand in for GPUs and a torchrun that
starts a different number of GPU processes than NUM_GPUS still splits the machine's batch (with a warning).
"""
import datetime
import logging
import os
import re
import socket
import threading
import time
from typing import Callable, List, Optional

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


_FAILED_KEY = "mtnet/failed"
# Seconds a rank waits, after seeing that another rank failed, for its own collective to fail before it exits.
FAILURE_GRACE_S = 5.0
_WATCH_PERIOD_S = 1.0


class PeerFailed(RuntimeError):
    """Another rank of the process group failed; the message names it and its error."""


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank: the process group's, else ``$RANK`` (set by torchrun and our spawn), else 0."""
    return dist.get_rank() if is_dist() else int(os.environ.get("RANK", "0"))


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def local_world_size() -> int:
    """Processes on this machine (``$LOCAL_WORLD_SIZE`` under torchrun, else world size / shards)."""
    if "LOCAL_WORLD_SIZE" in os.environ:
        return int(os.environ["LOCAL_WORLD_SIZE"])
    return get_world_size()


def expand_nodelist(nodelist: str) -> List[str]:
    """SLURM's compressed host list -> host names: ``node[01-03,07],gpu1`` -> node01, node02, node03, node07, gpu1.

    Zero padding of a range is kept; several bracket groups in one name expand as a product.
    """
    items, depth, current = [], 0, ""
    for ch in nodelist.strip():
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    if depth != 0:
        raise ValueError(f"SLURM_JOB_NODELIST {nodelist!r}: unbalanced brackets")
    items.append(current)
    hosts: List[str] = []
    for item in filter(None, items):
        names = [""]
        for text, group in re.findall(r"([^\[]*)(?:\[([^\]]*)\])?", item):
            options = [text]
            if group:
                options = []
                for part in group.split(","):
                    lo, _, hi = part.partition("-")
                    if hi:
                        options += [text + str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
                    else:
                        options.append(text + lo)
            names = [n + o for n in names for o in options]
        hosts += names
    return hosts


def slurm_to_env() -> bool:
    """Set torchrun's variables from SLURM's for a multi-task ``srun`` step (see the module docstring).

    Returns whether this process is a SLURM task of a multi-task step (and the variables are now set).
    """
    env = os.environ
    if env.get("MTNET_IGNORE_SLURM") == "1" or "SLURM_PROCID" not in env or int(env.get("SLURM_NTASKS", "1")) <= 1:
        return False
    if int(env.get("WORLD_SIZE", "1")) > 1 and env.get("MTNET_FROM_SLURM") != "1":
        return False  # torchrun (inside a SLURM allocation) already set the layout
    world = int(env["SLURM_NTASKS"])
    nodes = int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", "1")) or 1)
    per_node = env.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
    if "MASTER_ADDR" not in env:
        hosts = expand_nodelist(env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", "localhost")))
        env["MASTER_ADDR"] = hosts[0] if hosts else "localhost"
    if "MASTER_PORT" not in env:
        env["MASTER_PORT"] = str(15000 + int(env.get("SLURM_JOB_ID", "0")) % 20000)
    env.update(RANK=env["SLURM_PROCID"], WORLD_SIZE=str(world), LOCAL_RANK=env.get("SLURM_LOCALID", "0"),
               LOCAL_WORLD_SIZE=per_node if per_node.isdigit() else str(max(1, world // nodes)),
               MTNET_FROM_SLURM="1")
    return True


def free_port() -> int:
    """A TCP port that is free on this host now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_init_method(cfg) -> str:
    """The rendezvous without ``--init_method``: a free local port for one machine, else MASTER_ADDR/PORT or
    PySlowFast's ``tcp://localhost:9999``."""
    if cfg.NUM_SHARDS <= 1:
        return f"tcp://127.0.0.1:{free_port()}"
    if "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
        return f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    return "tcp://localhost:9999"


def launch_rank(cfg) -> int:
    """The global rank this process will have (or, for a spawning parent, its shard's first rank)."""
    slurm_to_env()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return int(os.environ["RANK"])
    if use_cuda(cfg) and cfg.NUM_GPUS > 1:
        return cfg.SHARD_ID * cfg.NUM_GPUS
    return cfg.SHARD_ID


def is_main_process() -> bool:
    return get_rank() == 0


def use_cuda(cfg) -> bool:
    """Whether this run uses CUDA (``NUM_GPUS > 0`` and a GPU is present)."""
    return cfg.NUM_GPUS > 0 and torch.cuda.is_available()


def device_for(cfg) -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` or CPU."""
    if use_cuda(cfg):
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


def _backend(cfg) -> str:
    return "nccl" if use_cuda(cfg) and cfg.DIST_BACKEND == "nccl" else "gloo"


def _init(cfg, init_method: str, rank: int, world_size: int, local_rank: int) -> None:
    os.environ.setdefault("RANK", str(rank))
    os.environ.setdefault("LOCAL_RANK", str(local_rank))
    if use_cuda(cfg):
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group(
        backend=_backend(cfg),
        init_method=init_method,
        world_size=world_size,
        rank=rank,
        timeout=datetime.timedelta(minutes=30),
    )
    logger.info("Process group ready: rank %d / %d, backend %s", rank, world_size, dist.get_backend())


def _spawn_worker(local_rank: int, cfg, func: Callable, init_method: str, setup_logs: bool) -> None:
    rank = cfg.SHARD_ID * cfg.NUM_GPUS + local_rank
    os.environ["RANK"], os.environ["LOCAL_RANK"] = str(rank), str(local_rank)
    os.environ["LOCAL_WORLD_SIZE"] = str(cfg.NUM_GPUS)
    if setup_logs:  # a spawned process is an entry point of its own
        from .logs import setup_logging

        setup_logging(cfg.OUTPUT_DIR, rank)
    _run_in_group(cfg, func, init_method, rank, cfg.NUM_GPUS * cfg.NUM_SHARDS, local_rank)


def _store():
    """The default group's key-value store, or None (a private torch API: absent in some versions)."""
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()
    except Exception:  # no store API in this torch: failures still reach peers through broken connections
        return None


def _peer_failure(store, own: str = "") -> Optional[str]:
    """The failure another rank posted, or None (also when the store is gone)."""
    try:
        if store is not None and store.check([_FAILED_KEY]):
            message = store.get(_FAILED_KEY).decode("utf-8", "replace")
            return None if message == own else message
    except Exception:  # the store's host (rank 0) has exited: nothing to learn
        return None
    return None


def _watch_peers(store, rank: int, stop: threading.Event) -> None:
    """Exit this process when another rank posts a failure and this one has not stopped within the grace time."""
    while not stop.wait(_WATCH_PERIOD_S):
        message = _peer_failure(store)
        if message is None:
            continue
        if stop.wait(FAILURE_GRACE_S):
            return  # the main thread stopped on its own (its collective failed)
        logger.error("rank %d stops: %s (it was waiting for that rank)", rank, message)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)


def _run_in_group(cfg, func, init_method, rank, world_size, local_rank):
    _init(cfg, init_method, rank, world_size, local_rank)
    store = _store()
    stop = threading.Event()
    threading.Thread(target=_watch_peers, args=(store, rank, stop), daemon=True, name="mtnet-peer-watch").start()
    try:
        return func(cfg)
    except BaseException as e:
        stop.set()
        if getattr(e, "exit_code", None) is not None:
            raise  # an orderly stop every rank takes together (the trainer's Preempted): not a failure to post
        peer = _peer_failure(store) if not isinstance(e, PeerFailed) else None
        if peer is not None:  # another rank failed first: this error is a consequence (a broken connection)
            raise PeerFailed(f"rank {rank} stopped because {peer}") from e
        own = f"rank {rank} failed: {type(e).__name__}: {e}"
        try:
            if store is not None and not isinstance(e, PeerFailed):
                store.set(_FAILED_KEY, own)
                time.sleep(2 * _WATCH_PERIOD_S)  # let the others read it before this rank's store host may exit
        except Exception:  # the store is gone: the others see the broken connection instead
            pass
        raise
    finally:
        stop.set()
        if is_dist():
            dist.destroy_process_group()


def run_on_main(fn: Callable, what: str):
    """``fn()`` on rank 0 only, the others waiting; every rank returns rank 0's result or raises its error.

    Rank 0 re-raises its own exception; the other ranks raise :class:`PeerFailed` naming it, instead of waiting in a
    barrier until the group's timeout. Without a process group it is just ``fn()``.
    """
    if not is_dist():
        return fn()
    result, error = None, None
    if get_rank() == 0:
        try:
            result = fn()
        except Exception as e:  # handed to every rank below
            error = e
    payload = [(result, None if error is None else f"{type(error).__name__}: {error}")]
    dist.broadcast_object_list(payload, src=0)
    if error is not None:
        raise error
    result, message = payload[0]
    if message is not None:
        raise PeerFailed(f"rank 0 failed while {what}: {message}")
    return result


def launch(cfg, func: Callable, init_method: Optional[str] = None, setup_logs: bool = True):
    """Run ``func(cfg)`` in the process layout described in the module docstring.

    Args:
        cfg: the frozen run config (``NUM_GPUS``, ``NUM_SHARDS``, ``SHARD_ID``, ``DIST_BACKEND``).
        func: called as ``func(cfg)`` in every process.
        init_method: e.g. ``tcp://host:port`` for multi-machine runs without torchrun (None: see
            :func:`default_init_method`).
        setup_logs: spawned workers configure logging for themselves.

    Returns:
        What ``func`` returns in this process (None for ``spawn``).
    """
    if is_dist():  # already inside a group (nested call)
        return func(cfg)
    if slurm_to_env():
        logger.info("SLURM task %s of %s: process group at %s:%s", os.environ["RANK"], os.environ["WORLD_SIZE"],
                    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"])
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        world_size = int(os.environ["WORLD_SIZE"])
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
        return _run_in_group(cfg, func, "env://", rank, world_size, local_rank)
    init_method = init_method or default_init_method(cfg)
    if use_cuda(cfg) and cfg.NUM_GPUS > 1:
        torch.multiprocessing.spawn(
            _spawn_worker, nprocs=cfg.NUM_GPUS, args=(cfg, func, init_method, setup_logs), daemon=False
        )
        return None
    if cfg.NUM_SHARDS > 1:
        os.environ["LOCAL_WORLD_SIZE"] = "1"
        os.environ["RANK"] = str(cfg.SHARD_ID)
        return _run_in_group(cfg, func, init_method, cfg.SHARD_ID, cfg.NUM_SHARDS, 0)
    return func(cfg)


def all_gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (just ``[obj]`` without a process group)."""
    if not is_dist():
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(values: "list[float]", device=None) -> "list[float]":
    """Average a list of numbers over processes."""
    if not is_dist():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device or "cpu")
    dist.all_reduce(t)
    return (t / get_world_size()).tolist()


def barrier() -> None:
    if is_dist():
        dist.barrier()
