"""Multigrid schedules: PySlowFast's worked example and our cosine definition."""
import pytest

from mtnet_plugin.config import get_cfg
from mtnet_plugin.engine.lr_policy import get_lr_at_epoch
from mtnet_plugin.engine.multigrid import MultigridSchedule, long_cycle_schedule


def slowfast_stepwise_multigrid():
    """configs/Kinetics/SLOWFAST_8x8_R50_stepwise_multigrid.yaml's relevant keys."""
    cfg = get_cfg()
    cfg.SOLVER.LR_POLICY = "steps_with_relative_lrs"
    cfg.SOLVER.STEPS, cfg.SOLVER.LRS, cfg.SOLVER.MAX_EPOCH = [0, 94, 154, 196], [1, 0.1, 0.01, 0.001], 239
    cfg.SOLVER.GAMMA = 0.1
    cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.SAMPLING_RATE = 32, 224, 2
    cfg.TRAIN.BATCH_SIZE = 64
    cfg.MULTIGRID.LONG_CYCLE = cfg.MULTIGRID.SHORT_CYCLE = True
    cfg.freeze()
    return cfg


def test_step_schedule_reproduces_pyslowfast_worked_example():
    cfg = slowfast_stepwise_multigrid()
    before = cfg.dump()
    mg = MultigridSchedule(cfg)
    shapes = [[8, 8, 158], [4, 16, 158], [2, 16, 224], [1, 32, 224]]
    ends = [73, 110, 142, 158, 205, 228, 248, 259, 291, 308, 322, 329]
    expected = [(i // 4, shapes[i % 4], end) for i, end in enumerate(ends)] + [(3, [1, 32, 224], 358)]
    assert mg.schedule == expected
    assert list(mg.cfg.SOLVER.STEPS) == [0, 73, 110, 142, 158, 205, 228, 248, 259, 291, 308, 322, 329, 343]
    assert list(mg.cfg.SOLVER.LRS) == pytest.approx([8, 4, 2, 1, .8, .4, .2, .1, .08, .04, .02, .01, .01, .001])
    assert mg.cfg.SOLVER.MAX_EPOCH == 358
    assert cfg.dump() == before and cfg.SOLVER.MAX_EPOCH == 239  # the given cfg is never edited


@pytest.mark.parametrize("epoch, batch, frames, rate, crop", [(0, 512, 8, 8, 158), (73, 256, 16, 4, 158),
                                                              (230, 128, 16, 4, 224), (357, 64, 32, 2, 224)])
def test_phase_cfg_matches_pyslowfast_update_long_cycle(epoch, batch, frames, rate, crop):
    mg = MultigridSchedule(slowfast_stepwise_multigrid())
    phase = mg.phase_cfg(epoch)
    assert phase.is_frozen()
    assert (phase.TRAIN.BATCH_SIZE, phase.DATA.NUM_FRAMES, phase.DATA.TRAIN_CROP_SIZE) == (batch, frames, crop)
    assert phase.MULTIGRID.LONG_CYCLE_SAMPLING_RATE == rate
    assert (phase.MULTIGRID.DEFAULT_B, phase.MULTIGRID.DEFAULT_T, phase.MULTIGRID.DEFAULT_S) == (64, 32, 224)
    # the step policy's LR already holds the batch factor: 8x base LR in the first phase
    assert get_lr_at_epoch(phase, epoch) == pytest.approx(0.1 * mg.cfg.SOLVER.LRS[
        max(i for i, s in enumerate(mg.cfg.SOLVER.STEPS) if s <= epoch)])


def test_eval_and_checkpoint_epochs_follow_the_phases():
    mg = MultigridSchedule(slowfast_stepwise_multigrid())
    prev = 0
    for _, _, end in mg.schedule:
        assert mg.is_checkpoint_epoch(end - 1) and mg.is_eval_epoch(end - 1)  # last epoch of every phase
        period = max((end - prev) // 3 + 1, 1)
        expected = [e for e in range(prev, end) if (end - 1 - e) % period == 0]
        assert [e for e in range(prev, end) if mg.is_eval_epoch(e)] == expected
        prev = end


def x3d_cosine(long_cycle=True, short_cycle=False):
    cfg = get_cfg()
    cfg.SOLVER.LR_POLICY, cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_EPOCH = "cosine", 0.1, 300
    cfg.SOLVER.WARMUP_EPOCHS, cfg.SOLVER.WARMUP_START_LR, cfg.SOLVER.COSINE_END_LR = 35.0, 0.01, 0.0
    cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.TRAIN.BATCH_SIZE = 16, 224, 64
    cfg.MULTIGRID.LONG_CYCLE, cfg.MULTIGRID.SHORT_CYCLE = long_cycle, short_cycle
    cfg.freeze()
    return cfg


def test_short_cycle_alone_stretches_the_run_like_pyslowfast():
    mg = MultigridSchedule(x3d_cosine(long_cycle=False, short_cycle=True))
    assert mg.cfg.SOLVER.MAX_EPOCH == 450 and mg.schedule is None  # PySlowFast: X3D-M short cycle -> 450
    assert mg.cfg.SOLVER.WARMUP_EPOCHS == pytest.approx(35 * 1.5)
    assert mg.phase_cfg(10).TRAIN.BATCH_SIZE == 64


@pytest.mark.parametrize("short_cycle", [False, True])
def test_cosine_long_cycle_is_the_stretched_schedule_times_the_batch_factor(short_cycle):
    base = x3d_cosine(short_cycle=short_cycle)  # PySlowFast raises IndexError for both
    mg = MultigridSchedule(base)
    new_max = mg.cfg.SOLVER.MAX_EPOCH
    assert mg.schedule[-1][1] == [1, 16, 224] and mg.schedule[-1][2] == new_max
    assert new_max == pytest.approx(300 * 1.5, abs=1)  # one pass, EPOCH_FACTOR x the base epochs
    assert [s[1][0] for s in mg.schedule] == [8, 4, 2, 1]
    for epoch in (0.0, 5.0, 20.0, 60.0, 200.0, 400.0, new_max - 0.5):
        b_rel = mg.schedule[mg.phase_index(int(epoch))][1][0]
        expected = b_rel * get_lr_at_epoch(base, epoch * 300 / new_max)
        assert get_lr_at_epoch(mg.phase_cfg(int(epoch)), epoch) == pytest.approx(expected)


def test_long_cycle_schedule_without_short_cycle_uses_the_factor_shapes():
    sched = long_cycle_schedule(x3d_cosine())
    # (T, S) = round(16 * t), round(224 * s); B_rel = round(16 * 224^2 / (T * S^2))
    assert [s[1] for s in sched] == [[8, 4, 158], [4, 8, 158], [2, 8, 224], [1, 16, 224]]
    ends = [s[2] for s in sched]
    assert ends == sorted(ends) and len(set(ends)) == 4
