"""Tensor transforms of decoded clips (PySlowFast's spatial sampling).

Shapes: clips are ``(C, T, H, W)`` float tensors unless stated otherwise. Written on plain torch ops because
pytorchvideo's transforms import a torchvision API that no longer exists.

Train (and val): short side resized to ``round(U[min, max])`` (or ``1 / U[1/max, 1/min]`` with
``DATA.INV_UNIFORM_SAMPLE``), a random ``crop x crop`` window, a horizontal flip with probability 0.5.
Test: short side resized to the test scale, then a square crop at ``uniform_crop_offsets``.
"""
import math
import random
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


def uint8_to_float(frames: torch.Tensor) -> torch.Tensor:
    """``uint8 (T, H, W, C)`` -> float ``(C, T, H, W)`` in [0, 1]."""
    return frames.permute(3, 0, 1, 2).float().div_(255.0)


def normalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(clip - mean) / std`` per channel. clip: ``(C, T, H, W)``."""
    mean_t = torch.as_tensor(mean, dtype=clip.dtype).view(-1, 1, 1, 1)
    std_t = torch.as_tensor(std, dtype=clip.dtype).view(-1, 1, 1, 1)
    return (clip - mean_t) / std_t


def short_side_size(height: int, width: int, size: int) -> Tuple[int, int]:
    """``(new_h, new_w)`` with the short side = ``size`` and the long side scaled by the same factor, floored."""
    if width < height:
        return int(math.floor(height / width * size)), size
    return size, int(math.floor(width / height * size))


def resize_short_side(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``) so the short side is ``size``. clip: ``(C, T, H, W)``."""
    height, width = clip.shape[-2:]
    if min(height, width) == size:
        return clip
    new_h, new_w = short_side_size(height, width, size)
    out = F.interpolate(clip.transpose(0, 1), size=(new_h, new_w), mode="bilinear", align_corners=False)
    return out.transpose(0, 1)


def jitter_scale(min_size: int, max_size: int, inverse_uniform: bool = False,
                 rng: Optional[random.Random] = None) -> int:
    """A random short side: ``round(U[min, max])``, or ``round(1 / U[1/max, 1/min])`` with ``inverse_uniform``."""
    rng = rng or random
    if inverse_uniform:
        return int(round(1.0 / rng.uniform(1.0 / max_size, 1.0 / min_size)))
    return int(round(rng.uniform(min_size, max_size)))


def crop(clip: torch.Tensor, y: int, x: int, size: int) -> torch.Tensor:
    """The ``size x size`` window at offset ``(y, x)``. clip: ``(C, T, H, W)`` -> ``(C, T, size, size)``."""
    height, width = clip.shape[-2:]
    if y < 0 or x < 0 or y + size > height or x + size > width:
        raise ValueError(f"crop {size}x{size} at ({y}, {x}) does not fit in a {height}x{width} frame")
    return clip[..., y:y + size, x:x + size]


def random_crop_offsets(height: int, width: int, size: int, rng: Optional[random.Random] = None) -> Tuple[int, int]:
    """Uniform ``(y, x)`` in ``[0, H - size] x [0, W - size]`` (PySlowFast never picks the last offset; we do)."""
    rng = rng or random
    return rng.randint(0, max(height - size, 0)), rng.randint(0, max(width - size, 0))


def uniform_crop_offsets(height: int, width: int, size: int, spatial_idx: int) -> Tuple[int, int]:
    """Offsets of test crop ``spatial_idx``.

    Centre is ``(ceil((H - size) / 2), ceil((W - size) / 2))``. For landscape or square frames index 0 / 2 move x
    to the left / right edge; for portrait frames (``H > W``) they move y to the top / bottom edge.
    """
    if spatial_idx not in (0, 1, 2):
        raise ValueError(f"spatial_idx must be 0, 1 or 2, got {spatial_idx}")
    y = int(math.ceil((height - size) / 2))
    x = int(math.ceil((width - size) / 2))
    if height > width:
        y = {0: 0, 1: y, 2: height - size}[spatial_idx]
    else:
        x = {0: 0, 1: x, 2: width - size}[spatial_idx]
    return y, x


def horizontal_flip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right. clip: ``(C, T, H, W)``."""
    return clip.flip(-1)


def random_spatial_sampling(clip: torch.Tensor, min_scale: int, max_scale: int, crop_size: int, *,
                           random_flip: bool = True, inverse_uniform: bool = False,
                           rng: Optional[random.Random] = None) -> torch.Tensor:
    """Scale jitter + random crop + random flip. clip: ``(C, T, H, W)`` -> ``(C, T, crop_size, crop_size)``."""
    rng = rng or random
    clip = resize_short_side(clip, jitter_scale(min_scale, max_scale, inverse_uniform, rng))
    y, x = random_crop_offsets(clip.shape[-2], clip.shape[-1], crop_size, rng)
    clip = crop(clip, y, x, crop_size)
    if random_flip and rng.random() < 0.5:
        clip = horizontal_flip(clip)
    return clip


def uniform_spatial_sampling(clip: torch.Tensor, scale: int, crop_size: int, spatial_idx: int) -> torch.Tensor:
    """Short side to ``scale``, then test crop ``spatial_idx``. clip: ``(C, T, H, W)`` -> ``(C, T, crop, crop)``."""
    clip = resize_short_side(clip, scale)
    y, x = uniform_crop_offsets(clip.shape[-2], clip.shape[-1], crop_size, spatial_idx)
    return crop(clip, y, x, crop_size)

