"""validate_cfg rejects values that cannot work, naming the key; assert_and_infer_cfg derives a new cfg."""
import pytest

from mtnet_plugin.config import ConfigError, assert_and_infer_cfg, get_cfg, validate_cfg


def _cfg(**overrides):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    for key, value in overrides.items():
        node = cfg
        parts = key.split("__")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return cfg


def test_defaults_are_valid_and_left_unchanged():
    cfg = _cfg()
    before = cfg.dump()
    assert validate_cfg(cfg) is cfg and cfg.dump() == before


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"NUM_GPUS": 4, "TRAIN__BATCH_SIZE": 30}, "TRAIN.BATCH_SIZE"),
        ({"NUM_GPUS": 4, "TRAIN__BATCH_SIZE": 32, "TEST__BATCH_SIZE": 6}, "TEST.BATCH_SIZE"),
        ({"DATA__TRAIN_CROP_SIZE": 300}, "DATA.TRAIN_CROP_SIZE"),  # > TRAIN_JITTER_SCALES[0] = 256
        ({"TEST__NUM_SPATIAL_CROPS": 1, "DATA__TEST_CROP_SIZE": 300}, "DATA.TEST_CROP_SIZE"),
        ({"DATA__TRAIN_JITTER_SCALES": [320, 256]}, "DATA.TRAIN_JITTER_SCALES"),
        ({"TEST__NUM_SPATIAL_CROPS": 2}, "TEST.NUM_SPATIAL_CROPS"),
        ({"TEST__NUM_ENSEMBLE_VIEWS": 0}, "TEST.NUM_ENSEMBLE_VIEWS"),
        ({"SOLVER__MAX_EPOCH": -5}, "SOLVER.MAX_EPOCH"),
        ({"SOLVER__WARMUP_EPOCHS": -1.0}, "SOLVER.WARMUP_EPOCHS"),
        ({"SOLVER__MAX_EPOCH": 10, "SOLVER__WARMUP_EPOCHS": 10.0}, "SOLVER.WARMUP_EPOCHS"),
        ({"SOLVER__BASE_LR": 0.0}, "SOLVER.BASE_LR"),
        ({"SOLVER__LR_POLICY": "linear"}, "SOLVER.LR_POLICY"),
        ({"SOLVER__LR_POLICY": "steps_with_relative_lrs"}, "SOLVER.STEPS"),
        ({"SOLVER__LR_POLICY": "steps_with_relative_lrs", "SOLVER__STEPS": [0, 5], "SOLVER__LRS": [1]},
         "SOLVER.LRS"),
        ({"SOLVER__COSINE_END_LR": 0.5}, "SOLVER.COSINE_END_LR"),
        ({"MODEL__ARCH": "mtnett"}, "MODEL.ARCH"),
        ({"MODEL__NUM_CLASSES": 0}, "MODEL.NUM_CLASSES"),
        ({"DATA__NUM_FRAMES": 0}, "DATA.NUM_FRAMES"),
        ({"DATA__NUM_FRAMES": "16"}, "DATA.NUM_FRAMES"),  # a string set in code, not through a file
        ({"DATA__STD": [0.2, 0.0, 0.2]}, "DATA.STD"),
        ({"DATA__MEAN": [0.45, 0.45]}, "DATA.MEAN"),
        ({"DATA__ENSEMBLE_METHOD": "mean"}, "DATA.ENSEMBLE_METHOD"),
        ({"DATA__PATH_LABEL_SEPARATOR": ""}, "DATA.PATH_LABEL_SEPARATOR"),
        ({"DATA_LOADER__NUM_WORKERS": -1}, "DATA_LOADER.NUM_WORKERS"),
        ({"NUM_SHARDS": 2, "SHARD_ID": 2}, "SHARD_ID"),
        ({"TRAIN__CHECKPOINT_TYPE": "tf"}, "TRAIN.CHECKPOINT_TYPE"),
        ({"TRAIN__NONFINITE_GRAD": "ignore"}, "TRAIN.NONFINITE_GRAD"),
        ({"TRAIN__NONFINITE_GRAD_MAX_SKIPS": -1}, "TRAIN.NONFINITE_GRAD_MAX_SKIPS"),
        ({"TRAIN__PREEMPT_SIGNALS": ["SIGKILL"]}, "TRAIN.PREEMPT_SIGNALS"),  # cannot be handled
        ({"MODEL__HEAD_ACT": "relu"}, "MODEL.HEAD_ACT"),
        ({"SOLVER__LR_POLICY": "steps_with_relative_lrs", "SOLVER__STEPS": [0, 400], "SOLVER__LRS": [1, 0.1]},
         "SOLVER.STEPS"),  # past MAX_EPOCH (300)
    ],
)
def test_impossible_values_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        validate_cfg(_cfg(**overrides), check_devices=False)
    assert str(e.value).startswith(key + " ")


