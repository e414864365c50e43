"""load_config / merge_file / merge_opts: PySlowFast YAMLs load; errors name the key and the file."""
import logging
import os

import pytest

from mtnet_plugin.config import ConfigError, get_cfg, load_config, unimplemented_settings

# A SlowFast-style X3D classification config (the values of PySlowFast's configs/Kinetics/X3D_M.yaml).
X3D_M_YAML = """\
TRAIN:
  ENABLE: True
  DATASET: kinetics
  BATCH_SIZE: 128
  EVAL_PERIOD: 10
  CHECKPOINT_PERIOD: 10
  AUTO_RESUME: True
X3D:
  WIDTH_FACTOR: 2.0
  DEPTH_FACTOR: 2.2
  BOTTLENECK_FACTOR: 2.25
  DIM_C5: 2048
  DIM_C1: 12
TEST:
  ENABLE: True
  DATASET: kinetics
  BATCH_SIZE: 64
  # CHECKPOINT_FILE_PATH: 'x3d_m.pyth'
  NUM_SPATIAL_CROPS: 3
DATA:
  NUM_FRAMES: 16
  SAMPLING_RATE: 5
  TRAIN_JITTER_SCALES: [256, 320]
  TRAIN_CROP_SIZE: 224
  TEST_CROP_SIZE: 256
  INPUT_CHANNEL_NUM: [3]
  DECODING_BACKEND: torchvision
RESNET:
  ZERO_INIT_FINAL_BN: True
  TRANS_FUNC: x3d_transform
  STRIDE_1X1: False
BN:
  USE_PRECISE_STATS: True
  NUM_BATCHES_PRECISE: 200
  WEIGHT_DECAY: 0.0
SOLVER:
  BASE_LR: 0.1
  BASE_LR_SCALE_NUM_SHARDS: True
  LR_POLICY: cosine
  MAX_EPOCH: 300
  WEIGHT_DECAY: 5e-5
  WARMUP_EPOCHS: 35.0
  WARMUP_START_LR: 0.01
  OPTIMIZING_METHOD: sgd
MODEL:
  NUM_CLASSES: 400
  ARCH: x3d
  MODEL_NAME: X3D
  LOSS_FUNC: cross_entropy
  DROPOUT_RATE: 0.5
DATA_LOADER:
  NUM_WORKERS: 8
  PIN_MEMORY: True
NUM_GPUS: 8
RNG_SEED: 0
OUTPUT_DIR: .
"""


def _write(tmp_path, name, text):
    path = os.path.join(str(tmp_path), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_slowfast_x3d_yaml_loads_unmodified(tmp_path):
    cfg = load_config([_write(tmp_path, "X3D_M.yaml", X3D_M_YAML)])
    assert (cfg.MODEL.ARCH, cfg.MODEL.MODEL_NAME, cfg.X3D.DEPTH_FACTOR) == ("x3d", "X3D", 2.2)
    assert cfg.SOLVER.WEIGHT_DECAY == 5e-5  # PyYAML reads "5e-5" as a string; literal_eval makes it a float
    assert cfg.DATA.INPUT_CHANNEL_NUM == [3] and cfg.NUM_GPUS == 8
    # Keys the file does not set keep their defaults.
    assert cfg.TEST.NUM_ENSEMBLE_VIEWS == 10 and cfg.DATA.MEAN == [0.45] * 3


def test_arch_mtnet_override_and_opts_order(tmp_path):
    path = _write(tmp_path, "X3D_M.yaml", X3D_M_YAML)
    cfg = load_config([path], ["MODEL.ARCH", "mtnet", "NUM_GPUS", "0", "DATA.MEAN", "[0.5, 0.5, 0.5]"])
    assert cfg.MODEL.ARCH == "mtnet" and cfg.NUM_GPUS == 0 and cfg.DATA.MEAN == [0.5, 0.5, 0.5]
    assert cfg.MODEL.ARCH in cfg.MODEL.SINGLE_PATHWAY_ARCH


def test_files_merge_in_order(tmp_path):
    a = _write(tmp_path, "a.yaml", "DATA:\n  NUM_FRAMES: 4\n  SAMPLING_RATE: 3\n")
    b = _write(tmp_path, "b.yaml", "DATA:\n  NUM_FRAMES: 6\n")
    cfg = load_config([a, b])
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE) == (6, 3)


def test_base_inheritance_relative_paths_and_lists(tmp_path):
    _write(tmp_path, "_base_/common.yaml", "DATA:\n  NUM_FRAMES: 4\n  SAMPLING_RATE: 3\nSOLVER:\n  BASE_LR: 0.5\n")
    _write(tmp_path, "_base_/more.yaml", "_BASE_: common.yaml\nSOLVER:\n  BASE_LR: 0.25\n  MAX_EPOCH: 7\n")
    _write(tmp_path, "_base_/other.yaml", "MODEL:\n  NUM_CLASSES: 5\n")
    leaf = _write(tmp_path, "sub/leaf.yaml",
                  "_BASE_:\n  - ../_base_/more.yaml\n  - ../_base_/other.yaml\nDATA:\n  NUM_FRAMES: 8\n")
    cfg = load_config([leaf])
    # Child over base, later base over earlier base, untouched keys inherited.
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE) == (8, 3)
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_EPOCH, cfg.MODEL.NUM_CLASSES) == (0.25, 7, 5)


