"""Multi-view testing: every view of every video, ``MODEL.HEAD_ACT`` per view, aggregated per video.

``run_test(cfg)`` loads the weights (``TEST.CHECKPOINT_FILE_PATH``, else the last intact checkpoint in
``OUTPUT_DIR/checkpoints``, else ``TRAIN.CHECKPOINT_FILE_PATH``, else a loud warning about random weights), runs
the test split (``TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS`` views a video; 10 x 3 is the paper's 30-view
protocol), and writes ``OUTPUT_DIR/test_results.json`` plus ``confusion_matrix.png``.

Each view's logits become scores through ``MODEL.HEAD_ACT``, as PySlowFast's heads do in eval mode: ``softmax``
(the default), ``sigmoid`` (multi-label configs such as Charades') or ``none`` (the logits). Aggregation
(``DATA.ENSEMBLE_METHOD``): ``sum`` adds the views' score vectors, ``max`` takes their element-wise maximum. Views that failed to decode are left out; a video none of whose views decoded is listed in
``failed_videos`` and is not scored (metrics are over the ``num_videos`` videos that were scored).
Under DDP each rank predicts its shard; predictions are gathered and de-duplicated by sample index (the
DistributedSampler pads the last shard).
"""
import json
import logging
import os
import pickle
import time
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from mtnet_plugin import data as mt_data
from mtnet_plugin.models import build_model

from .checkpoint import check_fits_model, last_intact_checkpoint, load_checkpoint, open_checkpoint
from .process_setup import build_model_on_device, loader_cfg, set_seed, to_device
from .distributed import all_gather_objects, is_main_process
from .logs import log_json_stats
from .class_names import load_class_names
from .meters import confusion_matrix, eta_str, mean_class_accuracy, topk_correct
from .plots import CONFUSION_FILE, plot_confusion_matrix
from .workers import naming_worker_deaths

logger = logging.getLogger(__name__)

RESULTS_FILE = "test_results.json"


def aggregate_views(probs: torch.Tensor, video_idx: torch.Tensor, num_videos: int, method: str = "sum"):
    """Combine per-view class scores into per-video scores.

    Args:
        probs: (M, C) per-view probabilities.
        video_idx: (M,) video of each view.
        num_videos: V.
        method: "sum" | "max".

    Returns:
        ``(scores (V, C), views (V,))``: aggregated scores and the number of views per video.
    """
    num_classes = probs.shape[1]
    views = torch.bincount(video_idx, minlength=num_videos)[:num_videos]
    if method == "sum":
        scores = torch.zeros(num_videos, num_classes, dtype=probs.dtype).index_add_(0, video_idx, probs)
    elif method == "max":
        scores = torch.full((num_videos, num_classes), float("-inf"), dtype=probs.dtype)
        scores = scores.scatter_reduce(0, video_idx.view(-1, 1).expand_as(probs), probs, reduce="amax")
        scores[views == 0] = 0.0
    else:
        raise ValueError(f"DATA.ENSEMBLE_METHOD must be 'sum' or 'max', got {method!r}")
    return scores, views


HEAD_ACTS = ("softmax", "sigmoid", "none")


def head_activation(logits: torch.Tensor, act: str = "softmax") -> torch.Tensor:
    """Scores of (N, C) ``logits`` under ``MODEL.HEAD_ACT`` ``act``: softmax over classes, sigmoid, or the logits."""
    if act == "softmax":
        return F.softmax(logits, dim=1)
    if act == "sigmoid":
        return torch.sigmoid(logits)
    if act == "none":
        return logits
    raise ValueError(f"MODEL.HEAD_ACT must be one of {list(HEAD_ACTS)}, got {act!r}")


@torch.no_grad()
def predict_samples(model, loader, device, log_period: int = 10, split: str = "test",
                    act: str = "softmax") -> List[dict]:
    """Scores (``act``, ``MODEL.HEAD_ACT``) of every sample of ``loader``, gathered over ranks, sorted and
    de-duplicated by sample index.

    Returns:
        One record per sample: ``index, video_idx, label, path, failed, failures, probs (C,) float32``.
    """
    head_activation(torch.zeros(1, 1), act)  # an unknown name fails before any batch is loaded
    model.eval()
    records, start = [], time.perf_counter()
    num_iters = len(loader)
    with naming_worker_deaths(loader):  # a loader worker that died: name the video it was decoding
        _predict_batches(model, loader, device, log_period, split, records, start, num_iters, act)
    merged = {}
    for part in all_gather_objects(records):
        for rec in part:
            merged.setdefault(rec["index"], rec)
    return [merged[k] for k in sorted(merged)]


