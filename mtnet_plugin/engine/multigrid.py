"""Multigrid training schedules (Wu et al., "A Multigrid Method for Efficiently Training Video Models", CVPR 2020).

Reference: C.-Y. Wu, R. Girshick, K. He, C. Feichtenhofer, P. Krähenbühl, CVPR 2020, arXiv:1912.00998.

:class:`MultigridSchedule` never edits the cfg it is given: it builds a *run cfg* (the whole run's epochs and LR
schedule) and, per epoch, a *phase cfg* (that long-cycle phase's batch, frames and crop), both new frozen cfgs.

Step policy (``steps_with_relative_lrs``) — identical to PySlowFast: the long-cycle schedule
``[(lr_step_index, [B_rel, T, S], end_epoch), ...]`` gives ``STEPS = [0] + ends`` (last one replaced by the mean
of the last two), ``LRS = GAMMA**step * B_rel`` (the linear scaling rule; the fine-tune entry repeated), and
``MAX_EPOCH = ends[-1]``. Short cycle alone multiplies ``STEPS`` and ``MAX_EPOCH`` by ``EPOCH_FACTOR``.
Deviations: a phase that rounds to zero epochs (only in runs of a few epochs) is given one epoch, where
PySlowFast would skip it; and PySlowFast's fine-tune phase reads the third short-cycle shape and crashes without ``SHORT_CYCLE``;
here it takes the long-cycle factor's own (last) shape, which is the same entry when ``SHORT_CYCLE`` is on.

Cosine and constant policies (our definition; PySlowFast raises IndexError here):

- The long cycle's stages are ``SOLVER.STEPS`` when it has at least two entries, else ``[0, MAX_EPOCH]`` (one
  pass over the long-cycle shapes, no fine-tune phase since ``MAX_EPOCH - STEPS[-1] = 0``). The schedule math is
  the step policy's.
- The original schedule, warm-up included, is stretched to the multigrid length ``M'``: the run cfg has
  ``MAX_EPOCH = M'`` and ``WARMUP_EPOCHS`` scaled by ``M' / M``, so the LR at multigrid epoch ``e`` equals the
  original policy's LR at epoch ``e * M / M'`` (same fraction of training).
- Each phase's cfg multiplies ``BASE_LR``, ``WARMUP_START_LR`` and ``COSINE_END_LR`` by its ``B_rel``: the linear
  scaling rule for its batch ``B_rel * TRAIN.BATCH_SIZE``. So ``lr_phase(e) = B_rel(e) * lr_orig(e * M / M')``.
- Short cycle alone: ``MAX_EPOCH`` and ``WARMUP_EPOCHS`` are multiplied by ``EPOCH_FACTOR``.

Batch norm: BN statistics are computed over the per-process batch whatever its size (PySlowFast switches to
sub-/sync-BN per phase; we do not).
"""
import logging
from typing import List, Optional, Tuple

logger = logging.getLogger(__name__)

Phase = Tuple[int, List[int], int]  # (lr step index, [B_rel, T, S], end epoch)


def _stages(cfg) -> List[float]:
    """Stage boundaries the long cycle follows (STEPS, or [0, MAX_EPOCH] for cosine/constant without steps)."""
    if cfg.SOLVER.LR_POLICY == "steps_with_relative_lrs" or len(cfg.SOLVER.STEPS) >= 2:
        if len(cfg.SOLVER.STEPS) < 2:
            raise ValueError("MULTIGRID.LONG_CYCLE with steps_with_relative_lrs needs SOLVER.STEPS like [0, s1, ...]")
        return list(cfg.SOLVER.STEPS)
    return [0, cfg.SOLVER.MAX_EPOCH]


def long_cycle_schedule(cfg) -> List[Phase]:
    """The long-cycle schedule with PySlowFast's math, for the cfg's full-size T, S and batch."""
    mg = cfg.MULTIGRID
    num_frames, crop = cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE
    steps = _stages(cfg)
    default_size = num_frames * crop**2
    default_iters = steps[-1]
    avg_bs, all_shapes = [], []
    for t_factor, s_factor in mg.LONG_CYCLE_FACTORS:
        base_t = int(round(num_frames * t_factor))
        base_s = int(round(crop * s_factor))
        if mg.SHORT_CYCLE:
            shapes = [[base_t, crop * f] for f in mg.SHORT_CYCLE_FACTORS] + [[base_t, base_s]]
        else:
            shapes = [[base_t, base_s]]
        shapes = [[int(round(default_size / (t * s * s))), t, s] for t, s in shapes]
        avg_bs.append(sum(s[0] for s in shapes) / len(shapes))
        all_shapes.append(shapes)

    schedule, total_iters = [], 0.0
    for step_index in range(len(steps) - 1):
        step_epochs = steps[step_index + 1] - steps[step_index]
        for k, shapes in enumerate(all_shapes):
            cur_epochs = step_epochs * avg_bs[k] / sum(avg_bs)
            total_iters += cur_epochs / avg_bs[k]
            schedule.append((step_index, shapes[-1], cur_epochs))
    iter_saving = default_iters / total_iters
    ft_epochs = (cfg.SOLVER.MAX_EPOCH - steps[-1]) / iter_saving * avg_bs[-1]
    schedule.append((len(steps) - 1, all_shapes[-1][-1], ft_epochs))

    scale = cfg.SOLVER.MAX_EPOCH * mg.EPOCH_FACTOR / sum(s[-1] for s in schedule)
    final, total = [], 0.0
    for step_index, shape, epochs in schedule:
        if epochs <= 0:
            continue  # the empty fine-tune phase of a run without steps after the long cycle
        total += epochs * scale
        end = int(round(total))
        if final and end <= final[-1][-1]:  # tiny runs only: a phase rounded to 0 epochs still gets one
            end = final[-1][-1] + 1
            total = float(end)
        final.append((step_index, list(shape), end))
    return final


