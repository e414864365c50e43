"""TensorBoard events for training, under PySlowFast's keys and tag names (``torch.utils.tensorboard``).

Keys: ``TENSORBOARD.ENABLE`` turns it on (main rank only); events go to ``OUTPUT_DIR/TENSORBOARD.LOG_DIR``, or
``OUTPUT_DIR/runs-{TRAIN.DATASET}`` when LOG_DIR is empty (as PySlowFast). ``TENSORBOARD.CONFUSION_MATRIX.ENABLE``
adds the validation confusion matrix as a figure (``CONFUSION_MATRIX.FIGSIZE``) with the class names of
``TENSORBOARD.CLASS_NAMES_PATH`` (json ``{name: id}`` or one name a line; ``class_names.py``).

Tags (PySlowFast's):

- ``Train/loss``, ``Train/lr``, ``Train/Top1_err``, ``Train/Top5_err``: every iteration, at step
  ``iters_per_epoch * epoch + iter`` (the batch's loss and errors averaged over ranks, the LR it used).
- ``Val/Top1_err``, ``Val/Top5_err``: every eval epoch, at step ``epoch`` (0-based). These are the errors of the
  whole validation set (video-level, as the ``val_epoch`` json stats), where PySlowFast writes one value per
  validation batch at step ``len(val_loader) * epoch + iter``.
- ``Confusion Matrix``: a figure every eval epoch, at step ``epoch``, with CONFUSION_MATRIX.ENABLE.

Needs the ``tensorboard`` package (``pip install "mtnet_plugin[tensorboard]"``); with ENABLE True and no package
the run stops before training, naming the key. Histograms, model visualisation and wrong-prediction videos
(``TENSORBOARD.HISTOGRAM / MODEL_VIS / WRONG_PRED_VIS``) are not written (config/compat_nodes.py lists them).
"""
import logging
import os

from .class_names import load_class_names
from .distributed import is_main_process
from .hooks import HookBase
from .meters import confusion_matrix
from .plots import confusion_matrix_figure

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "mtnet_plugin[tensorboard]"  (or: pip install tensorboard)'
TRAIN_TAGS = ("Train/loss", "Train/lr", "Train/Top1_err", "Train/Top5_err")
VAL_TAGS = ("Val/Top1_err", "Val/Top5_err")
CONFUSION_TAG = "Confusion Matrix"


def log_dir(cfg) -> str:
    """``OUTPUT_DIR/TENSORBOARD.LOG_DIR``, or ``OUTPUT_DIR/runs-{TRAIN.DATASET}`` when LOG_DIR is empty."""
    sub = cfg.TENSORBOARD.LOG_DIR or f"runs-{cfg.TRAIN.DATASET}"
    return os.path.join(cfg.OUTPUT_DIR, sub)


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``; ImportError naming TENSORBOARD.ENABLE when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # torch raises this when the tensorboard package is absent
        raise ImportError(f"TENSORBOARD.ENABLE = True needs the tensorboard package ({err}); {INSTALL_HINT}, "
                          "or set TENSORBOARD.ENABLE False") from err
    return SummaryWriter


class TensorBoardWriter(HookBase):
    """Writes the tags of the module docstring. Built by ``default_hooks`` when ``TENSORBOARD.ENABLE``; the
    package check happens here, before training starts."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.writer_class = summary_writer_class()
        self.writer = None
        self.log_dir = log_dir(cfg)
        self.class_names = None

    def before_train(self, trainer) -> None:
        if not is_main_process():
            return
        self.writer = self.writer_class(log_dir=self.log_dir)
        logger.info("TensorBoard events in %s (tensorboard --logdir %s)", self.log_dir, self.log_dir)
        if self.cfg.TENSORBOARD.CONFUSION_MATRIX.ENABLE:
            self.class_names = load_class_names(self.cfg)

    def after_step(self, trainer) -> None:
        if self.writer is None:
            return
        step = trainer.iters_per_epoch * trainer.epoch + trainer.iter
        values = (trainer.recent_losses[-1], trainer.lr, trainer.meter.last_top1, trainer.meter.last_top5)
        for tag, value in zip(TRAIN_TAGS, values):
            self.writer.add_scalar(tag, float(value), step)

    def after_epoch(self, trainer) -> None:
        if self.writer is None:
            return
        stats = trainer.last_val_stats
        if stats is not None and stats.get("epoch") == f"{trainer.epoch + 1}/{trainer.max_epoch}":
            self.writer.add_scalar("Val/Top1_err", float(stats["top1_err"]), trainer.epoch)
            self.writer.add_scalar("Val/Top5_err", float(stats["top5_err"]), trainer.epoch)
            predictions = getattr(trainer, "last_val_predictions", None)
            if self.cfg.TENSORBOARD.CONFUSION_MATRIX.ENABLE and predictions is not None:
                scores, labels = predictions
                num_classes = int(self.cfg.MODEL.NUM_CLASSES)
                matrix = confusion_matrix(scores.argmax(dim=1), labels, num_classes)
                figsize = tuple(self.cfg.TENSORBOARD.CONFUSION_MATRIX.FIGSIZE)
                figure = confusion_matrix_figure(matrix, self.class_names, figsize=figsize)
                self.writer.add_figure(CONFUSION_TAG, figure, trainer.epoch, close=True)
        self.writer.flush()  # one epoch of events on disk even if the run dies later

    def after_train(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
