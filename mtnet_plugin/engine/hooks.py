"""Hooks of the training loop: everything but batch -> forward -> loss -> backward -> step.

A hook sees the :class:`~mtnet_plugin.engine.trainer.Trainer` and may act before/after the run, an epoch or a
step. The default list (``default_hooks``) is, in order: LR schedule, iteration writer, epoch writer, gradient
coverage (a warning about parameters without gradient in the first iterations), precise BN, checkpointer,
evaluator, curve plotter, and the TensorBoard writer (``tensorboard.py``) when TENSORBOARD.ENABLE.
"""
import logging
import time

import torch
from fvcore.nn.precise_bn import get_bn_modules, update_bn_stats  # quiet: mtnet_plugin.models imported fvcore.nn

from mtnet_plugin import data as mt_data

from .checkpoint import save_checkpoint, unwrap
from .distributed import is_main_process, run_on_main
from .evaluate import predict_samples, video_scores
from .process_setup import loader_cfg
from .logs import log_json_stats
from .lr_policy import get_lr_at_epoch
from .meters import ValMeter
from .optim import set_lr
from .plots import plot_training_curves
from .workers import naming_worker_deaths

logger = logging.getLogger(__name__)


class HookBase:
    """No-op hook; subclasses override what they need."""

    def before_train(self, trainer) -> None:
        pass

    def before_epoch(self, trainer) -> None:
        pass

    def before_step(self, trainer) -> None:
        pass

    def after_step(self, trainer) -> None:
        pass

    def after_epoch(self, trainer) -> None:
        pass

    def after_train(self, trainer) -> None:
        pass


class LRScheduler(HookBase):
    """Sets the LR every iteration from the fractional epoch and the phase cfg."""

    def before_step(self, trainer) -> None:
        epoch = trainer.epoch + trainer.iter / trainer.iters_per_epoch
        trainer.lr = get_lr_at_epoch(trainer.phase_cfg, epoch)
        set_lr(trainer.optimizer, trainer.lr)


class IterationWriter(HookBase):
    """``train_iter_`` json stats every ``LOG_PERIOD`` iterations (stdout / stdout.log only, as PySlowFast)."""

    def __init__(self, period: int):
        self.period = max(1, period)

    def after_step(self, trainer) -> None:
        if (trainer.iter + 1) % self.period == 0 and is_main_process():
            log_json_stats(trainer.meter.iter_stats(trainer.epoch, trainer.iter))


class EpochWriter(HookBase):
    """``train_epoch`` json stats, also appended to ``OUTPUT_DIR/json_stats.log``; data failures named."""

    def after_epoch(self, trainer) -> None:
        stats = trainer.meter.epoch_stats(trainer.epoch)
        if stats["data_failures"]:
            logger.warning("Epoch %d: %d data failure(s), replaced by other samples: %s", trainer.epoch + 1,
                           stats["data_failures"], ", ".join(stats["data_failure_paths"]))
        if is_main_process():
            log_json_stats(stats, trainer.output_dir)
        trainer.last_train_stats = stats


class PreciseBN(HookBase):
    """Recompute BN statistics with fvcore's ``update_bn_stats`` before checkpoint/eval epochs."""

    def __init__(self, num_batches: int):
        self.num_batches = num_batches

    def after_epoch(self, trainer) -> None:
        if not (trainer.is_eval_epoch(trainer.epoch) or trainer.is_checkpoint_epoch(trainer.epoch)):
            return
        model = unwrap(trainer.model)
        if not get_bn_modules(model):
            return
        loader = mt_data.build_loader(loader_cfg(trainer.phase_cfg), "train", is_precise_bn=True)
        num_iters = min(self.num_batches, len(loader))
        device = trainer.device

        def inputs():
            for batch in loader:
                x = batch["inputs"]
                yield (x[0] if isinstance(x, (list, tuple)) else x).to(device)

        logger.info("Precise BN over %d batches", num_iters)
        with naming_worker_deaths(loader), torch.autocast(device.type, dtype=trainer.amp_dtype,
                                                          enabled=trainer.amp_dtype is not None):
            update_bn_stats(model, inputs(), num_iters)


class Checkpointer(HookBase):
    """Saves ``checkpoint_epoch_{epoch+1:05d}.pyth`` on checkpoint epochs (rank 0 writes; every rank remembers it)."""

    def after_epoch(self, trainer) -> None:
        if not trainer.is_checkpoint_epoch(trainer.epoch):
            return
        # rank 0 writes; a failed write stops every rank with its error instead of leaving them in a barrier
        trainer.last_checkpoint = run_on_main(lambda: save_checkpoint(
            trainer.output_dir, trainer.model, trainer.optimizer, trainer.epoch, trainer.cfg,
            trainer.scaler, multigrid_phase=trainer.phase_index,
        ), "writing a checkpoint")


