"""PNG plots written after training (curves from ``json_stats.log``) and testing (confusion matrix).

matplotlib runs on its Agg backend through an explicit ``Figure`` (no pyplot global state).
"""
import logging
import os
from typing import Optional, Sequence

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .logs import JSON_STATS_FILE, read_json_stats

logger = logging.getLogger(__name__)

CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"


def _epoch_of(record: dict) -> int:
    return int(str(record["epoch"]).split("/")[0])


def plot_training_curves(output_dir: str, out_name: str = CURVES_FILE) -> Optional[str]:
    """Plot loss, LR and accuracy (100 - top-1 error) per epoch from ``OUTPUT_DIR/json_stats.log``.

    Returns:
        The PNG path, or None when there are no epoch stats.
    """
    path = os.path.join(output_dir, JSON_STATS_FILE)
    if not os.path.exists(path):
        return None
    records = read_json_stats(path)
    train = [r for r in records if r.get("_type") == "train_epoch"]
    val = [r for r in records if r.get("_type") == "val_epoch"]
    if not train:
        return None
    # A resumed run may repeat epochs: keep the last record of each epoch.
    train = sorted({_epoch_of(r): r for r in train}.items())
    val = sorted({_epoch_of(r): r for r in val}.items())
    fig = Figure(figsize=(12, 3.6))
    FigureCanvasAgg(fig)
    ax_loss, ax_lr, ax_acc = fig.subplots(1, 3)
    epochs = [e for e, _ in train]
    ax_loss.plot(epochs, [float(r["loss"]) for _, r in train], marker=".", label="train")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_lr.plot(epochs, [float(r["lr"]) for _, r in train], marker=".")
    ax_lr.set(title="learning rate (end of epoch)", xlabel="epoch")
    ax_acc.plot(epochs, [100.0 - float(r["top1_err"]) for _, r in train], marker=".", label="train top-1")
    if val:
        ax_acc.plot([e for e, _ in val], [100.0 - float(r["top1_err"]) for _, r in val], marker="o", label="val top-1")
        ax_acc.plot([e for e, _ in val], [float(r.get("mean_class_acc", 0.0)) for _, r in val], marker="x",
                    label="val mean class acc")
    ax_acc.set(title="accuracy (%)", xlabel="epoch")
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    out = os.path.join(output_dir, out_name)
    fig.savefig(out, dpi=100)
    logger.info("Training curves: %s", out)
    return out


def plot_confusion_matrix(matrix: torch.Tensor, out_path: str, class_names: Optional[Sequence[str]] = None) -> str:
    """Row-normalised confusion matrix (rows = true class) as a PNG."""
    fig = confusion_matrix_figure(matrix, class_names)
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    fig.savefig(out_path, dpi=100)
    return out_path


def confusion_matrix_figure(matrix: torch.Tensor, class_names: Optional[Sequence[str]] = None,
                            figsize: Optional[Sequence[float]] = None) -> Figure:
    """Row-normalised confusion matrix (rows = true class) as a matplotlib Figure (Agg canvas); ``figsize``
    defaults to a square that grows with the class count."""
    counts = matrix.double()
    norm = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n = counts.shape[0]
    side = min(20.0, 3.0 + 0.35 * n)
    fig = Figure(figsize=tuple(figsize) if figsize else (side, side))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(norm.numpy(), vmin=0.0, vmax=1.0, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (row-normalised)")
    if n <= 30:
        names = list(class_names) if class_names else [str(i) for i in range(n)]
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
        for i in range(n):
            for j in range(n):
                if counts[i, j] > 0:
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    return fig
