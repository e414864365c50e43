"""``train(cfg)``: PySlowFast's training semantics on CPU, one GPU, or many through DDP.

The :class:`Trainer` owns the state and runs batch -> forward -> loss -> backward -> step; the LR schedule,
logging, precise BN, checkpoints, evaluation and plots are hooks (``hooks.py``). With ``MULTIGRID.LONG_CYCLE`` /
``SHORT_CYCLE`` the run follows a :class:`~mtnet_plugin.engine.multigrid.MultigridSchedule`: each epoch gets its
phase's cfg (a new cfg, logged when it changes) and the train loader is rebuilt when the phase's batch, frames or
crop change; the model and optimizer are kept (heads pool adaptively).

Mixed precision (``TRAIN.MIXED_PRECISION``) runs on CUDA only: bf16 autocast where the GPU supports it, else fp16
with a ``GradScaler``; on CPU it warns and trains in fp32. A NaN/inf loss, or a loss above
``TRAIN.KILL_LOSS_EXPLOSION_FACTOR`` times the median of the recent losses, stops training with
:class:`TrainingDiverged` before the step is taken; the last checkpoint on disk is from a good epoch.

A finite loss can still give a NaN/inf gradient. Before every optimizer step the total gradient L2 norm (the one
``clip_grad_norm_`` returns) is checked: with ``TRAIN.NONFINITE_GRAD stop`` a non-finite norm stops training with
:class:`TrainingDiverged` naming the iteration; with ``skip`` the step is not taken, the iteration is counted in the
epoch's ``train_epoch`` stats (``nonfinite_grad_skips``, ``nonfinite_grad_iters``), and more than
``TRAIN.NONFINITE_GRAD_MAX_SKIPS`` skips in one epoch stop training. Under fp16 mixed precision the ``GradScaler``
already skips such steps (it is how it calibrates its scale), so they are left to it and not counted.

Preemption: a signal of ``TRAIN.PREEMPT_SIGNALS`` (default SIGTERM, what SLURM and Kubernetes send; add SIGUSR1 for
SLURM's ``--signal``) lets the current iteration finish; then the main rank writes a mid-epoch checkpoint
(``checkpoint_epoch_NNNNN_iter_NNNNN.pyth``: model, optimizer, RNG states, the iterations done and the RNG state
the epoch's data order came from) and every rank raises :class:`Preempted` (``tools/run_net.py`` exits with status
128 + the signal's number). With ``TRAIN.AUTO_RESUME`` the next run continues inside that epoch, at the next
iteration, with the same remaining batches (their indices are redrawn, not their videos decoded).

One live run per OUTPUT_DIR: the main rank holds ``OUTPUT_DIR/run.lock`` from start to end (``checkpoint.py``).
"""
import logging
import math
import signal
import statistics
import threading
import time
from collections import deque
from typing import Optional

import torch
import torch.nn.functional as F

from mtnet_plugin import data as mt_data

from .checkpoint import (acquire_run_lock, ensure_room_for_checkpoints, last_intact_checkpoint, load_checkpoint,
                         release_run_lock, remove_partial_writes, save_checkpoint)
from .distributed import all_reduce_mean, get_world_size, is_main_process, run_on_main
from .hooks import default_hooks
from .logs import save_config
from .lr_policy import get_lr_at_epoch
from .meters import TrainMeter, topk_errors
from .multigrid import MultigridSchedule
from .optim import construct_optimizer
from .process_setup import build_model_on_device, loader_cfg, set_seed, to_device
from .warm_start import warm_start_from_x3d
from .workers import naming_worker_deaths

logger = logging.getLogger(__name__)

_LOSSES = {"cross_entropy": F.cross_entropy}


class TrainingDiverged(FloatingPointError):
    """The loss became NaN/inf or exploded; the message names the last good checkpoint."""


