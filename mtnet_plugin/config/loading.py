"""Loading YAML configs and ``--opts`` overrides, with errors that name the key and the file.

Semantics follow fvcore's ``CfgNode.merge_from_file``: ``_BASE_`` (a path or a list of paths,
relative to the including file) is loaded first, later values win, keys unknown to the schema are errors and values
are type-checked against the defaults. Two differences, both deliberate:

- Bases are merged one file at a time, so an error names the file that holds the offending key.
- An int is accepted where the default is a float (``SOLVER.WARMUP_EPOCHS: 35``): yacs rejects it, but nothing is
  gained by that.
"""
import copy
import logging
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import yaml
from fvcore.common.config import BASE_KEY, CfgNode
from iopath.common.file_io import g_pathmgr

from .compat_nodes import UNIMPLEMENTED
from .defaults import get_cfg

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config value or key that cannot be used; the message names the key and, when known, the file."""


def _read_yaml(path: str) -> Dict[str, Any]:
    with g_pathmgr.open(path, "r") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of keys, got {type(data).__name__}")
    return data


def _resolve_base(base: str, including_file: str) -> str:
    base = os.path.expanduser(base)
    if base.startswith(("/", "http://", "https://")):
        return base
    return os.path.join(os.path.dirname(including_file), base)


def _check_and_coerce(cfg: CfgNode, data: Dict[str, Any], prefix: str, source: str) -> Dict[str, Any]:
    """Check every key of ``data`` exists in ``cfg``; turn ints into floats where the default is a float."""
    out = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in cfg:
            raise ConfigError(f"{source}: unknown config key '{full}' (not in the PySlowFast/MTNet schema)")
        default = cfg[key]
        if isinstance(default, CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{full}' is a config node; expected a mapping, got {value!r}")
            value = _check_and_coerce(default, value, full + ".", source)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[key] = value
    return out


def _merge_dict(cfg: CfgNode, data: Dict[str, Any], source: str) -> None:
    data = _check_and_coerce(cfg, data, "", source)
    try:
        cfg.merge_from_other_cfg(CfgNode(data))
    except (KeyError, ValueError, AssertionError) as e:
        # yacs names the key in the message ("... for config key: A.B").
        raise ConfigError(f"{source}: {e}") from e


def merge_file(cfg: CfgNode, path: str, _chain: Tuple[str, ...] = ()) -> None:
    """Merge the YAML file ``path`` (and its ``_BASE_`` files first) into ``cfg`` in place.

    Raises:
        ConfigError: unknown key, wrong type, bad YAML or a ``_BASE_`` cycle; the message starts with the file that
            holds the problem.
        FileNotFoundError: the file or one of its bases does not exist.
    """
    if path in _chain:
        raise ConfigError(f"{path}: _BASE_ cycle: {' -> '.join(_chain + (path,))}")
    if not g_pathmgr.exists(path):
        where = f" (a _BASE_ of {_chain[-1]})" if _chain else ""
        raise FileNotFoundError(f"config file not found: {path}{where}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, None)
    if bases is not None:
        for base in [bases] if isinstance(bases, str) else list(bases):
            merge_file(cfg, _resolve_base(base, path), _chain + (path,))
    _merge_dict(cfg, data, path)


def merge_opts(cfg: CfgNode, opts: Sequence[str]) -> None:
    """Merge ``KEY VALUE`` pairs from the command line (``--opts``) into ``cfg`` in place."""
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(f"--opts: expected KEY VALUE pairs, got an odd number of items: {opts}")
    for key, value in zip(opts[0::2], opts[1::2]):
        if key == BASE_KEY:
            raise ConfigError("--opts: _BASE_ can only be used in files")
        node, parts = cfg, key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, CfgNode) or part not in node:
                raise ConfigError(f"--opts: unknown config key '{key}'")
            if depth < len(parts) - 1:
                node = node[part]
        if isinstance(node[parts[-1]], CfgNode):
            raise ConfigError(f"--opts: '{key}' is a config node, not a key")
        # yacs parses the string with literal_eval and type-checks it against the default.
        parsed = CfgNode._decode_cfg_value(value)
        if isinstance(node[parts[-1]], float) and isinstance(parsed, int) and not isinstance(parsed, bool):
            parsed = float(parsed)
        try:
            cfg.merge_from_list([key, parsed])
        except (KeyError, ValueError, AssertionError) as e:
            raise ConfigError(f"--opts: {e}") from e


def flatten_cfg(node: CfgNode, prefix: str = "") -> Dict[str, Any]:
    """Every leaf of ``node`` by its dotted key, e.g. ``{"SOLVER.BASE_LR": 0.1, ...}``."""
    out = {}
    for key, value in node.items():
        if isinstance(value, CfgNode):
            out.update(flatten_cfg(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def unimplemented_settings(cfg: CfgNode, patterns: Iterable[str] = UNIMPLEMENTED) -> List[Tuple[str, Any, Any]]:
    """``(key, value, default)`` for every key of ``patterns`` whose value in ``cfg`` differs from its default.

    A pattern is a full key (``DATA.MULTI_LABEL``) or a node followed by ``.*`` (``AVA.*``).
    """
    defaults, current = flatten_cfg(get_cfg()), flatten_cfg(cfg)
    patterns = tuple(patterns)
    found = []
    for key, value in current.items():
        if key not in defaults:
            continue
        for p in patterns:
            if key == p or (p.endswith(".*") and key.startswith(p[:-1])):
                if not _same(value, defaults[key]):
                    found.append((key, value, defaults[key]))
                break
    return found


def warn_unimplemented(cfg: CfgNode) -> List[Tuple[str, Any, Any]]:
    """Log one warning per accepted-but-unimplemented key set to a non-default value; return those settings."""
    found = unimplemented_settings(cfg)
    for key, value, default in found:
        logger.warning("config key %s = %r is accepted for PySlowFast compatibility but not implemented by "
                       "mtnet_plugin; it has no effect (default %r)", key, value, default)
    return found


def load_config(cfg_files: Optional[Sequence[str]] = None, opts: Optional[Sequence[str]] = None,
                *, base: Optional[CfgNode] = None) -> CfgNode:
    """Build a config: defaults (or a copy of ``base``), then each file in order, then ``opts``.

    Logs one warning per unimplemented key set to a non-default value. The result is not frozen and not validated;
    call :func:`mtnet_plugin.config.validate_cfg` before reading any data.

    Args:
        cfg_files: YAML files, merged in order (each may use ``_BASE_``).
        opts: ``[KEY, VALUE, KEY, VALUE, ...]`` overrides, as after ``--opts``.
        base: start from a copy of this config instead of :func:`get_cfg`.

    Raises:
        ConfigError: an unknown key or a wrongly typed value, naming the key and the file (or ``--opts``).
    """
    cfg = copy.deepcopy(base) if base is not None else get_cfg()
    if cfg.is_frozen():
        cfg.defrost()
    if isinstance(cfg_files, str):
        cfg_files = [cfg_files]
    for path in cfg_files or []:
        merge_file(cfg, path)
    merge_opts(cfg, opts or [])
    warn_unimplemented(cfg)
    return cfg
