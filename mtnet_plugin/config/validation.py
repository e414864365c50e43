"""Checks that reject configs which cannot work, before any data is read, and derived settings.

``validate_cfg`` raises :class:`~mtnet_plugin.config.loading.ConfigError` naming the first offending key.
``assert_and_infer_cfg`` is PySlowFast's entry point of the same name: it validates and returns a NEW config with
the derived values (learning rates scaled by NUM_SHARDS when ``SOLVER.BASE_LR_SCALE_NUM_SHARDS``), leaving its
argument untouched.
"""
import logging
import numbers
from typing import Any, Iterable, Optional

from fvcore.common.config import CfgNode

from mtnet_plugin.layers.options import MTBlockOptions, OptionError

from .loading import ConfigError

logger = logging.getLogger(__name__)

_LR_POLICIES = ("cosine", "steps_with_relative_lrs")
_OPTIMIZERS = ("sgd", "adam", "adamw", "mt_adamw")
_ENSEMBLE = ("sum", "max")
_CHECKPOINT_TYPES = ("pytorch", "caffe2")


def _fail(key: str, value: Any, why: str) -> None:
    raise ConfigError(f"{key} = {value!r}: {why}")


def _int(cfg: CfgNode, key: str, minimum: int) -> int:
    value = _get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(key, value, "must be an integer")
    if value < minimum:
        _fail(key, value, f"must be >= {minimum}")
    return int(value)


def _num(cfg: CfgNode, key: str, minimum: float, strict: bool = False) -> float:
    value = _get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(key, value, "must be a number")
    if value < minimum or (strict and value == minimum):
        _fail(key, value, f"must be {'>' if strict else '>='} {minimum}")
    return float(value)


def _choice(cfg: CfgNode, key: str, choices) -> str:
    value = _get(cfg, key)
    if value not in choices:
        _fail(key, value, f"must be one of {list(choices)}")
    return value


