"""What each process sets up before it trains or tests: its seeds, the model on its device (DDP, SyncBN), its
share of the batch, and batches moved to its device."""
import logging
import random

import numpy as np
import torch
from torch import nn

from mtnet_plugin.models import build_model

from .distributed import device_for, get_world_size, is_dist, is_main_process, local_world_size, use_cuda

logger = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (PySlowFast seeds every rank with RNG_SEED)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model_on_device(cfg, *, train: bool) -> "tuple[nn.Module, torch.device]":
    """``build_model(cfg)`` on this process's device; for training under DDP, SyncBN (if asked) and the wrapper.

    Returns:
        ``(model, device)``; the model is DDP-wrapped only when training in a process group.
    """
    device = device_for(cfg)
    model = build_model(cfg)
    logger.info("Model %s: %s parameters", type(model).__name__, f"{count_params(model):,}")
    if cfg.LOG_MODEL_INFO and is_main_process():
        logger.debug("Model:\n%s", model)
    if cfg.BN.NORM_TYPE == "sub_batchnorm":
        logger.warning("BN.NORM_TYPE sub_batchnorm is not implemented: using the model's plain BatchNorm")
    model = model.to(device)
    if train and is_dist():
        if cfg.BN.NORM_TYPE == "sync_batchnorm":
            if device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
                logger.info("BatchNorm layers converted to SyncBatchNorm over %d processes", get_world_size())
            else:
                logger.warning("BN.NORM_TYPE sync_batchnorm needs CUDA; keeping per-process BatchNorm on CPU")
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, output_device=None
        )
    return model, device


def to_device(batch: dict, device: torch.device) -> "tuple[torch.Tensor, torch.Tensor]":
    """``(inputs, labels)`` of a collated batch on ``device``; a pathway list holding one tensor is unpacked."""
    inputs = batch["inputs"]
    if isinstance(inputs, (list, tuple)):
        inputs = inputs[0]
    non_blocking = device.type == "cuda"
    return inputs.to(device, non_blocking=non_blocking), batch["label"].to(device, non_blocking=non_blocking)


def loader_cfg(cfg):
    """The cfg handed to ``build_loader``: under a process group, ``NUM_GPUS`` = processes on this machine.

    The loader gives each process ``BATCH_SIZE / max(1, NUM_GPUS)`` clips (PySlowFast), so
    ``TRAIN.BATCH_SIZE`` stays the batch of one machine when its CPU processes stand in for GPUs. Returns ``cfg``
    itself otherwise, or a new frozen cfg.

    Raises:
        ValueError: a batch size that the processes of a machine cannot share evenly.
    """
    if not is_dist() or cfg.NUM_GPUS == local_world_size():
        return cfg
    procs = local_world_size()
    if use_cuda(cfg):
        logger.warning("NUM_GPUS is %d but %d processes run on this machine: each gets TRAIN.BATCH_SIZE / %d",
                       cfg.NUM_GPUS, procs, procs)
    for key in ("TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE"):
        node, name = key.split(".")
        if cfg[node][name] % procs:
            raise ValueError(f"{key} = {cfg[node][name]} must be divisible by the {procs} processes of this machine")
    out = cfg.clone()
    out.defrost()
    out.NUM_GPUS = procs
    out.freeze()
    return out