def _predict_batches(model, loader, device, log_period, split, records, start, num_iters, act) -> None:
    """Append one record per sample of ``loader`` to ``records`` (runs under ``predict``'s no_grad)."""
    for it, batch in enumerate(loader):
        inputs, _ = to_device(batch, device)
        probs = head_activation(model(inputs).float(), act).cpu()
        failed = batch.get("failed", torch.zeros(len(probs), dtype=torch.bool))
        failures = batch.get("failures", [])
        for i in range(len(probs)):
            path = batch["path"][i]
            records.append({
                "index": int(batch["index"][i]),
                "video_idx": int(batch["video_idx"][i]),
                "label": int(batch["label"][i]),
                "path": path,
                "failed": bool(failed[i]),
                "failures": [f for f in failures if f.get("path") == path],
                "probs": probs[i],
            })
        if (it + 1) % max(1, log_period) == 0 or it + 1 == num_iters:
            elapsed = time.perf_counter() - start
            log_json_stats({
                "split": f"{split}_iter",
                "cur_iter": f"{it + 1}",
                "eta": eta_str(elapsed / (it + 1) * (num_iters - it - 1)),
                "time_diff": elapsed / (it + 1),
            })


def video_scores(records: List[dict], num_classes: int, method: str = "sum", num_videos: Optional[int] = None):
    """Aggregate :func:`predict` records per video, leaving out failed views.

    Returns:
        ``(scores (V', C), labels (V',), scored, info)``: ``scored`` lists the video ids with at least one decoded
        view (the rows of ``scores``); ``info[v]`` holds path, label, views, failed_views and errors.
    """
    if num_videos is None:
        num_videos = 1 + max((r["video_idx"] for r in records), default=-1)
    good = [r for r in records if not r["failed"]]
    probs = torch.stack([r["probs"] for r in good]) if good else torch.zeros(0, num_classes)
    vidx = torch.tensor([r["video_idx"] for r in good], dtype=torch.long)
    scores, views = aggregate_views(probs, vidx, num_videos, method)
    info = {}
    for r in records:
        entry = info.setdefault(r["video_idx"], {"path": r["path"], "label": r["label"], "failed_views": 0,
                                                 "errors": []})
        entry["views"] = int(views[r["video_idx"]])
        if r["failed"]:
            entry["failed_views"] += 1
            entry["errors"].extend(f.get("error", "") for f in r["failures"])
    scored = [v for v in sorted(info) if views[v] > 0]
    labels = torch.tensor([info[v]["label"] for v in scored], dtype=torch.long)
    return scores[torch.tensor(scored, dtype=torch.long)], labels, scored, info


def summarize(records: List[dict], num_classes: int, method: str = "sum", num_videos: Optional[int] = None,
              topk: int = 5) -> Dict:
    """Per-video aggregation and metrics from :func:`predict` records (see the module docstring)."""
    scores, labels, scored, info = video_scores(records, num_classes, method, num_videos)
    k = min(topk, num_classes)
    per_video = []
    for row, v in enumerate(scored):
        top = scores[row].topk(k)
        per_video.append({
            "video_idx": v,
            "path": info[v]["path"],
            "label": info[v]["label"],
            "pred_label": int(top.indices[0]),
            "views": info[v]["views"],
            "topk_classes": [int(c) for c in top.indices],
            "topk_scores": [round(float(s), 6) for s in top.values],
        })
    failed_videos = [info[v]["path"] for v in sorted(info) if info[v]["views"] == 0]
    partial = [info[v]["path"] for v in scored if info[v]["failed_views"]]
    failures = [
        {"path": info[v]["path"], "failed_views": info[v]["failed_views"],
         "errors": sorted(set(e for e in info[v]["errors"] if e))}
        for v in sorted(info) if info[v]["failed_views"]
    ]
    if scored:
        top1_hits, topk_hits = topk_correct(scores, labels, (1, k))
        n = len(scored)
        top1, topk_acc = 100.0 * top1_hits / n, 100.0 * topk_hits / n
        preds = scores.argmax(dim=1)
        mca = mean_class_accuracy(preds, labels, num_classes)
        cm = confusion_matrix(preds, labels, num_classes)
    else:
        top1 = topk_acc = mca = 0.0
        cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    return {
        "top1": top1,
        "top5": topk_acc,
        "top5_k": k,
        "mean_class_acc": mca,
        "num_videos": len(scored),
        "num_videos_listed": len(info),
        "num_classes": num_classes,
        "ensemble_method": method,
        "failed_videos": failed_videos,
        "partially_failed_videos": partial,
        "failures": failures,
        "per_video": per_video,
        "confusion_matrix": cm.tolist(),
    }


def test_checkpoint_source(cfg) -> "tuple[Optional[str], str]":
    """The weights ``test`` loads, in PySlowFast's order, and the config key that names them.

    Returns:
        ``(path, key)``: key ``TEST.CHECKPOINT_FILE_PATH``, ``""`` for the newest intact checkpoint of
        ``OUTPUT_DIR``, or ``TRAIN.CHECKPOINT_FILE_PATH``; ``(None, "")`` means random weights.
    """
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        return cfg.TEST.CHECKPOINT_FILE_PATH, "TEST.CHECKPOINT_FILE_PATH"
    path, _ = last_intact_checkpoint(cfg.OUTPUT_DIR, cfg.TASK)  # this run's names only, complete epochs only
    if path:
        return path, ""
    if cfg.TRAIN.CHECKPOINT_FILE_PATH:
        return cfg.TRAIN.CHECKPOINT_FILE_PATH, "TRAIN.CHECKPOINT_FILE_PATH"
    return None, ""