def test_unknown_key_names_key_and_file(tmp_path):
    path = _write(tmp_path, "bad.yaml", "SOLVER:\n  BASE_LR: 0.1\n  BASE_LRR: 0.2\n")
    with pytest.raises(ConfigError) as e:
        load_config([path])
    assert "SOLVER.BASE_LRR" in str(e.value) and path in str(e.value)


def test_unknown_key_in_a_base_names_the_base_file(tmp_path):
    base = _write(tmp_path, "base.yaml", "DATA:\n  NUM_FRAMS: 4\n")
    leaf = _write(tmp_path, "leaf.yaml", "_BASE_: base.yaml\nDATA:\n  NUM_FRAMES: 4\n")
    with pytest.raises(ConfigError) as e:
        load_config([leaf])
    assert "DATA.NUM_FRAMS" in str(e.value) and base in str(e.value)


def test_unknown_top_level_node_and_opts_key(tmp_path):
    path = _write(tmp_path, "bad.yaml", "FOO:\n  BAR: 1\n")
    with pytest.raises(ConfigError, match="FOO"):
        load_config([path])
    with pytest.raises(ConfigError, match=r"--opts.*DATA\.NUM_FRAMESS"):
        load_config([], ["DATA.NUM_FRAMESS", "4"])


def test_wrong_type_names_key_and_file(tmp_path):
    path = _write(tmp_path, "bad.yaml", "DATA:\n  NUM_FRAMES: sixteen\n")
    with pytest.raises(ConfigError) as e:
        load_config([path])
    assert "DATA.NUM_FRAMES" in str(e.value) and path in str(e.value)
    with pytest.raises(ConfigError, match=r"--opts.*TRAIN\.BATCH_SIZE"):
        load_config([], ["TRAIN.BATCH_SIZE", "many"])


def test_int_accepted_where_default_is_float(tmp_path):
    # yacs alone rejects SOLVER.WARMUP_EPOCHS: 35 (default 0.0); we coerce int -> float.
    path = _write(tmp_path, "a.yaml", "SOLVER:\n  WARMUP_EPOCHS: 35\n")
    cfg = load_config([path], ["SOLVER.BASE_LR", "1"])
    assert cfg.SOLVER.WARMUP_EPOCHS == 35.0 and isinstance(cfg.SOLVER.WARMUP_EPOCHS, float)
    assert isinstance(cfg.SOLVER.BASE_LR, float)


def test_missing_file_and_base_cycle(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config([os.path.join(str(tmp_path), "nope.yaml")])
    a = _write(tmp_path, "a.yaml", "_BASE_: b.yaml\n")
    _write(tmp_path, "b.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config([a])


def test_unimplemented_keys_warn_once_when_not_default(tmp_path, caplog):
    path = _write(tmp_path, "a.yaml", "DETECTION:\n  ENABLE: True\nAVA:\n  BGR: True\nMODEL:\n  NUM_CLASSES: 3\n")
    with caplog.at_level(logging.WARNING, logger="mtnet_plugin.config.loading"):
        cfg = load_config([path])
    messages = [r.getMessage() for r in caplog.records]
    assert sum("DETECTION.ENABLE" in m for m in messages) == 1
    assert sum("AVA.BGR" in m for m in messages) == 1
    assert not any("NUM_CLASSES" in m for m in messages)  # implemented keys never warn
    assert {k for k, _, _ in unimplemented_settings(cfg)} == {"DETECTION.ENABLE", "AVA.BGR"}
    assert unimplemented_settings(get_cfg()) == []


def test_load_config_does_not_touch_a_frozen_base():
    base = get_cfg()
    base.freeze()
    cfg = load_config([], ["DATA.NUM_FRAMES", "4"], base=base)
    assert cfg.DATA.NUM_FRAMES == 4 and base.DATA.NUM_FRAMES == 8


def test_x3d_yaml_with_arch_mtnet_builds_mtnet_with_its_x3d_scaling(tmp_path):
    import torch

    from mtnet_plugin.layers import MTConv
    from mtnet_plugin.models import MTNet, build_model

    path = _write(tmp_path, "X3D_M.yaml", X3D_M_YAML.replace("ARCH: x3d", "ARCH: mtnet"))
    cfg = load_config([path], ["MODEL.NUM_CLASSES", "5"])
    model = build_model(cfg)
    assert isinstance(model, MTNet)
    # X3D-M depth: ceil(2.2 * [1, 2, 5, 3]) = [3, 5, 11, 7] blocks; head widths from X3D.DIM_C5 and NUM_CLASSES.
    assert [len(list(getattr(model, f"s{i}").children())) for i in range(2, 6)] == [3, 5, 11, 7]
    assert model.head.projection.in_features == 2048 and model.head.projection.out_features == 5
    assert any(isinstance(m, MTConv) for m in model.modules())
    small = build_model(load_config([path], ["MODEL.NUM_CLASSES", "3", "X3D.WIDTH_FACTOR", "0.5",
                                             "X3D.DEPTH_FACTOR", "0.3", "X3D.DIM_C5", "16"]))
    small.eval()
    with torch.no_grad():
        assert small([torch.randn(1, 3, 4, 32, 32)]).shape == (1, 3)
