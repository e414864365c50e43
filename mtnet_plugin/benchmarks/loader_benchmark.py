"""Data-loader benchmark: decoded, augmented train clips per second (one worker and the configured
worker count) beside the model's training steps per second, so a user sees which one is the bottleneck.

Used by :mod:`mtnet_plugin.benchmarks.benchmark` (``tools/benchmark.py --loader``). The clips come from H.264
videos with a 320 px short side that :func:`write_benchmark_videos` makes, or from a given ``train.csv``.
"""
import os
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn


def write_benchmark_videos(directory: str, *, num_videos: int = 4, short_side: int = 320, num_frames: int = 96,
                           fps: int = 30, num_classes: int = 2, list_length: int = 0) -> str:
    """Write H.264 videos with the given short side (4:3) and ``train.csv`` into directory; returns it.

    ``list_length`` > num_videos lists the videos cyclically that many times, so that one epoch of the
    loader spans the whole measurement (a new epoch restarts the worker processes)."""
    import numpy as np

    from mtnet_plugin.data.video_io import write_video

    h, w = short_side, int(round(short_side * 4 / 3 / 2)) * 2
    yy, xx = np.mgrid[0:h, 0:w]
    lines = []
    for i in range(num_videos):
        frames = np.empty((num_frames, h, w, 3), np.uint8)
        for t in range(num_frames):  # moving gradients and a square: textured, cheap to make
            frames[t, ..., 0] = (xx + 3 * t + 17 * i) % 256
            frames[t, ..., 1] = (yy * 2 + t) % 256
            frames[t, ..., 2] = ((xx + yy) // 2 + 5 * t) % 256
            y0, x0 = (7 * t + 13 * i) % (h - 40), (11 * t) % (w - 40)
            frames[t, y0:y0 + 40, x0:x0 + 40] = 255
        path = os.path.join(directory, f"bench_{i:03d}.mp4")
        write_video(path, frames, fps=fps)
        lines.append(f"{path} {i % num_classes}")
    lines = [lines[i % len(lines)] for i in range(max(list_length, len(lines)))]
    with open(os.path.join(directory, "train.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return directory


def _loader_rate(cfg: Any, workers: int, batches: int) -> Dict[str, float]:
    """Clips per second of the train loader with ``workers`` processes, after its first batch."""
    from mtnet_plugin.data import build_loader

    cfg = cfg.clone()
    cfg.DATA_LOADER.NUM_WORKERS = workers
    loader = build_loader(cfg, "train")
    it, clips, first = iter(loader), 0, None
    t0 = time.perf_counter()
    for i in range(batches + 1):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        if i == 0:
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
        else:
            clips += batch["inputs"].shape[0]
    elapsed = time.perf_counter() - t0
    del it
    return dict(workers=workers, clips=clips, seconds=elapsed, clips_per_s=clips / elapsed, first_batch_s=first)


def run_loader_benchmark(cfg: Any, model: nn.Module, *, batches: int = 4, steps: int = 2,
                         progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Decoded, augmented train clips/s (one worker = ``NUM_WORKERS 0``, and the configured worker count)
    beside the model's train steps/s (forward, backward, SGD step) at the same batch and clip size.

    Args:
        cfg: config with ``DATA.PATH_TO_DATA_DIR`` holding ``train.csv``; its ``TRAIN.BATCH_SIZE`` (per
            process), ``DATA.NUM_FRAMES``, ``DATA.TRAIN_CROP_SIZE`` and ``DATA_LOADER.NUM_WORKERS`` are used.
        model: the model whose training step rate the loader must sustain.
        batches: batches timed per loader setting (after the first, which includes worker start-up).
        steps: timed training steps (after one warm-up step).
        progress: called with a line of text after each measurement.

    Returns:
        json-ready dict: ``per_worker`` and ``configured`` loader rates, ``model`` step rate, ``ratio``
        (configured loader clips/s over model clips/s) and ``bottleneck``.
    """
    say = progress or (lambda s: None)
    batch = int(cfg.TRAIN.BATCH_SIZE / max(1, cfg.NUM_GPUS))
    per_worker = _loader_rate(cfg, 0, batches)
    say(f"loader, 1 worker (main process): {per_worker['clips_per_s']:.2f} clips/s")
    configured = _loader_rate(cfg, int(cfg.DATA_LOADER.NUM_WORKERS), batches)
    say(f"loader, {configured['workers']} workers: {configured['clips_per_s']:.2f} clips/s")
    x = torch.randn(batch, 3, int(cfg.DATA.NUM_FRAMES), int(cfg.DATA.TRAIN_CROP_SIZE), int(cfg.DATA.TRAIN_CROP_SIZE))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model(x).float().sum().backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    model_rate = dict(batch=batch, steps_per_s=1 / step_s, clips_per_s=batch / step_s, step_s=step_s)
    say(f"model: {model_rate['steps_per_s']:.3f} steps/s ({model_rate['clips_per_s']:.2f} clips/s)")
    ratio = configured["clips_per_s"] / model_rate["clips_per_s"]
    return dict(per_worker=per_worker, configured=configured, model=model_rate, ratio=ratio,
                bottleneck="loader" if ratio < 1 else "model", target_ratio_met=ratio >= 2.0,
                clip=[int(cfg.DATA.NUM_FRAMES), int(cfg.DATA.TRAIN_CROP_SIZE)], batch=batch,
                note="loader and model measured one after the other; in a CPU run they share the cores")


def format_loader(res: Dict[str, Any]) -> List[str]:
    """Markdown lines for :func:`run_loader_benchmark`'s result."""
    t, s = res["clip"]
    pw, cf, md = res["per_worker"], res["configured"], res["model"]
    return [f"### data loader vs model (train clips {t}x{s}, batch {res['batch']})", "",
            "| | clips/s | steps/s |", "|---|---|---|",
            f"| loader, 1 worker | {pw['clips_per_s']:.2f} | {pw['clips_per_s'] / res['batch']:.3f} |",
            f"| loader, {cf['workers']} workers | {cf['clips_per_s']:.2f} | {cf['clips_per_s'] / res['batch']:.3f} |",
            f"| model train step | {md['clips_per_s']:.2f} | {md['steps_per_s']:.3f} |", "",
            f"loader / model = {res['ratio']:.2f} (target >= 2): bottleneck = {res['bottleneck']}", ""]


def loader_report(model: nn.Module, clip: Tuple[int, int], *, cfg: Any = None, batch: int = 1, batches: int = 8,
                  videos: int = 4, data_dir: Optional[str] = None,
                  progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """:func:`run_loader_benchmark` for ``model`` on CPU at ``clip`` = (T, S) and ``batch`` clips per step.

    Args:
        model: the model whose training step rate the loader must sustain (moved to CPU).
        clip: (NUM_FRAMES, TRAIN_CROP_SIZE) of the loader's clips and the model's input.
        cfg: the model's config; None (a preset) uses the defaults with Kinetics-style sampling (X3D's
            stride 5 at 30 fps, scale jitter 256-320).
        batch, batches: clips per batch and timed batches per loader setting.
        videos: generated 320p H.264 videos (in a temporary directory) when ``data_dir`` is None.
        data_dir: a directory holding ``train.csv`` to read instead.
        progress: called with a line of text after each measurement.
    """
    from mtnet_plugin.config import get_cfg

    say = progress or (lambda s: None)
    c = (cfg if cfg is not None else get_cfg()).clone()
    c.defrost()
    c.NUM_GPUS, c.TRAIN.BATCH_SIZE = 0, batch
    c.DATA.NUM_FRAMES, c.DATA.TRAIN_CROP_SIZE = clip
    if cfg is None:
        c.DATA.SAMPLING_RATE, c.DATA.TARGET_FPS, c.DATA.TRAIN_JITTER_SCALES = 5, 30, [256, 320]
    with tempfile.TemporaryDirectory() as tmp:
        if data_dir is None:
            frames = int(c.DATA.NUM_FRAMES) * int(c.DATA.SAMPLING_RATE) + 16
            say(f"writing {videos} H.264 videos, short side 320, {frames} frames, to {tmp}")
            write_benchmark_videos(tmp, num_videos=videos, num_frames=frames, fps=int(c.DATA.TARGET_FPS),
                                   list_length=(batches + 2) * batch)
        c.DATA.PATH_TO_DATA_DIR = data_dir or tmp
        return run_loader_benchmark(c, model.cpu(), batches=batches, progress=say)
