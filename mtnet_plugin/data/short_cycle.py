"""Multigrid short cycle (Wu et al., "A Multigrid Method for Efficiently Training Video Models", CVPR 2020):
consecutive batches cycle through smaller crops with proportionally larger batches.

Batch ``b`` uses cycle position ``s = b % 3``. Positions 0 and 1 crop ``crop_s = round(TRAIN_CROP_SIZE *
SHORT_CYCLE_FACTORS[s])`` (docs/design.md) with ``round((TRAIN_CROP_SIZE / crop_s) ** 2)`` times the batch size;
position 2 is the full crop and batch. With the defaults (factors 0.5 and 0.5 ** 0.5) and a per-process batch of 8
the batch sizes are 32, 16, 8, as in PySlowFast's ``ShortCycleBatchSampler`` at the base shape. PySlowFast scales
by ``MULTIGRID.DEFAULT_S`` instead of the current crop; the two agree outside long-cycle phases. ``len()`` counts
the batches actually produced (PySlowFast's estimate ``len / mean(batch sizes)`` can be off by one).
"""
from typing import Iterator, List, Sequence, Tuple

from torch.utils.data import Sampler


def short_cycle_crops(train_crop: int, factors: Sequence[float]) -> List[int]:
    """Crop side at each short-cycle position: ``[round(crop * f) for f in factors] + [crop]``."""
    return [int(round(train_crop * f)) for f in factors] + [int(train_crop)]


def short_cycle_batch_sizes(batch_size: int, train_crop: int, factors: Sequence[float]) -> List[int]:
    """Batch size at each short-cycle position; the pixel count per batch stays about constant."""
    crops = short_cycle_crops(train_crop, factors)
    return [batch_size * int(round((train_crop / c) ** 2)) for c in crops[:-1]] + [batch_size]


class ShortCycleBatchSampler(Sampler):
    """Groups the indices of ``sampler`` into batches of ``(index, cycle_position)`` pairs.

    Args:
        sampler: yields dataset indices (a RandomSampler / DistributedSampler).
        batch_size: per-process batch size of the full shape.
        drop_last: drop a last, incomplete batch.
        train_crop: ``DATA.TRAIN_CROP_SIZE`` of the current (long-cycle) phase.
        factors: ``MULTIGRID.SHORT_CYCLE_FACTORS``.
    """

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool, train_crop: int,
                 factors: Sequence[float]):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.sampler = sampler
        self.drop_last = bool(drop_last)
        self.batch_sizes = short_cycle_batch_sizes(batch_size, train_crop, factors)

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        position, batch = 0, []
        for index in self.sampler:
            batch.append((int(index), position % 3))
            if len(batch) == self.batch_sizes[position % 3]:
                yield batch
                position, batch = position + 1, []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        remaining, position, count = len(self.sampler), 0, 0
        while remaining >= self.batch_sizes[position % 3]:
            remaining -= self.batch_sizes[position % 3]
            position, count = position + 1, count + 1
        return count + (1 if remaining and not self.drop_last else 0)

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to a DistributedSampler (so ``shuffle_loader`` works through this sampler)."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