class Evaluator(HookBase):
    """Validation on eval epochs: top-1/top-5 error and mean per-class accuracy (``val_epoch`` json stats)."""

    def __init__(self):
        self.loader = None
        self.unavailable = False
        self.meter = None

    def before_train(self, trainer) -> None:
        """Read the val list now, so a malformed line fails before any training (a missing list only warns)."""
        if not any(trainer.is_eval_epoch(e) for e in range(trainer.start_epoch, trainer.max_epoch)):
            return
        try:
            self.loader = mt_data.build_loader(loader_cfg(trainer.cfg), "val")
        except FileNotFoundError as err:
            logger.warning("No validation split (%s): training runs without evaluation", err)
            self.unavailable = True
            return
        self.meter = ValMeter(trainer.max_epoch)

    def after_epoch(self, trainer) -> None:
        if self.unavailable or self.loader is None or not trainer.is_eval_epoch(trainer.epoch):
            return
        start = time.perf_counter()
        records = predict_samples(trainer.model, self.loader, trainer.device, trainer.cfg.LOG_PERIOD, "val",
                                  trainer.cfg.MODEL.HEAD_ACT)
        trainer.model.train()
        num_classes = trainer.cfg.MODEL.NUM_CLASSES
        scores, labels, _, info = video_scores(records, num_classes, "sum")
        failures = [{"path": e["path"]} for e in info.values() if e["failed_views"]]
        stats = self.meter.epoch_stats(trainer.epoch, scores, labels, num_classes, failures,
                                       time.perf_counter() - start)
        if is_main_process():
            log_json_stats(stats, trainer.output_dir)
        trainer.last_val_stats = stats
        trainer.last_val_predictions = (scores, labels)  # video-level scores (V, C) and labels (V,)


class CurvePlotter(HookBase):
    """Loss / LR / accuracy curves from ``json_stats.log`` after training (main rank)."""

    def after_train(self, trainer) -> None:
        if is_main_process():
            trainer.curves_png = plot_training_curves(trainer.output_dir)


class GradientCoverage(HookBase):
    """Warns, by name, about trainable parameters that got no nonzero gradient in the run's first ``steps``
    iterations: whatever the cause (a frozen or unused branch, an initialisation that blocks the gradient), a
    user sees it in the first minute instead of after a run that never learned. Two steps at least: a
    zero-initialised residual branch (X3D's final BN, MTBlock's Squeeze and Recursion) passes a gradient to its
    other parameters only once the first step has moved its zeroed weights."""

    def __init__(self, steps: int = 3):
        self.steps = steps
        self.seen = 0
        self.never = None  # {name: parameter} still without a nonzero gradient

    def before_train(self, trainer) -> None:
        self.seen = 0
        self.never = {n: p for n, p in unwrap(trainer.model).named_parameters() if p.requires_grad}

    def after_step(self, trainer) -> None:
        if self.never is None or self.seen >= self.steps:
            return
        self.seen += 1
        self.never = {n: p for n, p in self.never.items()
                      if p.grad is None or not bool(torch.isfinite(p.grad).all() and p.grad.any())}
        if self.seen == self.steps:
            if self.never and is_main_process():
                names = list(self.never)
                logger.warning(
                    "%d of the model's trainable parameter tensors got no (finite, nonzero) gradient in the first %d "
                    "iterations and are not learning: %s", len(names), self.steps,
                    ", ".join(names[:20]) + (f" ... ({len(names) - 20} more)" if len(names) > 20 else ""))
            elif is_main_process():
                logger.info("Every trainable parameter tensor got a finite, nonzero gradient in the first %d "
                            "iterations", self.steps)
            self.never = None


def default_hooks(cfg) -> list:
    hooks = [LRScheduler(), IterationWriter(cfg.LOG_PERIOD), EpochWriter(), GradientCoverage()]
    if cfg.BN.USE_PRECISE_STATS:
        hooks.append(PreciseBN(cfg.BN.NUM_BATCHES_PRECISE))
    hooks += [Checkpointer(), Evaluator(), CurvePlotter()]
    if cfg.TENSORBOARD.ENABLE:  # after the Evaluator: it writes that epoch's validation results
        from .tensorboard import TensorBoardWriter  # imports this module

        hooks.append(TensorBoardWriter(cfg))
    return hooks
