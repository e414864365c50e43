"""Datasets and DataLoaders for the engine (the data contract of docs/design.md).

Per-process batch size is PySlowFast's: ``TRAIN.BATCH_SIZE / max(1, NUM_GPUS)`` for train and val,
``TEST.BATCH_SIZE / max(1, NUM_GPUS)`` for test. Train shuffles and drops the last incomplete
batch; val and test keep order and every sample. Under an initialised process group with world size > 1 a
``DistributedSampler`` splits the data (shuffle only for train; note that it pads val/test with repeated samples
so every rank gets the same count, which the test harness sees as extra views). When a loader worker dies
(an FFmpeg crash, an out-of-memory kill), the loader's error names the video that worker was loading.
"""
import atexit
import functools
import multiprocessing
import os
import re
import shutil
import signal
import tempfile
import weakref
from typing import Any, Dict, Iterator, List, Optional

import torch
import torch.distributed as dist
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler, SequentialSampler

from .kinetics import KineticsDataset
from .short_cycle import ShortCycleBatchSampler


_DATASETS = {"kinetics": KineticsDataset}


def build_dataset(cfg: CfgNode, split: str) -> torch.utils.data.Dataset:
    """The dataset named by ``TRAIN.DATASET`` (train, val) or ``TEST.DATASET`` (test) for ``split``.

    Raises:
        ValueError: unknown split or dataset name.
        FileNotFoundError / VideoListError: the split's list is missing or malformed (``file:line``).
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    name = (cfg.TEST.DATASET if split == "test" else cfg.TRAIN.DATASET).lower()
    if name not in _DATASETS:
        key = "TEST.DATASET" if split == "test" else "TRAIN.DATASET"
        raise ValueError(f"{key} = {name!r}: unknown dataset; known: {sorted(_DATASETS)}")
    return _DATASETS[name](cfg, split)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


_DEAD_WORKER = re.compile(r"DataLoader worker \(pids?(?:\(s\))? ([\d, ]+)\)")


class NamingDataLoader(DataLoader):
    """A DataLoader whose error for a worker that died (an FFmpeg crash, an out-of-memory kill) names the video
    that worker was loading. Workers write that path to ``breadcrumb_dir/<pid>`` (``KineticsDataset``).

    PyTorch notices a dead worker either while the main process waits for a batch (then iterating this loader
    raises the named error) or, through its SIGCHLD handler, in whatever the main process runs at that moment (a
    forward pass): a training loop should therefore catch RuntimeError around its loop and re-raise
    :func:`name_dead_worker` ``(loader, error)``.
    """

    def __init__(self, *args, breadcrumb_dir: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.breadcrumb_dir = breadcrumb_dir
        if breadcrumb_dir:
            weakref.finalize(self, shutil.rmtree, breadcrumb_dir, True)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        iterator = super().__iter__()
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except RuntimeError as e:
                named = name_dead_worker(self, e)
                if named is e:
                    raise
                raise named from e
            yield batch


def name_dead_worker(loader: DataLoader, error: BaseException) -> BaseException:
    """``error`` extended with the video(s) a dead loader worker was loading, if it is PyTorch's dead-worker error
    and ``loader`` is a :class:`NamingDataLoader` that knows; otherwise ``error`` itself.

    Use: ``except RuntimeError as e: raise name_dead_worker(loader, e) from e`` around a loop over ``loader``.
    """
    match = _DEAD_WORKER.search(str(error))
    crumbs = getattr(loader, "breadcrumb_dir", None)
    if not crumbs or match is None:
        return error
    paths = []
    for pid in re.findall(r"\d+", match.group(1)):
        crumb = os.path.join(crumbs, pid)
        if os.path.exists(crumb):
            with open(crumb) as f:
                paths.append(f.read())
    if not paths:
        return error
    return RuntimeError(f"{error} -- the dead worker was loading {', '.join(paths)} (a decoder crash or an "
                        f"out-of-memory kill on that video; check it with tools/check_videos.py)")


def _ignore_signals(names, worker_id: int) -> None:
    """Worker start: ignore the signals the trainer handles (``TRAIN.PREEMPT_SIGNALS``). SLURM sends them to every
    process of a job; a worker must not die of one while the main process finishes its iteration and checkpoints.
    A worker still ends with its loader, or when the main process is gone (PyTorch's watchdog)."""
    for name in names:
        signal.signal(getattr(signal, name), signal.SIG_IGN)


def _kill_daemonic_children() -> None:
    """SIGKILL every live daemonic child (loader workers are daemonic)."""
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()


@functools.lru_cache(maxsize=None)
def _kill_workers_at_exit() -> None:
    """Register :func:`_kill_daemonic_children` at exit, once per process. At exit, multiprocessing ends daemonic
    children with SIGTERM and then joins them; a worker that ignores SIGTERM (:func:`_ignore_signals`) and whose
    loader was never shut down (an iterator kept alive by a traceback) would make that join wait forever.
    ``atexit`` runs handlers last-registered first, so this runs before multiprocessing's own handler."""
    atexit.register(_kill_daemonic_children)


def build_loader(cfg: CfgNode, split: str, *, is_precise_bn: bool = False) -> DataLoader:
    """A DataLoader of collated sample dicts for ``split`` (see :func:`collate`).

    Workers ignore the signals of ``TRAIN.PREEMPT_SIGNALS`` (:func:`_ignore_signals`).

    Args:
        cfg: the run's (phase's) config.
        split: ``train`` | ``val`` | ``test``.
        is_precise_bn: the loader feeds precise-BN statistics: the train pipeline without the short cycle.
    """
    dataset = build_dataset(cfg, split)
    batch = cfg.TEST.BATCH_SIZE if split == "test" else cfg.TRAIN.BATCH_SIZE
    batch_size = int(batch / max(1, cfg.NUM_GPUS))
    train = split == "train"
    if _distributed():
        sampler = DistributedSampler(dataset, shuffle=train, drop_last=False)
    else:
        sampler = RandomSampler(dataset) if train else SequentialSampler(dataset)
    workers = int(cfg.DATA_LOADER.NUM_WORKERS)
    breadcrumbs = None
    if workers > 0 and isinstance(dataset, KineticsDataset):
        breadcrumbs = dataset.breadcrumb_dir = tempfile.mkdtemp(prefix="mtnet_loader_")
    signals = tuple(cfg.TRAIN.get("PREEMPT_SIGNALS", ()))
    if workers > 0 and signals:
        _kill_workers_at_exit()
    common = dict(
        num_workers=workers,
        breadcrumb_dir=breadcrumbs,
        pin_memory=bool(cfg.DATA_LOADER.PIN_MEMORY) and torch.cuda.is_available(),
        collate_fn=collate,
        persistent_workers=False,
        worker_init_fn=functools.partial(_ignore_signals, signals),
    )
    if train and cfg.MULTIGRID.SHORT_CYCLE and not is_precise_bn:
        batch_sampler = ShortCycleBatchSampler(sampler, batch_size, True, int(cfg.DATA.TRAIN_CROP_SIZE),
                                               list(cfg.MULTIGRID.SHORT_CYCLE_FACTORS))
        return NamingDataLoader(dataset, batch_sampler=batch_sampler, **common)
    return NamingDataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=train, **common)