def check_test_checkpoint(cfg) -> None:
    """Refuse an unusable ``TEST.CHECKPOINT_FILE_PATH`` now, not after the training that ``test`` follows.

    Raises:
        FileNotFoundError, CheckpointError: naming the file and the key.
    """
    path = cfg.TEST.CHECKPOINT_FILE_PATH
    if path:
        check_fits_model(path, open_checkpoint(path, "TEST.CHECKPOINT_FILE_PATH"), build_model(cfg),
                         tuple(cfg.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN), "TEST.CHECKPOINT_FILE_PATH")


def find_test_checkpoint(cfg) -> Optional[str]:
    """The path of :func:`test_checkpoint_source`; None means random weights."""
    return test_checkpoint_source(cfg)[0]


def _write_results(cfg, results: dict, checkpoint: Optional[str]) -> dict:
    out = dict(results)
    out["num_views"] = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    out["checkpoint"] = checkpoint
    out["confusion_matrix_png"] = os.path.join(cfg.OUTPUT_DIR, CONFUSION_FILE)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    path = os.path.join(cfg.OUTPUT_DIR, RESULTS_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(path + ".tmp", path)
    plot_confusion_matrix(torch.tensor(results["confusion_matrix"]), out["confusion_matrix_png"],
                          class_names=load_class_names(cfg))
    out["results_json"] = path
    return out


def run_test(cfg) -> dict:
    """Multi-view test of ``cfg``'s test split; returns the results dict also written to ``test_results.json``."""
    set_seed(cfg.RNG_SEED)
    model, device = build_model_on_device(cfg, train=False)
    checkpoint, key = test_checkpoint_source(cfg)
    if checkpoint:  # an unusable file is an error naming it and its key, before any data is read
        load_checkpoint(checkpoint, model, epoch_reset=True,
                        clear_name_patterns=tuple(cfg.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN), key=key)
    else:
        logger.warning("!" * 80)
        logger.warning("NO CHECKPOINT: testing a RANDOMLY INITIALISED model (set TEST.CHECKPOINT_FILE_PATH). "
                       "These numbers mean nothing.")
        logger.warning("!" * 80)
    loader = mt_data.build_loader(loader_cfg(cfg), "test")
    num_views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    num_videos = len(loader.dataset) // num_views if hasattr(loader, "dataset") else None
    logger.info("Testing %s videos x %d views (%s aggregation)", num_videos, num_views, cfg.DATA.ENSEMBLE_METHOD)
    records = predict_samples(model, loader, device, cfg.LOG_PERIOD, "test", cfg.MODEL.HEAD_ACT)
    results = summarize(records, cfg.MODEL.NUM_CLASSES, cfg.DATA.ENSEMBLE_METHOD, num_videos)
    if results["failed_videos"]:
        logger.warning("%d video(s) could not be decoded and were not scored: %s",
                       len(results["failed_videos"]), ", ".join(results["failed_videos"]))
    log_json_stats({"split": "test_final", "top1_acc": f"{results['top1']:.2f}",
                    "top5_acc": f"{results['top5']:.2f}", "mean_class_acc": f"{results['mean_class_acc']:.2f}"})
    if is_main_process():
        results = _write_results(cfg, results, checkpoint)
        if cfg.TEST.SAVE_RESULTS_PATH:
            _save_pickle(cfg, records, num_videos)
        logger.info("Test results: %s", results["results_json"])
    return results


def _save_pickle(cfg, records: List[dict], num_videos: Optional[int]) -> None:
    """PySlowFast's ``TEST.SAVE_RESULTS_PATH``: pickle ``[all_preds (V, C), all_labels (V,)]``."""
    good = [r for r in records if not r["failed"]]
    n = num_videos or 1 + max((r["video_idx"] for r in records), default=-1)
    probs = torch.stack([r["probs"] for r in good]) if good else torch.zeros(0, cfg.MODEL.NUM_CLASSES)
    scores, _ = aggregate_views(probs, torch.tensor([r["video_idx"] for r in good], dtype=torch.long), n,
                                cfg.DATA.ENSEMBLE_METHOD)
    labels = torch.zeros(n, dtype=torch.long)
    for r in records:
        labels[r["video_idx"]] = r["label"]
    with open(os.path.join(cfg.OUTPUT_DIR, cfg.TEST.SAVE_RESULTS_PATH), "wb") as f:
        pickle.dump([scores, labels], f)


run_test.__test__ = False  # engine.test is this function: never collected by pytest when imported into a test module
