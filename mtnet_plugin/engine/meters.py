"""Metrics and meters: top-k errors, mean per-class accuracy, and PySlowFast-format stats.

Top-k uses ``k = min(k, num_classes)`` (PySlowFast crashes with fewer than 5 classes); the stat keys keep their
names (``top5_err`` is the top-min(5, C) error).
"""
import datetime
import os
import statistics
import time
from collections import deque
from typing import Dict, Iterable, List, Optional

import torch


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: Iterable[int]) -> List[float]:
    """Number of rows whose label is among the top-k scores, for each k (capped at the class count).

    Args:
        scores: (N, C) logits, probabilities or aggregated scores.
        labels: (N,) int64.
    """
    ks = [min(k, scores.shape[1]) for k in ks]
    top = scores.topk(max(ks), dim=1, largest=True, sorted=True).indices  # (N, K)
    hits = top == labels.view(-1, 1)
    return [float(hits[:, :k].any(dim=1).sum()) for k in ks]


def topk_errors(scores: torch.Tensor, labels: torch.Tensor, ks: Iterable[int] = (1, 5)) -> List[float]:
    """Top-k error in percent for each k."""
    n = max(1, labels.numel())
    return [(1.0 - c / n) * 100.0 for c in topk_correct(scores, labels, ks)]


def mean_class_accuracy(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Mean over the classes present in ``labels`` of the per-class top-1 accuracy, in percent.

    Args:
        preds: (N,) predicted class ids.
        labels: (N,) true class ids.
    """
    accs = []
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            accs.append(float((preds[mask] == c).float().mean()))
    return 100.0 * sum(accs) / len(accs) if accs else 0.0


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts, rows = true class, columns = predicted class."""
    idx = labels.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def gpu_mem_str() -> str:
    """Peak CUDA memory of this process, PySlowFast's ``"x.xxG"``."""
    mem = torch.cuda.max_memory_allocated() / 1024**3 if torch.cuda.is_available() else 0.0
    return f"{mem:.2f}G"


def ram_str() -> str:
    """System RAM ``"used/totalG"`` as PySlowFast's ``RAM`` field."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page / 1024**3
        avail = os.sysconf("SC_AVPHYS_PAGES") * page / 1024**3
        return f"{total - avail:.2f}/{total:.2f}G"
    except (ValueError, OSError, AttributeError):
        return "n/a"


def eta_str(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(max(0.0, seconds))))


class TrainMeter:
    """Per-iteration and per-epoch training stats in PySlowFast's ``train_iter_`` / ``train_epoch`` format.

    Args:
        iters_per_epoch: batches in this epoch.
        max_epoch: epochs of the run.
        window: iterations in the loss median window (``LOG_PERIOD``).
    """

    def __init__(self, iters_per_epoch: int, max_epoch: int, window: int = 10):
        self.iters_per_epoch = max(1, iters_per_epoch)
        self.max_epoch = max_epoch
        self.window = deque(maxlen=max(1, window))
        self.reset()

    def reset(self) -> None:
        self.loss_sum = self.top1_sum = self.top5_sum = 0.0
        self.num_samples = 0
        self.lr = 0.0
        self.grad_norm = 0.0
        self.dt = self.dt_data = self.dt_net = 0.0
        self.epoch_start = time.perf_counter()
        self.failures: List[Dict[str, str]] = []
        self.skipped_iters: List[int] = []

    def skip_step(self, cur_iter: int) -> int:
        """Record that iteration ``cur_iter`` (0-based) took no optimizer step; returns the skips of this epoch."""
        self.skipped_iters.append(cur_iter + 1)
        return len(self.skipped_iters)

    def update(self, loss: float, top1_err: float, top5_err: float, lr: float, grad_norm: float,
               batch_size: int, dt_data: float, dt_net: float, failures=()) -> None:
        self.window.append(loss)
        self.loss_sum += loss * batch_size
        self.top1_sum += top1_err * batch_size
        self.top5_sum += top5_err * batch_size
        self.last_top1, self.last_top5 = top1_err, top5_err
        self.num_samples += batch_size
        self.lr, self.grad_norm = lr, grad_norm
        self.dt_data, self.dt_net, self.dt = dt_data, dt_net, dt_data + dt_net
        self.failures.extend(failures)

    def _eta(self, cur_epoch: int, cur_iter: int) -> str:
        elapsed = time.perf_counter() - self.epoch_start
        per_iter = elapsed / max(1, cur_iter + 1)
        left = (self.max_epoch - cur_epoch) * self.iters_per_epoch - (cur_iter + 1)
        return eta_str(per_iter * left)

    def iter_stats(self, cur_epoch: int, cur_iter: int) -> dict:
        return {
            "_type": "train_iter_",
            "epoch": f"{cur_epoch + 1}/{self.max_epoch}",
            "iter": f"{cur_iter + 1}/{self.iters_per_epoch}",
            "dt": self.dt,
            "dt_data": self.dt_data,
            "dt_net": self.dt_net,
            "eta": self._eta(cur_epoch, cur_iter),
            "loss": statistics.median(self.window),
            "lr": self.lr,
            "grad_norm": self.grad_norm,
            "gpu_mem": gpu_mem_str(),
            "top1_err": self.last_top1,
            "top5_err": self.last_top5,
        }

    def epoch_stats(self, cur_epoch: int) -> dict:
        n = max(1, self.num_samples)
        paths = sorted({f["path"] for f in self.failures})
        return {
            "_type": "train_epoch",
            "epoch": f"{cur_epoch + 1}/{self.max_epoch}",
            "dt": self.dt,
            "dt_data": self.dt_data,
            "dt_net": self.dt_net,
            "eta": self._eta(cur_epoch, self.iters_per_epoch - 1),
            "loss": self.loss_sum / n,
            "lr": self.lr,
            "grad_norm": self.grad_norm,
            "gpu_mem": gpu_mem_str(),
            "RAM": ram_str(),
            "top1_err": self.top1_sum / n,
            "top5_err": self.top5_sum / n,
            "data_failures": len(self.failures),
            "data_failure_paths": paths,
            "nonfinite_grad_skips": len(self.skipped_iters),
            "nonfinite_grad_iters": list(self.skipped_iters),
        }


class ValMeter:
    """Validation stats: epoch top-1/top-5 error, their minima over the run, mean per-class accuracy."""

    def __init__(self, max_epoch: int):
        self.max_epoch = max_epoch
        self.min_top1 = self.min_top5 = 100.0

    def epoch_stats(self, cur_epoch: int, scores: torch.Tensor, labels: torch.Tensor,
                    num_classes: int, failures: Optional[list] = None, time_diff: float = 0.0) -> dict:
        top1, top5 = topk_errors(scores, labels, (1, 5)) if labels.numel() else (100.0, 100.0)
        self.min_top1, self.min_top5 = min(self.min_top1, top1), min(self.min_top5, top5)
        preds = scores.argmax(dim=1) if labels.numel() else labels
        failures = failures or []
        return {
            "_type": "val_epoch",
            "epoch": f"{cur_epoch + 1}/{self.max_epoch}",
            "time_diff": time_diff,
            "top1_err": top1,
            "top5_err": top5,
            "min_top1_err": self.min_top1,
            "min_top5_err": self.min_top5,
            "mean_class_acc": mean_class_accuracy(preds, labels, num_classes),
            "gpu_mem": gpu_mem_str(),
            "RAM": ram_str(),
            "data_failures": len(failures),
            "data_failure_paths": sorted({f["path"] for f in failures}),
        }
