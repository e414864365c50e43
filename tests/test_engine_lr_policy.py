"""LR policies against hand-computed values and PySlowFast's X3D-M numbers."""
import math

import pytest

from mtnet_plugin.config import get_cfg
from mtnet_plugin.engine.lr_policy import get_lr_at_epoch


def _cfg(**solver):
    cfg = get_cfg()
    for key, value in solver.items():
        cfg.SOLVER[key] = value
    return cfg


def x3d_m():
    # configs/Kinetics/X3D_M.yaml's SOLVER: cosine, BASE_LR 0.1, 300 epochs, 35 warm-up epochs from 0.01.
    return _cfg(LR_POLICY="cosine", BASE_LR=0.1, COSINE_END_LR=0.0, MAX_EPOCH=300, WARMUP_EPOCHS=35.0,
                WARMUP_START_LR=0.01, COSINE_AFTER_WARMUP=False)


@pytest.mark.parametrize("epoch, expected, tol", [(0.0, 0.01, 1e-12), (17.5, 0.0533, 1e-4), (35.0, 0.09668, 1e-5),
                                                  (150.0, 0.05, 1e-12), (299.99, 0.0, 1e-6)])
def test_x3d_m_cosine_with_warmup_matches_pyslowfast(epoch, expected, tol):
    assert get_lr_at_epoch(x3d_m(), epoch) == pytest.approx(expected, abs=tol)


def test_warmup_is_linear_to_the_policy_value_at_warmup_end():
    cfg = x3d_m()
    end = 0.05 * (math.cos(math.pi * 35 / 300) + 1)  # cosine value at epoch 35, by hand
    for e in (1.0, 10.0, 34.0):
        assert get_lr_at_epoch(cfg, e) == pytest.approx(0.01 + e * (end - 0.01) / 35)


def test_cosine_after_warmup_and_end_lr():
    cfg = _cfg(LR_POLICY="cosine", BASE_LR=0.4, COSINE_END_LR=0.004, MAX_EPOCH=100, WARMUP_EPOCHS=10.0,
               WARMUP_START_LR=0.0, COSINE_AFTER_WARMUP=True)
    assert get_lr_at_epoch(cfg, 10.0) == pytest.approx(0.4)  # the cosine starts after warm-up
    assert get_lr_at_epoch(cfg, 5.0) == pytest.approx(0.2)  # half-way up the warm-up
    assert get_lr_at_epoch(cfg, 55.0) == pytest.approx((0.4 + 0.004) / 2)  # middle of the cosine
    assert get_lr_at_epoch(cfg, 100.0) == pytest.approx(0.004)


def test_cosine_end_lr_must_be_below_base_lr():
    with pytest.raises(ValueError, match="COSINE_END_LR"):
        get_lr_at_epoch(_cfg(LR_POLICY="cosine", BASE_LR=0.1, COSINE_END_LR=0.2), 1.0)


def test_steps_with_relative_lrs():
    cfg = _cfg(LR_POLICY="steps_with_relative_lrs", BASE_LR=0.5, STEPS=[0, 10, 20], LRS=[1.0, 0.1, 0.01],
               MAX_EPOCH=30, WARMUP_EPOCHS=0.0)
    for epoch, expected in [(0.0, 0.5), (9.99, 0.5), (10.0, 0.05), (19.5, 0.05), (20.0, 0.005), (29.9, 0.005)]:
        assert get_lr_at_epoch(cfg, epoch) == pytest.approx(expected)
    cfg.SOLVER.WARMUP_EPOCHS, cfg.SOLVER.WARMUP_START_LR = 2.0, 0.05
    assert get_lr_at_epoch(cfg, 1.0) == pytest.approx(0.05 + (0.5 - 0.05) / 2)


def test_constant_and_unknown_policy():
    assert get_lr_at_epoch(_cfg(LR_POLICY="constant", BASE_LR=0.03), 7.3) == pytest.approx(0.03)
    with pytest.raises(ValueError, match="SOLVER.LR_POLICY"):
        get_lr_at_epoch(_cfg(LR_POLICY="exp"), 1.0)
