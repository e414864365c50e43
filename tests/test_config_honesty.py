"""Config honesty: every key of the schema (``get_cfg()``) either changes what the runtime does or is reported as
having no effect when it is set. The walk covers the whole schema, so a key added later cannot be forgotten: it must
be read somewhere in the package, or be listed in ``config/compat_nodes.py``'s ``UNIMPLEMENTED`` (which
``load_config`` warns about)."""
import ast
import functools
import logging
import pathlib
import re

import pytest

from mtnet_plugin.config import get_cfg, load_config, unimplemented_settings
from mtnet_plugin.config.loading import flatten_cfg as _flat
from mtnet_plugin.config.compat_nodes import UNIMPLEMENTED

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "mtnet_plugin"
# Where keys are declared (with their defaults and comments), not read.
DECLARATIONS = {PACKAGE / "config" / "defaults.py", PACKAGE / "config" / "compat_nodes.py",
                PACKAGE / "config" / "mtnet.py", PACKAGE / "config" / "synthetic.py"}


@functools.lru_cache(maxsize=None)
def _source() -> str:
    """The package's code without comments and docstrings (a key named only in prose is not read)."""
    text = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in DECLARATIONS:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                body[0] = ast.Pass()
        text.append(ast.unparse(tree))
    return "\n".join(text)


def _no_effect(key: str) -> bool:
    return any(key == p or (p.endswith(".*") and key.startswith(p[:-1])) for p in UNIMPLEMENTED)


@functools.lru_cache(maxsize=None)
def _names() -> "tuple[set, set]":
    """``(dotted, leaves)``: every chain of two or more parts of a dotted name in the source (``cfg.SOLVER.BASE_LR``
    gives ``SOLVER.BASE_LR``, ``cfg.SOLVER``, ...), and every name after a dot or a quote (``.BASE_LR``, ``"DELTA"``)."""
    source = _source()
    dotted = set()
    for chain in re.findall(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", source):
        parts = chain.split(".")
        dotted.update(".".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 2, len(parts) + 1))
    return dotted, set(re.findall(r"[.\"']([A-Za-z_]\w*)", source))


def _read_in(key: str, leaf_count: dict) -> bool:
    """``key`` is read: its dotted path appears (``cfg.SOLVER.BASE_LR``, ``"TRAIN.BATCH_SIZE"``), or its last part
    does (``solver.BASE_LR``, ``node["DELTA"]``) and no other key of the schema outside the no-effect list ends with
    that name."""
    dotted, leaves = _names()
    leaf = key.rsplit(".", 1)[-1]
    return key in dotted or (leaf_count.get(leaf) == 1 and leaf in leaves)


def test_every_key_is_read_or_reported_as_having_no_effect():
    keys = _flat(get_cfg())
    leaf_count = {}
    for key in filter(lambda k: not _no_effect(k), keys):
        leaf = key.rsplit(".", 1)[-1]
        leaf_count[leaf] = leaf_count.get(leaf, 0) + 1
    forgotten = [k for k in keys if not _no_effect(k) and not _read_in(k, leaf_count)]
    assert not forgotten, (f"config keys neither read by mtnet_plugin nor listed in compat_nodes.UNIMPLEMENTED "
                           f"(a user setting one would be silently ignored): {forgotten}")
    assert len(keys) > 350  # the walk saw the whole schema


# No-effect keys the package reads only to refuse them or to say they do nothing (engine/trainer.py, engine/optim.py,
# integrations/slowfast.py).
READ_TO_REFUSE = {"TRAIN.CHECKPOINT_INFLATE", "SOLVER.LARS_ON", "DETECTION.ENABLE"}


def test_no_key_read_by_the_package_is_reported_as_having_no_effect():
    keys = _flat(get_cfg())
    both = [k for k in keys if _no_effect(k) and k not in READ_TO_REFUSE and k in _names()[0]]
    assert not both, (f"keys read by mtnet_plugin but listed in compat_nodes.UNIMPLEMENTED (a user setting one is told "
                      f"it has no effect): {both}; take them off that list")