def _get(cfg: CfgNode, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _check_runtime(cfg: CfgNode, check_devices: bool) -> None:
    num_gpus = _int(cfg, "NUM_GPUS", 0)
    num_shards = _int(cfg, "NUM_SHARDS", 1)
    shard_id = _int(cfg, "SHARD_ID", 0)
    if shard_id >= num_shards:
        _fail("SHARD_ID", shard_id, f"must be < NUM_SHARDS ({num_shards})")
    if check_devices and num_gpus > 0:
        import torch

        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if num_gpus > available:
            _fail("NUM_GPUS", num_gpus, f"only {available} CUDA device(s) available (use NUM_GPUS 0 for CPU)")
    # Per-process batch = BATCH_SIZE / max(1, NUM_GPUS); it must divide evenly and be >= 1.
    for key in ("TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE"):
        batch = _int(cfg, key, 1)
        if batch % max(1, num_gpus):
            _fail(key, batch, f"must be divisible by NUM_GPUS ({num_gpus}): it is split evenly over the processes")
    _int(cfg, "RNG_SEED", 0)
    _int(cfg, "LOG_PERIOD", 1)
    _int(cfg, "DATA_LOADER.NUM_WORKERS", 0)
    _int(cfg, "TRAIN.EVAL_PERIOD", 1)
    _int(cfg, "TRAIN.CHECKPOINT_PERIOD", 1)
    _choice(cfg, "TRAIN.CHECKPOINT_TYPE", _CHECKPOINT_TYPES)
    _choice(cfg, "TRAIN.NONFINITE_GRAD", ("stop", "skip"))
    _int(cfg, "TRAIN.NONFINITE_GRAD_MAX_SKIPS", 0)
    _check_signals(cfg, "TRAIN.PREEMPT_SIGNALS")
    _choice(cfg, "TEST.CHECKPOINT_TYPE", _CHECKPOINT_TYPES)
    if cfg.BN.USE_PRECISE_STATS:
        _int(cfg, "BN.NUM_BATCHES_PRECISE", 0)


def _check_signals(cfg: CfgNode, key: str) -> None:
    import signal

    names = _get(cfg, key)
    allowed = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGHUP", "SIGCONT", "SIGXCPU")
    if not isinstance(names, (list, tuple)) or any(n not in allowed or not hasattr(signal, n) for n in names):
        _fail(key, names, f"must list signal names out of {list(allowed)}")


def _check_data(cfg: CfgNode) -> None:
    _int(cfg, "DATA.NUM_FRAMES", 1)
    _int(cfg, "DATA.SAMPLING_RATE", 1)
    _num(cfg, "DATA.TARGET_FPS", 0, strict=True)
    _num(cfg, "DATA.TRAIN_JITTER_FPS", 0)
    _choice(cfg, "DATA.DECODING_BACKEND", ("pyav", "torchcodec", "torchvision"))  # data/decoder.py BACKENDS
    _int(cfg, "DATA.DECODE_RETRIES", 0)
    _int(cfg, "DATA.MAX_REPLACEMENTS", 0)
    if cfg.DATA.PATH_LABEL_SEPARATOR == "":
        _fail("DATA.PATH_LABEL_SEPARATOR", "", "must not be empty")
    channels = list(cfg.DATA.INPUT_CHANNEL_NUM)
    if not channels or channels[0] != 3:
        _fail("DATA.INPUT_CHANNEL_NUM", channels, "the first pathway must take 3 (RGB) channels")
    for key in ("DATA.MEAN", "DATA.STD"):
        value = list(_get(cfg, key))
        if len(value) != 3 or not all(isinstance(v, numbers.Real) for v in value):
            _fail(key, value, "must list 3 numbers (R, G, B)")
    if any(v <= 0 for v in cfg.DATA.STD):
        _fail("DATA.STD", list(cfg.DATA.STD), "every entry must be > 0")
    scales = list(cfg.DATA.TRAIN_JITTER_SCALES)
    if len(scales) != 2 or not all(isinstance(s, numbers.Integral) and s > 0 for s in scales) or scales[0] > scales[1]:
        _fail("DATA.TRAIN_JITTER_SCALES", scales, "must be [min, max] positive integers with min <= max")
    crop = _int(cfg, "DATA.TRAIN_CROP_SIZE", 1)
    if crop > scales[0]:
        _fail("DATA.TRAIN_CROP_SIZE", crop,
              f"larger than the smallest training short side DATA.TRAIN_JITTER_SCALES[0] = {scales[0]}")
    test_crop = _int(cfg, "DATA.TEST_CROP_SIZE", 1)
    crops = _int(cfg, "TEST.NUM_SPATIAL_CROPS", 1)
    if crops not in (1, 3):
        _fail("TEST.NUM_SPATIAL_CROPS", crops, "must be 1 (centre) or 3 (two ends and centre)")
    # With 1 crop the test short side is TRAIN_JITTER_SCALES[0]; with 3 it is TEST_CROP_SIZE itself.
    if crops == 1 and test_crop > scales[0]:
        _fail("DATA.TEST_CROP_SIZE", test_crop, "larger than the 1-crop test short side "
              f"DATA.TRAIN_JITTER_SCALES[0] = {scales[0]}")
    _int(cfg, "TEST.NUM_ENSEMBLE_VIEWS", 1)
    _choice(cfg, "DATA.ENSEMBLE_METHOD", _ENSEMBLE)
    if cfg.MULTIGRID.SHORT_CYCLE:
        factors = list(cfg.MULTIGRID.SHORT_CYCLE_FACTORS)
        if len(factors) != 2 or not all(isinstance(f, numbers.Real) and 0 < f <= 1 for f in factors):
            _fail("MULTIGRID.SHORT_CYCLE_FACTORS", factors, "must be two factors in (0, 1]")


def _check_model(cfg: CfgNode) -> None:
    _int(cfg, "MODEL.NUM_CLASSES", 1)
    arch = cfg.MODEL.ARCH
    known = list(cfg.MODEL.SINGLE_PATHWAY_ARCH) + list(cfg.MODEL.MULTI_PATHWAY_ARCH)
    if arch not in known:
        _fail("MODEL.ARCH", arch, f"unknown arch; known: {known} (MODEL.SINGLE_PATHWAY_ARCH / MULTI_PATHWAY_ARCH)")
    _choice(cfg, "MODEL.HEAD_ACT", ("softmax", "sigmoid", "none"))  # engine/evaluate.py applies it to test scores
    rate = _num(cfg, "MODEL.DROPOUT_RATE", 0)
    if rate >= 1:
        _fail("MODEL.DROPOUT_RATE", rate, "must be < 1")


def _check_mtnet(cfg: CfgNode) -> None:
    """The MTNET node through the model's own option checks (``layers/options.py``), naming the key."""
    if "MTNET" not in cfg:
        return
    try:
        MTBlockOptions.from_node(cfg.MTNET)
    except OptionError as e:
        _fail(f"MTNET.{MTBlockOptions.config_key(e.name)}", e.value, e.why)
    # Zeroed BN weights followed by a ReLU get a zero gradient forever (ReLU'(0) = 0): no parameter of any
    # MTBlock would ever learn (docs/spec-decisions.md, "Zero-initialised blocks").
    if (cfg.MTNET.get("ZERO_INIT") == "final_bn" and cfg.MTNET.get("LAST_MTCONV_ACT", True)
            and cfg.RESNET.ZERO_INIT_FINAL_BN):
        _fail("MTNET.ZERO_INIT", "final_bn",
              "with RESNET.ZERO_INIT_FINAL_BN True and MTNET.LAST_MTCONV_ACT True, the zeroed BNs of every "
              "MTBlock's last MTConv feed a ReLU whose gradient at 0 is 0, so no MTBlock parameter ever gets a "
              "gradient; use MTNET.ZERO_INIT sr (the default), MTNET.LAST_MTCONV_ACT False or "
              "RESNET.ZERO_INIT_FINAL_BN False")
    init = cfg.MTNET.get("INIT_FROM_X3D", "")
    if not isinstance(init, str):
        _fail("MTNET.INIT_FROM_X3D", init, "must be a path (a PySlowFast X3D checkpoint) or empty")
    if init and cfg.TRAIN.CHECKPOINT_FILE_PATH:
        _fail("MTNET.INIT_FROM_X3D", init, f"and TRAIN.CHECKPOINT_FILE_PATH = {cfg.TRAIN.CHECKPOINT_FILE_PATH!r} both "
              "initialise the model: set one")


def _check_checkpoint(cfg: CfgNode) -> None:
    share = _num(cfg, "TRAIN.CHECKPOINT_MIN_LOADED_SHARE", 0)
    if share > 1:
        _fail("TRAIN.CHECKPOINT_MIN_LOADED_SHARE", share, "must be in [0, 1] (a share of the model's parameters)")


def _check_model_name(cfg: CfgNode, model_name: Optional[str], registered: Optional[Iterable[str]]) -> None:
    if registered is None:
        return
    registered = sorted(registered)
    name = model_name or cfg.MODEL.MODEL_NAME
    if name not in registered:
        via = f" (resolves to {name!r})" if name != cfg.MODEL.MODEL_NAME else ""
        _fail("MODEL.MODEL_NAME", cfg.MODEL.MODEL_NAME, f"not a registered model{via}; registered: {registered}")


def _check_solver(cfg: CfgNode) -> None:
    max_epoch = _int(cfg, "SOLVER.MAX_EPOCH", 1)
    base_lr = _num(cfg, "SOLVER.BASE_LR", 0, strict=True)
    warmup = _num(cfg, "SOLVER.WARMUP_EPOCHS", 0)
    if warmup >= max_epoch:
        _fail("SOLVER.WARMUP_EPOCHS", warmup, f"must be < SOLVER.MAX_EPOCH ({max_epoch})")
    _num(cfg, "SOLVER.WARMUP_START_LR", 0)
    _num(cfg, "SOLVER.WEIGHT_DECAY", 0)
    _num(cfg, "SOLVER.MOMENTUM", 0)
    _num(cfg, "SOLVER.CONV_WEIGHT_LR_MULT", 0)
    policy = _choice(cfg, "SOLVER.LR_POLICY", _LR_POLICIES)
    _choice(cfg, "SOLVER.OPTIMIZING_METHOD", _OPTIMIZERS)
    if policy == "cosine":
        end = _num(cfg, "SOLVER.COSINE_END_LR", 0)
        if end >= base_lr:
            _fail("SOLVER.COSINE_END_LR", end, f"must be < SOLVER.BASE_LR ({base_lr})")
    elif not cfg.MULTIGRID.LONG_CYCLE:  # a long cycle fills STEPS / LRS in itself
        _check_steps(cfg, max_epoch)


def _check_steps(cfg: CfgNode, max_epoch: int) -> None:
    """``steps_with_relative_lrs`` as PySlowFast reads it (engine/lr_policy.py): epoch ``e`` gets ``LRS[i]`` with ``i``
    the last index of ``STEPS + [MAX_EPOCH]`` that is ``<= e``. So ``LRS`` needs one rate for each step below
    ``MAX_EPOCH``; further rates are never reached (PySlowFast's stock Charades / SSv2 / Kinetics stepwise configs
    list six for three or four steps), and a last step equal to ``MAX_EPOCH`` needs none (its AVA fine-tuning ones).
    """
    steps, lrs = list(cfg.SOLVER.STEPS), list(cfg.SOLVER.LRS)
    if not steps:
        _fail("SOLVER.STEPS", steps, "steps_with_relative_lrs needs the epochs of its steps")
    if not all(isinstance(s, numbers.Real) and not isinstance(s, bool) for s in steps) or steps != sorted(steps) \
            or steps[-1] > max_epoch:
        _fail("SOLVER.STEPS", steps, f"must be increasing epochs <= SOLVER.MAX_EPOCH ({max_epoch})")
    if not all(isinstance(r, numbers.Real) and not isinstance(r, bool) and r >= 0 for r in lrs):
        _fail("SOLVER.LRS", lrs, "must list relative rates >= 0")
    reached = sum(1 for s in steps if s < max_epoch)
    if len(lrs) < reached:
        _fail("SOLVER.LRS", lrs, f"needs a relative rate for each of the {reached} SOLVER.STEPS below SOLVER.MAX_EPOCH "
                                 f"({max_epoch}), has {len(lrs)}")
    if steps[0] > 0:
        logger.warning("SOLVER.STEPS starts at epoch %s: epochs before it use SOLVER.LRS[0] (PySlowFast would index "
                       "LRS[-1] there); start STEPS at 0 to say what you mean", steps[0])


def validate_cfg(cfg: CfgNode, *, check_devices: bool = True, model_name: Optional[str] = None,
                 registered_models: Optional[Iterable[str]] = None) -> CfgNode:
    """Reject values that cannot work, naming the key; return ``cfg`` unchanged.

    Args:
        cfg: a full config (from :func:`mtnet_plugin.config.get_cfg` / ``load_config``).
        check_devices: also require ``NUM_GPUS`` <= the visible CUDA devices (off for checking config files on a
            machine without the GPUs they are written for).
        model_name: the registry name the config resolves to (``models.build.model_name_from_config(cfg)``;
            default ``MODEL.MODEL_NAME``). The config floor cannot import the models floor, so the caller passes it.
        registered_models: names in the model registry; when given, an unregistered model name is rejected.

    Raises:
        ConfigError: the first impossible value, e.g. ``TRAIN.BATCH_SIZE = 30: must be divisible by NUM_GPUS``.
    """
    _check_runtime(cfg, check_devices)
    _check_data(cfg)
    _check_model(cfg)
    _check_mtnet(cfg)
    _check_checkpoint(cfg)
    _check_model_name(cfg, model_name, registered_models)
    _check_solver(cfg)
    return cfg


def assert_and_infer_cfg(cfg: CfgNode, **validate_kwargs) -> CfgNode:
    """Validate ``cfg`` and return a new, frozen config with the derived settings applied.

    Derived: with ``SOLVER.BASE_LR_SCALE_NUM_SHARDS``, ``BASE_LR``, ``WARMUP_START_LR`` and ``COSINE_END_LR`` are
    multiplied by ``NUM_SHARDS`` and the flag is cleared, so that deriving twice cannot scale twice.
    ``validate_kwargs`` go to :func:`validate_cfg`.
    """
    validate_cfg(cfg, **validate_kwargs)
    out = cfg.clone()
    out.defrost()
    if out.SOLVER.BASE_LR_SCALE_NUM_SHARDS and out.NUM_SHARDS != 1:
        for key in ("BASE_LR", "WARMUP_START_LR", "COSINE_END_LR"):
            out.SOLVER[key] = out.SOLVER[key] * out.NUM_SHARDS
        logger.info("SOLVER.BASE_LR scaled by NUM_SHARDS=%d to %g", out.NUM_SHARDS, out.SOLVER.BASE_LR)
    out.SOLVER.BASE_LR_SCALE_NUM_SHARDS = False
    out.freeze()
    return out