def test_batch_divisible_per_process_not_per_shard():
    # PySlowFast's per-process batch is BATCH_SIZE / max(1, NUM_GPUS); NUM_SHARDS multiplies the global batch.
    cfg = _cfg(NUM_GPUS=2, NUM_SHARDS=3, TRAIN__BATCH_SIZE=4, TEST__BATCH_SIZE=2)
    assert validate_cfg(cfg, check_devices=False) is cfg  # 4 is not divisible by the 3 shards: fine
    with pytest.raises(ConfigError, match=r"^TRAIN.BATCH_SIZE = 3: must be divisible by NUM_GPUS \(2\)"):
        validate_cfg(_cfg(NUM_GPUS=2, NUM_SHARDS=3, TRAIN__BATCH_SIZE=3, TEST__BATCH_SIZE=2), check_devices=False)


@pytest.mark.parametrize("steps, lrs, max_epoch", [
    ([0, 41, 49], [1, 0.1, 0.01, 0.001, 0.0001, 0.00001], 57),  # more rates than steps (Charades, SSv2, stepwise)
    ([0, 16, 24, 28, 32], [1, 0.1, 0.01, 0.001], 32),  # the last step is MAX_EPOCH: it needs no rate
    ([0, 5], [1, 0.1], 10),
])
def test_step_schedules_pyslowfast_accepts_are_valid(steps, lrs, max_epoch):
    cfg = _cfg(SOLVER__LR_POLICY="steps_with_relative_lrs", SOLVER__STEPS=steps, SOLVER__LRS=lrs,
               SOLVER__MAX_EPOCH=max_epoch, SOLVER__WARMUP_EPOCHS=0.0)
    assert validate_cfg(cfg, check_devices=False) is cfg
    cfg.SOLVER.LRS = lrs[: len([s for s in steps if s < max_epoch]) - 1]  # one rate short: an epoch has none
    with pytest.raises(ConfigError, match=r"^SOLVER.LRS "):
        validate_cfg(cfg, check_devices=False)