class Preempted(Exception):
    """A signal of ``TRAIN.PREEMPT_SIGNALS`` stopped training after a mid-epoch checkpoint; ``exit_code`` is
    128 + the signal's number, as a shell reports a process that signal ended."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def amp_dtype_for(cfg, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype: None (fp32) unless MIXED_PRECISION on CUDA; bf16 where supported, else fp16."""
    if not cfg.TRAIN.MIXED_PRECISION:
        return None
    if device.type != "cuda":
        logger.warning("TRAIN.MIXED_PRECISION needs CUDA: training in float32 on %s", device)
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class Trainer:
    """State of one training run. ``Trainer(cfg).train()`` is :func:`train`.

    Attributes read by hooks: ``cfg`` (run cfg), ``phase_cfg`` (this epoch's), ``model``, ``optimizer``, ``scaler``,
    ``device``, ``amp_dtype``, ``epoch``, ``iter``, ``iters_per_epoch``, ``max_epoch``, ``meter``, ``lr``,
    ``output_dir``, ``phase_index``, ``last_checkpoint``.
    """

    def __init__(self, cfg, hooks=None):
        self.multigrid = None
        if cfg.MULTIGRID.LONG_CYCLE or cfg.MULTIGRID.SHORT_CYCLE:
            self.multigrid = MultigridSchedule(cfg)
        self.cfg = self.multigrid.cfg if self.multigrid else cfg
        self.output_dir = cfg.OUTPUT_DIR
        self.max_epoch = self.cfg.SOLVER.MAX_EPOCH
        set_seed(cfg.RNG_SEED)
        self.model, self.device = build_model_on_device(self.cfg, train=True)
        self.optimizer = construct_optimizer(self.model, self.cfg)
        self.amp_dtype = amp_dtype_for(self.cfg, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if self.amp_dtype is not None:
            logger.info("Mixed precision: %s autocast%s", self.amp_dtype,
                        " with a GradScaler" if self.scaler.is_enabled() else "")
        if self.cfg.MODEL.LOSS_FUNC not in _LOSSES:
            raise ValueError(f"MODEL.LOSS_FUNC {self.cfg.MODEL.LOSS_FUNC!r} not supported ({sorted(_LOSSES)})")
        self.loss_fn = _LOSSES[self.cfg.MODEL.LOSS_FUNC]
        self.last_checkpoint: Optional[str] = None
        self.run_lock = acquire_run_lock(self.output_dir) if is_main_process() else None
        try:
            if is_main_process():
                remove_partial_writes(self.output_dir)
                ensure_room_for_checkpoints(self.output_dir, self.model, self.cfg)
            self.start_iter, self.resume_epoch_rng = 0, None
            self.start_epoch = self._resume()
        except BaseException:
            release_run_lock(self.run_lock)
            raise
        self.stop_signal: Optional[int] = None  # set by the handler of TRAIN.PREEMPT_SIGNALS
        self.stop_requested = False  # on every rank after the step in which any rank saw the signal
        self.epoch_start_rng = None
        self.hooks = default_hooks(self.cfg) if hooks is None else hooks
        self.epoch = self.iter = 0
        self.iters_per_epoch = 1
        self.lr = 0.0
        self.phase_cfg = self.cfg
        self.phase_index = 0
        self.loader = None
        self._loader_key = None
        self.recent_losses = deque(maxlen=20)
        self.last_train_stats = self.last_val_stats = None
        self.curves_png = None

    # ----------------------------------------------------------------------------------------------- set-up
    def _resume(self) -> int:
        """Auto-resume from the newest intact checkpoint, else TRAIN.CHECKPOINT_FILE_PATH; returns the start epoch."""
        cfg = self.cfg
        if cfg.TRAIN.AUTO_RESUME:
            path, ckpt = last_intact_checkpoint(self.output_dir, cfg.TASK, mid_epoch=True)
            if path:
                epoch = load_checkpoint(path, self.model, self.optimizer, self.scaler, restore_rng=True, ckpt=ckpt)
                self.last_checkpoint = path
                self.start_iter = int(ckpt.get("iters_done", 0))
                self.resume_epoch_rng = ckpt.get("epoch_start_rng")
                if self.start_iter:
                    logger.info("Resuming from %s: epoch %d stopped after %d iterations, continuing there", path,
                                epoch + 2, self.start_iter)
                else:
                    logger.info("Resuming from %s: epoch %d done, continuing at epoch %d", path, epoch + 1, epoch + 2)
                return epoch + 1
        if "MTNET" in cfg and cfg.MTNET.get("INIT_FROM_X3D", ""):  # a new run of MTNet from an X3D checkpoint
            warm_start_from_x3d(self.model, cfg.MTNET.INIT_FROM_X3D, self.output_dir if is_main_process() else "")
            return 0
        if cfg.TRAIN.CHECKPOINT_FILE_PATH:
            if cfg.TRAIN.CHECKPOINT_TYPE != "pytorch" or cfg.TRAIN.CHECKPOINT_INFLATE:
                raise NotImplementedError(
                    "TRAIN.CHECKPOINT_TYPE caffe2 and TRAIN.CHECKPOINT_INFLATE are not supported; "
                    "convert the weights to a PyTorch .pyth first"
                )
            epoch = load_checkpoint(
                cfg.TRAIN.CHECKPOINT_FILE_PATH, self.model, self.optimizer, self.scaler,
                epoch_reset=cfg.TRAIN.CHECKPOINT_EPOCH_RESET,
                clear_name_patterns=tuple(cfg.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN), key="TRAIN.CHECKPOINT_FILE_PATH",
                min_loaded_share=cfg.TRAIN.CHECKPOINT_MIN_LOADED_SHARE,
            )
            return epoch + 1
        return 0

    def is_eval_epoch(self, epoch: int) -> bool:
        if self.multigrid:
            return self.multigrid.is_eval_epoch(epoch)
        return epoch + 1 == self.max_epoch or (epoch + 1) % self.cfg.TRAIN.EVAL_PERIOD == 0

    def is_checkpoint_epoch(self, epoch: int) -> bool:
        if self.multigrid:
            return self.multigrid.is_checkpoint_epoch(epoch)
        return epoch + 1 == self.max_epoch or (epoch + 1) % self.cfg.TRAIN.CHECKPOINT_PERIOD == 0

    def _prepare_epoch(self) -> None:
        """This epoch's phase cfg and (re)built train loader."""
        if self.multigrid:
            self.phase_cfg = self.multigrid.phase_cfg(self.epoch)
            self.phase_index = self.multigrid.phase_index(self.epoch)
        key = (self.phase_cfg.TRAIN.BATCH_SIZE, self.phase_cfg.DATA.NUM_FRAMES, self.phase_cfg.DATA.TRAIN_CROP_SIZE)
        if key != self._loader_key:
            if self._loader_key is not None or self.multigrid:
                logger.info("Multigrid phase %d from epoch %d: batch %d, %d frames, crop %d, LR at start %.6g",
                            self.phase_index, self.epoch + 1, *key, get_lr_at_epoch(self.phase_cfg, self.epoch))
            self.loader = mt_data.build_loader(loader_cfg(self.phase_cfg), "train")
            self._loader_key = key
        mt_data.shuffle_loader(self.loader, self.epoch)
        if len(self.loader) == 0:
            raise ValueError(
                f"Epoch {self.epoch + 1}: the train loader yields no batch: TRAIN.BATCH_SIZE "
                f"{self.phase_cfg.TRAIN.BATCH_SIZE} (this phase; short-cycle batches are larger) exceeds the "
                f"{len(self.loader.dataset)} training clips of this process"
            )
        self.iters_per_epoch = len(self.loader)
        self.meter = TrainMeter(self.iters_per_epoch, self.max_epoch, self.cfg.LOG_PERIOD)

    # --------------------------------------------------------------------------------------------- the loop
    def train(self) -> dict:
        """Run epochs ``start_epoch .. MAX_EPOCH - 1``; returns a summary (paths and last stats).

        Raises:
            TrainingDiverged: see :meth:`_check_loss` and :meth:`_skip_nonfinite_gradient`.
            Preempted: a signal of ``TRAIN.PREEMPT_SIGNALS`` arrived; a mid-epoch checkpoint was written.
        """
        previous = self._install_signal_handlers()
        try:
            return self._train()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            release_run_lock(self.run_lock)

    def _install_signal_handlers(self) -> dict:
        """Handle ``TRAIN.PREEMPT_SIGNALS`` (main thread only); returns the handlers they replace."""
        previous = {}

        def on_signal(signum, frame):
            self.stop_signal = signum
            logger.warning("%s received: finishing this iteration, then writing a checkpoint and stopping",
                           signal.Signals(signum).name)

        if threading.current_thread() is threading.main_thread():
            for name in self.cfg.TRAIN.PREEMPT_SIGNALS:
                signum = getattr(signal, name)
                previous[signum] = signal.signal(signum, on_signal)
        return previous

    def _train(self) -> dict:
        logger.info(
            "Training epochs %d..%d on %s x %d process(es); LR policy %s, base LR %g, LR at start %.6g",
            self.start_epoch + 1, self.max_epoch, self.device, get_world_size(), self.cfg.SOLVER.LR_POLICY,
            self.cfg.SOLVER.BASE_LR, get_lr_at_epoch(self.multigrid.phase_cfg(self.start_epoch)
                                                     if self.multigrid else self.cfg, self.start_epoch),
        )
        for hook in self.hooks:
            hook.before_train(self)
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self._prepare_epoch()
            for hook in self.hooks:
                hook.before_epoch(self)
            self.model.train()
            if self.cfg.MODEL.FROZEN_BN:  # PySlowFast: BN statistics stay fixed while fine-tuning
                for module in self.model.modules():
                    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                        module.eval()
            skip = self.start_iter if self.epoch == self.start_epoch else 0
            if skip and self.resume_epoch_rng is not None:  # the RNG state this epoch's data order was drawn from
                torch.set_rng_state(self.resume_epoch_rng)
            self.epoch_start_rng = torch.get_rng_state()
            loader = mt_data.skip_batches(self.loader, skip) if skip else self.loader
            t_data = time.perf_counter()
            stopping = False
            with naming_worker_deaths(loader):  # a loader worker that died: name the video it was decoding
                for self.iter, batch in enumerate(loader, start=skip):
                    dt_data = time.perf_counter() - t_data
                    self.run_step(batch, dt_data)
                    stopping = self.stop_requested or (self.stop_signal is not None and get_world_size() == 1)
                    if stopping:
                        break
                    t_data = time.perf_counter()
            if stopping:
                self._stop_for_preemption()
            for hook in self.hooks:
                hook.after_epoch(self)
        for hook in self.hooks:
            hook.after_train(self)
        return {
            "output_dir": self.output_dir,
            "max_epoch": self.max_epoch,
            "last_checkpoint": self.last_checkpoint,
            "train_stats": self.last_train_stats,
            "val_stats": self.last_val_stats,
            "curves_png": self.curves_png,
        }

    def _stop_for_preemption(self) -> None:
        """Write the mid-epoch checkpoint (main rank), then raise :class:`Preempted` on every rank."""
        iters_done = self.iter + 1
        # rank 0 writes; a failed write stops every rank with its error (distributed.run_on_main)
        path = run_on_main(lambda: save_checkpoint(
            self.output_dir, self.model, self.optimizer, self.epoch, self.cfg, self.scaler,
            multigrid_phase=self.phase_index, iters_done=iters_done, epoch_start_rng=self.epoch_start_rng,
        ), "writing the preemption checkpoint")
        self.last_checkpoint = path
        signum = self.stop_signal or signal.SIGTERM
        where = f"epoch {self.epoch + 1}, iteration {iters_done}/{self.iters_per_epoch}"
        raise Preempted(
            f"Stopped by {signal.Signals(signum).name} after {where}. "
            + (f"Checkpoint {path} holds that position; " if path else "The main rank wrote the checkpoint; ")
            + ("rerun the same command to continue from there (TRAIN.AUTO_RESUME)." if self.cfg.TRAIN.AUTO_RESUME
               else "set TRAIN.AUTO_RESUME True and rerun to continue from there."), signum)

    def run_step(self, batch: dict, dt_data: float = 0.0) -> None:
        """One iteration: forward, loss (checked), backward, optional clipping, step."""
        t_net = time.perf_counter()
        for hook in self.hooks:
            hook.before_step(self)
        inputs, labels = to_device(batch, self.device)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.model(inputs)
        loss = self.loss_fn(logits.float(), labels)
        top1, top5 = topk_errors(logits.detach().float(), labels, (1, 5))
        stop = float(self.stop_signal is not None)  # any rank's signal stops every rank after this step
        loss_value, top1, top5, stop = all_reduce_mean([loss.item(), top1, top5, stop], self.device)
        self.stop_requested = stop > 0
        self._check_loss(loss_value)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = self._clip_gradients()
        if self.scaler.is_enabled() or math.isfinite(grad_norm):  # the fp16 GradScaler skips inf steps itself
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self._skip_nonfinite_gradient(grad_norm)
        self.recent_losses.append(loss_value)
        self.meter.update(loss_value, top1, top5, self.lr, grad_norm, labels.shape[0] * get_world_size(),
                          dt_data, time.perf_counter() - t_net, batch.get("failures", []))
        for hook in self.hooks:
            hook.after_step(self)

    def _clip_gradients(self) -> float:
        """Clip by ``SOLVER.CLIP_GRAD_L2NORM`` then ``CLIP_GRAD_VAL`` (when set); returns the unclipped L2 norm."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        solver = self.cfg.SOLVER
        norm = torch.nn.utils.clip_grad_norm_(params, solver.CLIP_GRAD_L2NORM or float("inf"))
        if solver.CLIP_GRAD_VAL:
            torch.nn.utils.clip_grad_value_(params, solver.CLIP_GRAD_VAL)
        return float(norm)

    def _where_and_keep(self) -> "tuple[str, str]":
        where = f"epoch {self.epoch + 1}, iteration {self.iter + 1}"
        keep = f"The last good checkpoint is {self.last_checkpoint or '(none yet)'}; lower SOLVER.BASE_LR or check the data."
        return where, keep

    def _skip_nonfinite_gradient(self, grad_norm: float) -> None:
        """A NaN/inf gradient norm: stop (``TRAIN.NONFINITE_GRAD stop``) or drop this step's gradients (``skip``).

        Raises:
            TrainingDiverged: with ``stop``, or when this epoch has skipped more than ``NONFINITE_GRAD_MAX_SKIPS``.
        """
        self.optimizer.zero_grad(set_to_none=True)
        where, keep = self._where_and_keep()
        train = self.cfg.TRAIN
        if train.NONFINITE_GRAD != "skip":
            raise TrainingDiverged(f"Gradient norm is {grad_norm} (the loss is finite) at {where}; the optimizer step "
                                   f"was not taken (TRAIN.NONFINITE_GRAD stop). Training stopped. {keep}")
        skipped = self.meter.skip_step(self.iter)
        logger.warning("Gradient norm is %s at %s: optimizer step skipped (%d this epoch, TRAIN.NONFINITE_GRAD skip)",
                       grad_norm, where, skipped)
        if skipped > train.NONFINITE_GRAD_MAX_SKIPS:
            raise TrainingDiverged(
                f"{skipped} optimizer steps skipped for NaN/inf gradients in epoch {self.epoch + 1} (more than "
                f"TRAIN.NONFINITE_GRAD_MAX_SKIPS = {train.NONFINITE_GRAD_MAX_SKIPS}), the last at {where}. "
                f"Training stopped. {keep}")

    def _check_loss(self, loss: float) -> None:
        where, keep = self._where_and_keep()
        if not math.isfinite(loss):
            raise TrainingDiverged(f"Loss is {loss} at {where}. Training stopped. {keep}")
        factor = self.cfg.TRAIN.KILL_LOSS_EXPLOSION_FACTOR
        if factor > 0 and len(self.recent_losses) >= 3:
            ref = statistics.median(self.recent_losses)
            if loss > factor * ref:
                raise TrainingDiverged(
                    f"Loss exploded at {where}: {loss:.4g} > TRAIN.KILL_LOSS_EXPLOSION_FACTOR ({factor}) x recent "
                    f"median {ref:.4g}. Training stopped. {keep}"
                )


def train(cfg) -> dict:
    """Train ``cfg`` (frozen, validated): see the module docstring. Returns :meth:`Trainer.train`'s summary."""
    if is_main_process():
        logger.info("Config saved to %s", save_config(cfg, cfg.OUTPUT_DIR))
    trainer = Trainer(cfg)
    if trainer.multigrid and is_main_process():
        save_config(trainer.cfg, cfg.OUTPUT_DIR, "config_multigrid.yaml")
    return trainer.train()