def _changed(value):
    """A value of the same type that differs from ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1 if value == value and abs(value) != float("inf") else 0.0
    if isinstance(value, str):
        return value + "_changed"
    if isinstance(value, (list, tuple)):
        return type(value)() if value else type(value)([1])
    return 1  # None


def test_every_no_effect_key_is_warned_about_when_set(caplog):
    keys = [k for k in _flat(get_cfg()) if _no_effect(k)]
    assert {"SOLVER.STEP_SIZE", "SOLVER.WARMUP_FACTOR", "MULTIGRID.BN_BASE_SIZE", "RESNET.TRANS_FUNC",
            "RESNET.ZERO_INIT_FINAL_CONV", "RESNET.INPLACE_RELU", "RESNET.STRIDE_1X1", "RESNET.DEPTH",
            "SLOWFAST.ALPHA", "NONLOCAL.LOCATION"} <= set(keys)
    for key in keys:
        cfg = get_cfg()
        node, leaf = key.rsplit(".", 1) if "." in key else ("", key)
        target = cfg
        for part in node.split(".") if node else []:
            target = target[part]
        target[leaf] = _changed(target[leaf])
        assert [k for k, _, _ in unimplemented_settings(cfg)] == [key], key


def test_a_used_key_is_not_reported():
    cfg = get_cfg()
    cfg.RESNET.ZERO_INIT_FINAL_BN = True  # read by models/from_config.py
    cfg.MODEL.HEAD_ACT = "sigmoid"  # read by engine/evaluate.py
    cfg.TASK = "ssl"  # names the checkpoints (engine/checkpoint.py)
    assert unimplemented_settings(cfg) == []


# PySlowFast config layouts that its own loader and step schedule accept: tests/pyslowfast_layouts/ holds one file
# per layout (written for these tests, with their keys and structure). Each must load and validate here, give the LR
# upstream's schedule gives (by hand: LRS[i] x BASE_LR, i the last step <= epoch; linear warm-up to the rate at the
# end of warm-up), and report the keys that have no effect here.
LAYOUTS = pathlib.Path(__file__).resolve().parent / "pyslowfast_layouts"


@pytest.mark.parametrize("name, lrs, no_effect", [
    ("multilabel_charades_style.yaml", {1.0: 0.001 + (0.02 - 0.001) / 2, 35: 0.002, 45: 0.0002},
     {"SLOWFAST.ALPHA", "NONLOCAL.INSTANTIATION", "RESNET.DEPTH", "DATA.MULTI_LABEL", "BN.NUM_SYNC_DEVICES"}),
    ("ssv2_style.yaml", {12: 0.001, 19.5: 0.0001}, {"SLOWFAST.ALPHA", "DATA.REVERSE_INPUT_CHANNEL"}),
    ("kinetics_stepwise_style.yaml", {15: 0.005 + 15 * (0.05 - 0.005) / 30, 100: 0.005, 185: 0.00005},
     {"SLOWFAST.ALPHA", "RESNET.SPATIAL_STRIDES", "NONLOCAL.GROUP"}),
    ("contrastive_finetune_style.yaml", {5: 0.01, 20: 0.0001, 25.9: 0.00001},
     {"DATA.SSL_COLOR_JITTER", "DATA.COLOR_RND_GRAYSCALE"}),
])
def test_pyslowfast_config_layouts_load_validate_and_schedule_as_upstream(name, lrs, no_effect, caplog):
    from mtnet_plugin.config import validate_cfg
    from mtnet_plugin.engine.lr_policy import get_lr_at_epoch

    with caplog.at_level(logging.WARNING):
        cfg = load_config([str(LAYOUTS / name)])
    validate_cfg(cfg, check_devices=False)
    for epoch, lr in lrs.items():
        assert get_lr_at_epoch(cfg, epoch) == pytest.approx(lr), epoch
    reported = {key for key, _, _ in unimplemented_settings(cfg)}
    assert no_effect <= reported and "TASK" not in reported
    assert all(f"config key {key} = " in caplog.text for key in no_effect)
