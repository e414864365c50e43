"""Prediction on video files: the test pipeline's views of each file, softmax per view, top-k per video.

``predict(videos, cfg=..., checkpoint=...)`` is what ``tools/predict.py`` and ``mtnet_plugin.predict`` call.
It decodes with the test split's own code (:class:`VideoFilesDataset` is ``KineticsDataset`` in test mode over
the given files, so sampling, resizing, cropping and normalisation are those of ``run_test(cfg)``), runs every view
(``TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS``, or ``views="VxC"``) through the model in eval mode, and
combines the views' softmax vectors with ``DATA.ENSEMBLE_METHOD``: ``sum`` reports their mean (the sum divided
by the number of decoded views, so the probabilities of a video add up to 1), ``max`` their element-wise maximum.

A file that cannot be opened, or none of whose views decodes, gives ``{"video": path, "error": message}`` and the
other files still run. Views that fail inside an otherwise readable file are left out of its average.

``predict_windows(video, window=SEC, stride=SEC, ...)`` labels a long video over time: each window is a list
entry with the segment ``[start_s, end_s)`` (``window_bounds``), so its clips (``views``, default one per window)
are sampled inside the window by the same test-split code; ``engine/overlay.py`` draws the result on the video.

Class names come from the first of: the ``class_names`` argument (a list, or a file), the file named by
``TENSORBOARD.CLASS_NAMES_PATH`` (PySlowFast's json ``{name: id}``, or a text file with one name per line in label
order, as the synthetic dataset's ``classes.txt``), a ``class_names`` list stored in the checkpoint,
``DATA.PATH_TO_DATA_DIR/classes.txt``; otherwise the label is the class index as a string.
"""
import logging
import math
import os
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from fvcore.common.config import CfgNode
from torch import nn
from torch.utils.data import DataLoader, SequentialSampler

from mtnet_plugin.config import load_config, validate_cfg
from mtnet_plugin.data import KineticsDataset, VideoDecodeError, VideoEntry, collate, probe_video
from mtnet_plugin.models import MODEL_REGISTRY, build_model, registered_names
from mtnet_plugin.models.build import model_name_from_config

from .checkpoint import load_model_state, open_checkpoint, require_model_state
from .class_names import load_class_names
from .cli_values import parse_pair
from .distributed import device_for
from .evaluate import find_test_checkpoint, predict_samples, video_scores

logger = logging.getLogger(__name__)

CfgLike = Union[CfgNode, str, os.PathLike, None]


def parse_views(views: str) -> Tuple[int, int]:
    """``"10x3"`` -> ``(10, 3)``: temporal clips x spatial crops (``TEST.NUM_ENSEMBLE_VIEWS x NUM_SPATIAL_CROPS``).

    Raises:
        ValueError: not two positive integers joined by ``x``.
    """
    return parse_pair(views, "views", "'10x3' (clips x crops)")


def _cfg_from_text(text: str, opts: Sequence[str]) -> CfgNode:
    """Load YAML text (a checkpoint's ``cfg``) like a config file."""
    fd, path = tempfile.mkstemp(suffix=".yaml", prefix="mtnet_ckpt_cfg_")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return load_config([path], list(opts))
    finally:
        os.remove(path)


def inference_cfg(cfg: CfgLike = None, opts: Sequence[str] = (), ckpt: Optional[dict] = None,
                  views: Optional[str] = None) -> CfgNode:
    """The validated, frozen config for prediction or export.

    Args:
        cfg: a config, a YAML file, or None to use the YAML text stored in ``ckpt["cfg"]``.
        opts: ``KEY VALUE ...`` overrides applied last.
        ckpt: the loaded checkpoint (for its ``cfg`` when ``cfg`` is None).
        views: ``"VxC"`` overriding ``TEST.NUM_ENSEMBLE_VIEWS`` and ``TEST.NUM_SPATIAL_CROPS``.

    Raises:
        ValueError: no config given and none in the checkpoint; ConfigError: an invalid value (named).
    """
    if isinstance(cfg, CfgNode):
        out = load_config(None, list(opts), base=cfg)
    elif cfg is not None:
        out = load_config([os.fspath(cfg)], list(opts))
    elif ckpt is not None and isinstance(ckpt.get("cfg"), str):
        out = _cfg_from_text(ckpt["cfg"], opts)
    else:
        raise ValueError("no config: pass --cfg (the checkpoint holds no 'cfg' text)")
    if views is not None:
        out.TEST.NUM_ENSEMBLE_VIEWS, out.TEST.NUM_SPATIAL_CROPS = parse_views(views)
    # Devices are chosen at run time (CPU when CUDA is missing), so NUM_GPUS is not checked against this machine.
    validate_cfg(out, check_devices=False, model_name=model_name_from_config(out),
                 registered_models=registered_names(MODEL_REGISTRY))
    out.freeze()
    return out


