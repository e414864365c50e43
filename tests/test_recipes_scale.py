"""The recipe files of configs/Synthetic/recipes change only data scale (docs/recipes.md).

Each recipe file's config is compared key by key with the paper file it ``_BASE_``s (for UCF101_X3D_S.yaml, the
paper file with X3D's model fragment, which that file names itself). Any key that differs must be in DATA_SCALE;
a recipe that changed the optimiser, momentum, weight decay, LR policy, zero-init, dropout or the 30-view test
would fail here, naming the key.
"""
import os

import pytest

from mtnet_plugin.config import load_config
from mtnet_plugin.config.loading import flatten_cfg

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
RECIPES = os.path.join(CONFIGS, "Synthetic", "recipes")

# recipe file -> the shipped files it starts from, in _BASE_ order
PAPER = {
    "HACS_MTNet_S.yaml": ["HACS/MTNet_S.yaml"],
    "HACS_X3D_S.yaml": ["HACS/X3D_S.yaml"],
    "Kinetics_MTNet_S.yaml": ["Kinetics/MTNet_S.yaml"],
    "Kinetics_X3D_S.yaml": ["Kinetics/X3D_S.yaml"],
    "UCF101_MTNet_S.yaml": ["UCF101/MTNet_S_finetune.yaml"],
    "UCF101_X3D_S.yaml": ["UCF101/MTNet_S_finetune.yaml", "_base_/x3d.yaml"],
}
# What docs/recipes.md calls data scale: data, input size, batch and linearly scaled LR, schedule length, precise-BN
# batches, loader, where to start from and write to, and multigrid (off: docs/recipes.md "Multigrid at small scale").
DATA_SCALE = {
    "SYNTHETIC.ENABLE", "SYNTHETIC.SEED", "SYNTHETIC.NUM_CLASSES", "SYNTHETIC.NUM_TRAIN", "SYNTHETIC.NUM_VAL",
    "SYNTHETIC.NUM_TEST", "SYNTHETIC.FRAMES", "SYNTHETIC.SIZE", "SYNTHETIC.FPS",
    "DATA.PATH_TO_DATA_DIR", "DATA.PATH_PREFIX", "DATA.NUM_FRAMES", "DATA.TRAIN_JITTER_SCALES",
    "DATA.TRAIN_CROP_SIZE", "DATA.TEST_CROP_SIZE", "MODEL.NUM_CLASSES",
    "TRAIN.BATCH_SIZE", "TRAIN.EVAL_PERIOD", "TRAIN.CHECKPOINT_PERIOD", "TRAIN.CHECKPOINT_FILE_PATH",
    "TRAIN.CHECKPOINT_EPOCH_RESET", "TEST.BATCH_SIZE",
    "SOLVER.MAX_EPOCH", "SOLVER.WARMUP_EPOCHS", "SOLVER.BASE_LR", "SOLVER.WARMUP_START_LR",
    "BN.NUM_BATCHES_PRECISE", "DATA_LOADER.NUM_WORKERS", "DATA_LOADER.PIN_MEMORY", "NUM_GPUS", "OUTPUT_DIR",
    "MULTIGRID.LONG_CYCLE", "MULTIGRID.SHORT_CYCLE",
}


def _configs(recipe):
    """(paper file's config, recipe file's config)."""
    return (load_config([os.path.join(CONFIGS, p) for p in PAPER[recipe]]),
            load_config([os.path.join(RECIPES, recipe)]))


def test_every_recipe_file_is_checked():
    assert sorted(f for f in os.listdir(RECIPES) if f.endswith(".yaml")) == sorted(PAPER)


@pytest.mark.parametrize("recipe", sorted(PAPER))
def test_recipe_changes_only_data_scale(recipe):
    paper, mine = _configs(recipe)
    paper_keys, my_keys = flatten_cfg(paper), flatten_cfg(mine)
    changed = {k: (paper_keys.get(k), v) for k, v in my_keys.items() if paper_keys.get(k) != v}
    assert {k: v for k, v in changed.items() if k not in DATA_SCALE} == {}
    # the learning rate follows the linear scaling rule from the paper file's batch: lr x batch / paper batch
    paper_batch = paper.TRAIN.BATCH_SIZE  # PySlowFast: the batch over all GPUs
    assert mine.SOLVER.BASE_LR == pytest.approx(paper.SOLVER.BASE_LR * mine.TRAIN.BATCH_SIZE / paper_batch)
    assert mine.SOLVER.WARMUP_START_LR == pytest.approx(
        paper.SOLVER.WARMUP_START_LR * mine.TRAIN.BATCH_SIZE / paper_batch)
    # what the paper keeps: SGD, momentum, weight decay, cosine, dropout, zero-init, the 30-view test
    for key in ("SOLVER.OPTIMIZING_METHOD", "SOLVER.MOMENTUM", "SOLVER.WEIGHT_DECAY", "SOLVER.LR_POLICY",
                "MODEL.DROPOUT_RATE", "RESNET.ZERO_INIT_FINAL_BN", "TEST.NUM_ENSEMBLE_VIEWS",
                "TEST.NUM_SPATIAL_CROPS", "SOLVER.CONV_WEIGHT_LR_MULT"):
        assert key not in changed
