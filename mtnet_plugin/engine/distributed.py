"""Distributed set-up and helpers: torchrun, or PySlowFast's ``--init_method/--shard_id/--num_shards``.

Process layout (facts §3.3, §9.5):

- Under ``torchrun`` (``$WORLD_SIZE`` set): one process per launched rank, ``init_method="env://"``, ranks from
  ``$RANK`` / ``$LOCAL_RANK``.
- Otherwise, with CUDA and ``NUM_GPUS > 1``: ``torch.multiprocessing.spawn`` of ``NUM_GPUS`` processes per shard,
  ``rank = SHARD_ID * NUM_GPUS + local_rank``, ``world = NUM_GPUS * NUM_SHARDS``, as PySlowFast's ``launch_job``.
- Otherwise, with ``NUM_SHARDS > 1`` (e.g. one CPU process per machine): ``rank = SHARD_ID``,
  ``world = NUM_SHARDS``.
- Otherwise a single process, no process group.

Backend: NCCL when CUDA is used and ``DIST_BACKEND`` is nccl, else gloo (CPU).
Batch semantics: ``TRAIN.BATCH_SIZE`` is the batch of one machine, split over its processes (PySlowFast's
``BATCH_SIZE / NUM_GPUS``; the global batch is ``BATCH_SIZE x NUM_SHARDS``). Under a process group the loaders see
``NUM_GPUS = local_world_size()`` (``common.loader_cfg``), so CPU processes stand in for GPUs and a torchrun that
starts a different number of GPU processes than NUM_GPUS still splits the machine's batch (with a warning).
"""
import datetime
import logging
import os
from typing import Callable, Optional

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


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


def launch_rank(cfg) -> int:
    """The global rank this process will have (or, for a spawning parent, its shard's first rank)."""
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


def _run_in_group(cfg, func, init_method, rank, world_size, local_rank):
    _init(cfg, init_method, rank, world_size, local_rank)
    try:
        return func(cfg)
    finally:
        if is_dist():
            dist.destroy_process_group()


def launch(cfg, func: Callable, init_method: Optional[str] = None, setup_logs: bool = True):
    """Run ``func(cfg)`` in the process layout described in the module docstring.

    Args:
        cfg: the frozen run config (``NUM_GPUS``, ``NUM_SHARDS``, ``SHARD_ID``, ``DIST_BACKEND``).
        func: called as ``func(cfg)`` in every process.
        init_method: e.g. ``tcp://host:port`` for multi-machine runs without torchrun.
        setup_logs: spawned workers configure logging for themselves.

    Returns:
        What ``func`` returns in this process (None for ``spawn``).
    """
    if is_dist():  # already inside a group (nested call)
        return func(cfg)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        world_size = int(os.environ["WORLD_SIZE"])
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
        return _run_in_group(cfg, func, "env://", rank, world_size, local_rank)
    init_method = init_method or "tcp://localhost:9999"
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