def test_more_gpus_than_devices_is_rejected(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    validate_cfg(_cfg(NUM_GPUS=2))
    with pytest.raises(ConfigError, match=r"^NUM_GPUS .*2 CUDA device"):
        validate_cfg(_cfg(NUM_GPUS=4, TRAIN__BATCH_SIZE=64, TEST__BATCH_SIZE=8))


def test_unregistered_model_name_is_rejected_when_names_are_given():
    cfg = _cfg(MODEL__ARCH="mtnet", MODEL__MODEL_NAME="X3D")
    validate_cfg(cfg, model_name="MTNet", registered_models=["MTNet", "X3D"])
    with pytest.raises(ConfigError, match=r"^MODEL.MODEL_NAME .*'MTNet'"):
        validate_cfg(cfg, model_name="MTNet", registered_models=["X3D"])


def test_assert_and_infer_cfg_returns_a_new_frozen_cfg():
    cfg = _cfg(NUM_SHARDS=4, SOLVER__BASE_LR_SCALE_NUM_SHARDS=True, SOLVER__BASE_LR=0.1,
               SOLVER__WARMUP_START_LR=0.01)
    cfg.freeze()
    out = assert_and_infer_cfg(cfg, check_devices=False)
    assert out is not cfg and out.is_frozen()
    assert out.SOLVER.BASE_LR == pytest.approx(0.4) and out.SOLVER.WARMUP_START_LR == pytest.approx(0.04)
    assert cfg.SOLVER.BASE_LR == 0.1  # the input is untouched
    again = assert_and_infer_cfg(out, check_devices=False)  # deriving twice does not scale twice
    assert again.SOLVER.BASE_LR == pytest.approx(0.4)


@pytest.mark.parametrize("key, value", [("DELTA", 1.5), ("DELTA", 0.0), ("CELL", "transformer"), ("POOL", "median"),
                                        ("SR_LAYERS", 0), ("SELECTION", "random"), ("P_INPUT", "half"),
                                        ("LP_KERNEL", "3x3x3"), ("SYMMETRIC_POOL", 1)])
def test_impossible_mtnet_values_name_the_key(key, value):
    cfg = _cfg(MODEL__ARCH="mtnet")
    cfg.MTNET[key] = value
    with pytest.raises(ConfigError) as e:
        validate_cfg(cfg, check_devices=False)
    assert str(e.value).startswith(f"MTNET.{key} = {value!r}")
    validate_cfg(_cfg(MTNET__DELTA=1.0), check_devices=False)  # delta = 1: no P branch, a valid baseline


def test_mtnet_node_is_derived_from_the_model_options():
    import dataclasses

    from mtnet_plugin.layers import MTBlockOptions

    node = get_cfg().MTNET
    keyed = [f for f in dataclasses.fields(MTBlockOptions) if f.metadata["key"]]
    assert set(node) == {f.metadata["key"] for f in keyed} | {"HEAD", "INIT_FROM_X3D"}
    assert all(node[f.metadata["key"]] == f.default for f in keyed)
    assert MTBlockOptions.from_node(node) == MTBlockOptions()
    # A value the layers reject is rejected by validation, naming the key (symmetric pooling needs no selection).
    cfg = _cfg(MTNET__SYMMETRIC_POOL=True)
    with pytest.raises(ConfigError, match=r"^MTNET.SYMMETRIC_POOL = True"):
        validate_cfg(cfg, check_devices=False)
    validate_cfg(_cfg(MTNET__SYMMETRIC_POOL=True, MTNET__SELECTION="none"), check_devices=False)


def test_zeroed_final_bns_followed_by_relu_are_rejected_naming_both_keys():
    """That combination builds MTBlocks in which no parameter ever gets a gradient (tests/test_configs_gradients.py)."""
    bad = _cfg(MTNET__ZERO_INIT="final_bn", MTNET__LAST_MTCONV_ACT=True, RESNET__ZERO_INIT_FINAL_BN=True)
    with pytest.raises(ConfigError) as err:
        validate_cfg(bad)
    for key in ("MTNET.ZERO_INIT", "MTNET.LAST_MTCONV_ACT", "RESNET.ZERO_INIT_FINAL_BN"):
        assert key in str(err.value)
    for ok in (dict(MTNET__ZERO_INIT="final_bn", MTNET__LAST_MTCONV_ACT=False),
               dict(MTNET__ZERO_INIT="final_bn", RESNET__ZERO_INIT_FINAL_BN=False),
               dict(MTNET__ZERO_INIT="sr", RESNET__ZERO_INIT_FINAL_BN=True)):
        validate_cfg(_cfg(**ok))
    with pytest.raises(ConfigError, match="MTNET.ZERO_INIT"):
        validate_cfg(_cfg(MTNET__ZERO_INIT="bn"))


def test_checkpoint_min_loaded_share_is_a_share():
    validate_cfg(_cfg(TRAIN__CHECKPOINT_MIN_LOADED_SHARE=0.0))
    for bad in (1.5, -0.1):
        with pytest.raises(ConfigError, match="TRAIN.CHECKPOINT_MIN_LOADED_SHARE"):
            validate_cfg(_cfg(TRAIN__CHECKPOINT_MIN_LOADED_SHARE=bad))
