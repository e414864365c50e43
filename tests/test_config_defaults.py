"""get_cfg(): PySlowFast's schema and defaults, plus our additions."""
import math

from fvcore.common.config import CfgNode

from mtnet_plugin.config import get_cfg
from mtnet_plugin.config.loading import flatten_cfg as _flat


def test_top_level_nodes_and_scalars():
    cfg = get_cfg()
    for node in ("CONTRASTIVE", "BN", "TRAIN", "AUG", "VIS_MASK", "MIXUP", "TEST", "RESNET", "X3D", "NONLOCAL",
                 "MODEL", "MVIT", "MASK", "SLOWFAST", "DATA", "SOLVER", "BENCHMARK", "DATA_LOADER", "DETECTION",
                 "AVA", "MULTIGRID", "TENSORBOARD", "DEMO", "MTNET", "SYNTHETIC"):
        assert isinstance(cfg[node], CfgNode), node
    assert (cfg.TASK, cfg.NUM_GPUS, cfg.NUM_SHARDS, cfg.SHARD_ID, cfg.OUTPUT_DIR, cfg.RNG_SEED, cfg.LOG_PERIOD,
            cfg.LOG_MODEL_INFO, cfg.DIST_BACKEND) == ("", 1, 1, 0, ".", 1, 10, True, "nccl")


def test_defaults_the_x3d_configs_inherit():
    # Facts file §2.4 "Effective defaults that the X3D configs inherit without overriding".
    c = get_cfg()
    assert (c.SOLVER.MOMENTUM, c.SOLVER.NESTEROV, c.SOLVER.DAMPENING, c.SOLVER.COSINE_END_LR) == (0.9, True, 0.0, 0.0)
    assert (c.SOLVER.COSINE_AFTER_WARMUP, c.SOLVER.ZERO_WD_1D_PARAM) == (False, False)
    assert c.DATA.MEAN == [0.45] * 3 and c.DATA.STD == [0.225] * 3
    assert (c.DATA.TARGET_FPS, c.DATA.RANDOM_FLIP, c.DATA.INV_UNIFORM_SAMPLE) == (30, True, False)
    assert (c.DATA.ENSEMBLE_METHOD, c.DATA.PATH_LABEL_SEPARATOR) == ("sum", " ")
    assert c.TEST.NUM_ENSEMBLE_VIEWS == 10
    assert (c.MODEL.HEAD_ACT, c.MODEL.FC_INIT_STD, c.MODEL.DROPCONNECT_RATE) == ("softmax", 0.01, 0.0)
    assert (c.X3D.SCALE_RES2, c.X3D.BN_LIN5, c.X3D.CHANNELWISE_3x3x3) == (False, False, True)
    assert (c.RESNET.DEPTH, c.RESNET.NUM_GROUPS, c.BN.NORM_TYPE) == (50, 1, "batchnorm")
    assert (c.MULTIGRID.LONG_CYCLE, c.MULTIGRID.SHORT_CYCLE, c.MULTIGRID.EPOCH_FACTOR) == (False, False, 1.5)
    assert c.MULTIGRID.SHORT_CYCLE_FACTORS == [0.5, 0.5 ** 0.5]
    assert c.MULTIGRID.LONG_CYCLE_FACTORS == [(0.25, 0.5 ** 0.5), (0.5, 0.5 ** 0.5), (0.5, 1), (1, 1)]
    assert c.SOLVER.CLIP_GRAD_VAL is None and c.SOLVER.CLIP_GRAD_L2NORM is None
    assert c.SOLVER.WARMUP_EPOCHS == 0.0 and isinstance(c.SOLVER.WARMUP_EPOCHS, float)
    assert c.CONTRASTIVE.DELTA_CLIPS_MIN == -math.inf


def test_mtnet_is_a_single_pathway_arch_and_new_keys_exist():
    c = get_cfg()
    assert c.MODEL.SINGLE_PATHWAY_ARCH == ["2d", "c2d", "i3d", "slow", "x3d", "mvit", "maskmvit", "mtnet"]
    assert c.MODEL.MULTI_PATHWAY_ARCH == ["slowfast"]
    assert c.SOLVER.CONV_WEIGHT_LR_MULT == 1.0
    assert (c.BN.EPSILON, c.BN.MOMENTUM) == (1e-5, 0.1)  # nn.BatchNorm3d's defaults, which PySlowFast uses
    assert c.DATA.DECODE_RETRIES >= 0 and c.DATA.MAX_REPLACEMENTS >= 0
    assert c.MTNET.DELTA == 0.875


def test_get_cfg_returns_independent_trees():
    a, b = get_cfg(), get_cfg()
    a.DATA.MEAN[0] = 0.0
    a.NONLOCAL.POOL[0][0][1] = 9
    assert b.DATA.MEAN[0] == 0.45 and b.NONLOCAL.POOL[0][0][1] == 2
    assert b.NONLOCAL.POOL[1][0][1] == 2  # the four stages do not share one list
    # PySlowFast 287ec00 declares 339 keys; we add 9 (BN.EPSILON / MOMENTUM, SOLVER.CONV_WEIGHT_LR_MULT,
    # DATA.DECODE_RETRIES / MAX_REPLACEMENTS, TRAIN.NONFINITE_GRAD / NONFINITE_GRAD_MAX_SKIPS / PREEMPT_SIGNALS /
    # CHECKPOINT_MIN_LOADED_SHARE) plus the MTNET and SYNTHETIC nodes.
    assert len([k for k in _flat(get_cfg()) if not k.startswith(("MTNET.", "SYNTHETIC."))]) == 339 + 9