class MultigridSchedule:
    """Long- and/or short-cycle multigrid over a frozen cfg (see the module docstring).

    Attributes:
        base_cfg: the cfg given (never modified).
        cfg: the run cfg: epochs and LR schedule of the whole multigrid run, ``MULTIGRID.DEFAULT_{B,T,S}`` set.
        schedule: the long-cycle phases ``[(lr_step_index, [B_rel, T, S], end_epoch)]``, or None (short only).
    """

    def __init__(self, cfg):
        self.base_cfg = cfg
        mg = cfg.MULTIGRID
        if not (mg.LONG_CYCLE or mg.SHORT_CYCLE):
            raise ValueError("MultigridSchedule needs MULTIGRID.LONG_CYCLE or MULTIGRID.SHORT_CYCLE")
        run = cfg.clone()
        run.defrost()
        run.MULTIGRID.DEFAULT_B = cfg.TRAIN.BATCH_SIZE
        run.MULTIGRID.DEFAULT_T = cfg.DATA.NUM_FRAMES
        run.MULTIGRID.DEFAULT_S = cfg.DATA.TRAIN_CROP_SIZE
        step_policy = cfg.SOLVER.LR_POLICY == "steps_with_relative_lrs"
        self.schedule: Optional[List[Phase]] = None
        if mg.LONG_CYCLE:
            self.schedule = long_cycle_schedule(cfg)
            new_max = self.schedule[-1][-1]
            if step_policy:
                steps = [0] + [s[-1] for s in self.schedule]
                steps[-1] = (steps[-2] + steps[-1]) // 2
                lrs = [cfg.SOLVER.GAMMA ** s[0] * s[1][0] for s in self.schedule]
                lrs = lrs[:-1] + [lrs[-2], lrs[-1]]
                run.SOLVER.STEPS = steps
                run.SOLVER.LRS = lrs
        else:
            new_max = int(cfg.SOLVER.MAX_EPOCH * mg.EPOCH_FACTOR)
            if step_policy:
                run.SOLVER.STEPS = [int(s * mg.EPOCH_FACTOR) for s in cfg.SOLVER.STEPS]
        if not step_policy:
            run.SOLVER.WARMUP_EPOCHS = cfg.SOLVER.WARMUP_EPOCHS * new_max / cfg.SOLVER.MAX_EPOCH
        run.SOLVER.MAX_EPOCH = new_max
        run.freeze()
        self.cfg = run
        logger.info(
            "Multigrid: %d epochs (was %d); long-cycle phases [(lr step, [B_rel, T, S], end epoch)]: %s",
            new_max,
            cfg.SOLVER.MAX_EPOCH,
            self.schedule,
        )

    @property
    def max_epoch(self) -> int:
        return self.cfg.SOLVER.MAX_EPOCH

    def phase_index(self, cur_epoch: int) -> int:
        """Index of the long-cycle phase holding 0-based ``cur_epoch`` (0 without a long cycle)."""
        if self.schedule is None:
            return 0
        for i, (_, _, end) in enumerate(self.schedule):
            if cur_epoch < end:
                return i
        return len(self.schedule) - 1

    def phase_cfg(self, cur_epoch: int):
        """A new frozen cfg for the epoch: phase batch / frames / crop, and the phase's LR scaling."""
        if self.schedule is None:
            return self.cfg
        _, (b_rel, num_frames, crop), _ = self.schedule[self.phase_index(cur_epoch)]
        out = self.cfg.clone()
        out.defrost()
        out.TRAIN.BATCH_SIZE = int(b_rel * self.cfg.MULTIGRID.DEFAULT_B)
        out.DATA.NUM_FRAMES = int(num_frames)
        out.DATA.TRAIN_CROP_SIZE = int(crop)
        out.MULTIGRID.LONG_CYCLE_SAMPLING_RATE = out.DATA.SAMPLING_RATE * (
            self.cfg.MULTIGRID.DEFAULT_T // max(1, num_frames)
        )
        if out.SOLVER.LR_POLICY != "steps_with_relative_lrs":
            out.SOLVER.BASE_LR *= b_rel
            out.SOLVER.WARMUP_START_LR *= b_rel
            out.SOLVER.COSINE_END_LR *= b_rel
        out.freeze()
        return out

    def _periodic(self, cur_epoch: int, period: int) -> bool:
        """PySlowFast's is_eval_epoch / is_checkpoint_epoch rule under multigrid."""
        if cur_epoch + 1 == self.max_epoch:
            return True
        if self.schedule is None:
            return (cur_epoch + 1) % period == 0
        prev_end = 0
        for _, _, end in self.schedule:
            if cur_epoch < end:
                every = max((end - prev_end) // self.cfg.MULTIGRID.EVAL_FREQ + 1, 1)
                return (end - 1 - cur_epoch) % every == 0
            prev_end = end
        return True

    def is_eval_epoch(self, cur_epoch: int) -> bool:
        return self._periodic(cur_epoch, self.cfg.TRAIN.EVAL_PERIOD)

    def is_checkpoint_epoch(self, cur_epoch: int) -> bool:
        return self._periodic(cur_epoch, self.cfg.TRAIN.CHECKPOINT_PERIOD)