def resolve_checkpoint(checkpoint: Optional[str], cfg: CfgNode) -> str:
    """``checkpoint``, else the one ``run_test(cfg)`` would load; refuses to run without trained weights."""
    path = checkpoint or find_test_checkpoint(cfg)
    if not path:
        raise ValueError("no checkpoint: pass --checkpoint (or set TEST.CHECKPOINT_FILE_PATH / OUTPUT_DIR)")
    return os.fspath(path)


def load_trained_model(cfg: CfgNode, ckpt: dict, path: str = "checkpoint",
                       device: Union[str, torch.device] = "cpu") -> nn.Module:
    """``build_model(cfg)`` with every tensor loaded from ``ckpt``, on ``device``, in eval mode.

    Unlike resuming a run, nothing may be left at its initial value: a missing tensor or a shape mismatch is an
    error (the config does not describe the checkpoint's model). Tensors the model lacks are logged and ignored.

    Raises:
        CheckpointError: not a checkpoint dict.
        ValueError: it does not fit the model (names the tensors).
    """
    require_model_state(ckpt, path)
    model = build_model(cfg)
    report = load_model_state(model, ckpt["model_state"], tuple(cfg.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN))
    if report["missing"] or report["shape_mismatch"]:
        bad = report["shape_mismatch"] + [f"{k}: missing" for k in report["missing"]]
        raise ValueError(f"{path} does not fit the model of the config ({len(bad)} tensors): "
                         + "; ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
    return model.to(device).eval()


class VideoFilesDataset(KineticsDataset):
    """The test split of ``KineticsDataset`` over explicit files instead of ``test.csv`` (labels are 0).

    Every setting and all decoding code are the test split's own; only the list comes from ``paths`` (or from
    ``entries``, e.g. one segment per time window of a long video).

    Args:
        cfg: the config (its ``TEST`` views and ``DATA`` sampling are used).
        paths: video files or iopath URIs.
        entries: list entries instead of ``paths`` (``VideoEntry`` with optional ``start`` / ``end`` seconds).
    """

    def __init__(self, cfg: CfgNode, paths: Sequence[str] = (), entries: Optional[Sequence[VideoEntry]] = None):
        if entries is None:
            entries = [VideoEntry(os.fspath(p), 0, f"argument {i}") for i, p in enumerate(paths)]
        super().__init__(cfg, "test", entries=entries)


def _topk(scores: torch.Tensor, names: List[str], k: int) -> List[Dict[str, Any]]:
    top = scores.topk(min(k, scores.numel()))
    return [{"label": names[int(i)], "index": int(i), "prob": float(p)} for p, i in zip(top.values, top.indices)]


def _score_entries(model: nn.Module, cfg: CfgNode, entries: Sequence[VideoEntry], device, batch_size: Optional[int],
                   num_workers: Optional[int]) -> List[Tuple[Optional[torch.Tensor], int, str]]:
    """``(probabilities or None, views, error)`` per entry: the test views through the model, combined with
    ``DATA.ENSEMBLE_METHOD`` (``sum``: their mean, ``max``: element-wise maximum)."""
    dataset = VideoFilesDataset(cfg, entries=entries)
    loader = DataLoader(dataset, batch_size=batch_size or int(cfg.TEST.BATCH_SIZE),
                        sampler=SequentialSampler(dataset), collate_fn=collate,
                        num_workers=int(cfg.DATA_LOADER.NUM_WORKERS if num_workers is None else num_workers))
    records = predict_samples(model, loader, torch.device(device), int(cfg.LOG_PERIOD), "predict")
    scores, _, scored, info = video_scores(records, int(cfg.MODEL.NUM_CLASSES), cfg.DATA.ENSEMBLE_METHOD,
                                           len(entries))
    row_of = {v: r for r, v in enumerate(scored)}
    out = []
    for v in range(len(entries)):
        if v in row_of:
            views = info[v]["views"]
            out.append((scores[row_of[v]] / (views if cfg.DATA.ENSEMBLE_METHOD == "sum" else 1), views, ""))
        else:
            errors = "; ".join(sorted(set(e for e in info.get(v, {}).get("errors", []) if e))) or "no view decoded"
            out.append((None, 0, errors))
    return out


@torch.no_grad()
def predict_files(model: nn.Module, cfg: CfgNode, videos: Sequence[str], class_names: List[str], *, topk: int = 5,
                  device: Union[str, torch.device] = "cpu", batch_size: Optional[int] = None,
                  num_workers: Optional[int] = None) -> List[Dict[str, Any]]:
    """Top-k of each video with a loaded model (see :func:`predict`); one result per video, in input order."""
    videos = [os.fspath(v) for v in videos]
    results: List[Optional[Dict[str, Any]]] = [None] * len(videos)
    readable = []
    for i, path in enumerate(videos):
        try:
            info = probe_video(path)
            if not info.has_video:
                raise ValueError("no video stream (audio-only or data file)")
            readable.append(i)
        except Exception as e:  # a bad file must not stop the others
            reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
            results[i] = {"video": path, "error": f"cannot decode {path}: {reason}"}
            logger.error("%s", results[i]["error"])
    if readable:
        entries = [VideoEntry(videos[i], 0, f"argument {i}") for i in readable]
        for i, (probs, views, errors) in zip(readable, _score_entries(model, cfg, entries, device, batch_size,
                                                                       num_workers)):
            if probs is not None:
                results[i] = {"video": videos[i], "topk": _topk(probs, class_names, topk), "views": views}
            else:
                results[i] = {"video": videos[i], "error": f"cannot decode {videos[i]}: {errors}"}
                logger.error("%s", results[i]["error"])
    return results


def window_bounds(duration: float, window: float, stride: float) -> List[Tuple[float, float]]:
    """``(start_s, end_s)`` of the sliding windows over a video of ``duration`` seconds.

    Windows start at ``0, stride, 2 stride, ...`` while they fit in the video; when the last one stops short of the
    end, one more window ends exactly at the end. A video shorter than ``window`` is one window.

    Raises:
        ValueError: ``window`` or ``stride`` is not positive.
    """
    if not window > 0 or not stride > 0:
        raise ValueError(f"window and stride must be positive seconds, got window={window}, stride={stride}")
    if duration <= window:
        return [(0.0, float(duration))]
    count = int(math.floor((duration - window) / stride + 1e-9)) + 1
    bounds = [(round(i * stride, 6), round(i * stride + window, 6)) for i in range(count)]
    if bounds[-1][1] < duration - 1e-6:
        bounds.append((round(duration - window, 6), round(float(duration), 6)))
    return bounds


@torch.no_grad()
def predict_windows_with_model(model: nn.Module, cfg: CfgNode, video: str, class_names: List[str], *,
                               window: float, stride: float, topk: int = 5,
                               device: Union[str, torch.device] = "cpu", batch_size: Optional[int] = None,
                               num_workers: Optional[int] = None) -> List[Dict[str, Any]]:
    """Top-k of every sliding window of one video with a loaded model (see :func:`predict_windows`).

    Each window is a list entry with the segment ``[start_s, end_s)``, so its clips are sampled inside the window by
    the test split's own code (``TEST`` views per window).

    Raises:
        VideoDecodeError: the video cannot be opened.
    """
    video = os.fspath(video)
    info = probe_video(video)
    if not info.has_video:
        raise VideoDecodeError(video, "no video stream (audio-only or data file)")
    bounds = window_bounds(info.duration, window, stride)
    entries = [VideoEntry(video, 0, f"window {i}", start, end) for i, (start, end) in enumerate(bounds)]
    logger.info("%s: %.2f s, %d windows of %g s every %g s", video, info.duration, len(bounds), window, stride)
    results = []
    for i, ((start, end), (probs, views, errors)) in enumerate(zip(bounds, _score_entries(
            model, cfg, entries, device, batch_size, num_workers))):
        item: Dict[str, Any] = {"video": video, "window": i, "start_s": start, "end_s": end}
        if probs is None:
            item["error"] = f"cannot decode {video} in {start:g}..{end:g} s: {errors}"
            logger.error("%s", item["error"])
        else:
            item.update(topk=_topk(probs, class_names, topk), views=views)
        results.append(item)
    return results


def _load_for_inference(cfg: CfgLike, checkpoint: Optional[str], opts: Sequence[str], views: Optional[str],
                        device, class_names):
    """``(run cfg, model, device, class names, checkpoint path)`` as :func:`predict` and :func:`predict_windows`
    load them."""
    ckpt_path = checkpoint
    if ckpt_path is None:
        ckpt_path = resolve_checkpoint(None, inference_cfg(cfg, opts, views=views))
    ckpt = open_checkpoint(os.fspath(ckpt_path))
    run_cfg = inference_cfg(cfg, opts, ckpt, views)
    device = torch.device(device) if device is not None else device_for(run_cfg)
    model = load_trained_model(run_cfg, ckpt, os.fspath(ckpt_path), device)
    names = load_class_names(run_cfg, ckpt, class_names)
    return run_cfg, model, device, names, ckpt_path


def predict(
    videos: Union[str, Sequence[str]],
    cfg: CfgLike = None,
    checkpoint: Optional[str] = None,
    *,
    topk: int = 5,
    views: Optional[str] = None,
    device: Union[None, str, torch.device] = None,
    opts: Sequence[str] = (),
    class_names: Union[None, str, Sequence[str]] = None,
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
) -> List[Dict[str, Any]]:
    """Predict the top-k classes of video files with a trained model.

    Args:
        videos: one path or several (local files or iopath URIs).
        cfg: a config, a YAML file, or None for the config stored in the checkpoint.
        checkpoint: a ``.pyth`` checkpoint (ours or PySlowFast's); None: ``TEST.CHECKPOINT_FILE_PATH``, then the
            last checkpoint in ``OUTPUT_DIR``, then ``TRAIN.CHECKPOINT_FILE_PATH``.
        topk: classes reported per video (at most ``MODEL.NUM_CLASSES``).
        views: ``"VxC"``, e.g. ``"10x3"`` (the paper's 30 views) or ``"1x1"``; None: the config's ``TEST`` views.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None: CUDA when ``NUM_GPUS > 0`` and available, else CPU.
        opts: ``KEY VALUE ...`` config overrides.
        class_names: a list of names or a names file (see the module docstring).
        batch_size: views per forward pass (default ``TEST.BATCH_SIZE``).
        num_workers: decoding processes (default ``DATA_LOADER.NUM_WORKERS``).

    Returns:
        One dict per video, in order: ``{"video", "topk": [{"label", "index", "prob"}, ...], "views"}`` with
        probabilities in decreasing order, or ``{"video", "error"}`` for a file that could not be decoded.

    Raises:
        ValueError / ConfigError / FileNotFoundError: no usable config or checkpoint (nothing is predicted).
    """
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    run_cfg, model, device, names, ckpt_path = _load_for_inference(cfg, checkpoint, opts, views, device, class_names)
    logger.info("Predicting %d video(s) with %s on %s, %dx%d views, %s aggregation", len(videos), ckpt_path, device,
                run_cfg.TEST.NUM_ENSEMBLE_VIEWS, run_cfg.TEST.NUM_SPATIAL_CROPS, run_cfg.DATA.ENSEMBLE_METHOD)
    return predict_files(model, run_cfg, videos, names, topk=topk, device=device, batch_size=batch_size,
                         num_workers=num_workers)


predict.__test__ = False


def predict_windows(
    video: str,
    cfg: CfgLike = None,
    checkpoint: Optional[str] = None,
    *,
    window: float,
    stride: float,
    topk: int = 5,
    views: Optional[str] = "1x1",
    device: Union[None, str, torch.device] = None,
    opts: Sequence[str] = (),
    class_names: Union[None, str, Sequence[str]] = None,
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
) -> List[Dict[str, Any]]:
    """Top-k classes of every ``window``-second window of a long video, windows starting every ``stride`` seconds.

    Arguments as :func:`predict`; ``views`` applies to each window (default ``"1x1"``: one centre clip per window;
    None: the config's ``TEST`` views).

    Returns:
        One dict per window in time order: ``{"video", "window", "start_s", "end_s", "topk": [...], "views"}``, or
        ``{"video", "window", "start_s", "end_s", "error"}`` for a window none of whose views decoded.

    Raises:
        ValueError / ConfigError / FileNotFoundError: no usable config or checkpoint; VideoDecodeError: the video
        cannot be opened.
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    window_bounds(1.0, window, stride)  # checks the arguments before the model is loaded
    run_cfg, model, device, names, ckpt_path = _load_for_inference(cfg, checkpoint, opts, views, device, class_names)
    return predict_windows_with_model(model, run_cfg, video, names, window=window, stride=stride, topk=topk,
                                      device=device, batch_size=batch_size, num_workers=num_workers)


predict_windows.__test__ = False