def shuffle_loader(loader: DataLoader, epoch: int) -> None:
    """Reseed a distributed sampler for ``epoch`` (call once per epoch; no-op otherwise)."""
    for sampler in (loader.sampler, loader.batch_sampler):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
            return
    inner = getattr(loader.batch_sampler, "sampler", None)
    if hasattr(inner, "set_epoch"):
        inner.set_epoch(epoch)


class _SkipFirstBatches(Sampler):
    """The batches of ``batch_sampler`` after its first ``count``, which are drawn (same order) but never loaded."""

    def __init__(self, batch_sampler, count: int):
        self.batch_sampler, self.count = batch_sampler, count

    def __iter__(self):
        batches = iter(self.batch_sampler)
        for _ in range(self.count):
            if next(batches, None) is None:
                return
        yield from batches

    def __len__(self) -> int:
        return max(0, len(self.batch_sampler) - self.count)


def skip_batches(loader: DataLoader, count: int) -> DataLoader:
    """A loader of ``loader``'s dataset that yields its batches after the first ``count``.

    The skipped batches' indices are drawn from ``loader``'s batch sampler, so the remaining batches are the ones
    ``loader`` would yield from the same RNG state, but their videos are never decoded (resuming inside an epoch).
    """
    out = NamingDataLoader(loader.dataset, batch_sampler=_SkipFirstBatches(loader.batch_sampler, count),
                           num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                           worker_init_fn=loader.worker_init_fn, persistent_workers=False)
    out.breadcrumb_dir = getattr(loader, "breadcrumb_dir", None)  # shared with ``loader``, which removes it
    return out


def collate(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Batch sample dicts: ``inputs`` stacked to ``(N, 3, T, H, W)``; ``label``, ``index``, ``video_idx`` as
    LongTensors; ``failed`` a BoolTensor; ``path`` a list; ``failures`` one flat list."""
    if not samples:
        raise ValueError("collate() needs at least one sample")
    return {
        "inputs": torch.stack([s["inputs"] for s in samples]),
        "label": torch.tensor([s["label"] for s in samples], dtype=torch.long),
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        "video_idx": torch.tensor([s["video_idx"] for s in samples], dtype=torch.long),
        "failed": torch.tensor([bool(s.get("failed", False)) for s in samples], dtype=torch.bool),
        "path": [s["path"] for s in samples],
        "failures": [f for s in samples for f in s.get("failures", [])],
    }
