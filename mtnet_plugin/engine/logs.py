"""Logging set-up for entry points, PySlowFast-style ``json_stats`` lines, and the resolved config beside them.

``setup_logging`` is meant for entry points (``tools/run_net.py`` through :func:`mtnet_plugin.engine.run`, or a
spawned worker): library modules only use ``logging.getLogger(__name__)``.

``json_stats`` lines follow PySlowFast's ``log_json_stats``: floats become ``Decimal`` with five
decimals, the dict is dumped by simplejson with ``sort_keys=True``, the line reads ``json_stats: {...}``, and epoch
stats are also appended to ``OUTPUT_DIR/json_stats.log``. A NaN or infinite number (a diverging loss, a NaN
gradient norm) is written as the string ``"nan"``, ``"inf"`` or ``"-inf"``, which JSON allows and ``float()`` reads
back; a log line never fails on it.
"""
import decimal
import logging
import math
import numbers
import os
import sys
from typing import Optional

import simplejson

logger = logging.getLogger(__name__)

_FORMAT = "[%(asctime)s][%(levelname)s] %(filename)s: %(lineno)4d: %(message)s"
_HANDLER_TAG = "_mtnet_plugin_handler"
JSON_STATS_FILE = "json_stats.log"
CONFIG_FILE = "config.yaml"


def _env_rank() -> int:
    """Global rank from the environment (torchrun / spawn worker), 0 when unset."""
    return int(os.environ.get("RANK", "0"))


def setup_logging(output_dir: Optional[str] = None, rank: Optional[int] = None) -> None:
    """Configure the root logger: stdout + ``OUTPUT_DIR/stdout.log`` on the main rank, a file per other rank.

    Safe to call again (handlers added by an earlier call are replaced). Non-main ranks also echo warnings to
    stderr, so errors are never lost; nothing patches ``builtins.print``.

    Args:
        output_dir: where ``stdout.log`` goes; None logs to the console only.
        rank: global rank; read from ``$RANK`` when None.
    """
    rank = _env_rank() if rank is None else rank
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_TAG, False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.INFO)
    formatter = logging.Formatter(_FORMAT, datefmt="%m/%d %H:%M:%S")
    handlers = []
    console = logging.StreamHandler(sys.stdout if rank == 0 else sys.stderr)
    console.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    handlers.append(console)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        name = "stdout.log" if rank == 0 else f"stdout_rank{rank}.log"
        handlers.append(logging.FileHandler(os.path.join(output_dir, name), mode="a"))
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _HANDLER_TAG, True)
        root.addHandler(handler)


def _to_decimal(value):
    """Floats -> Decimal with 5 places, recursively through lists/dicts (PySlowFast's rounding); NaN/inf -> text."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        value = float(value)
        return decimal.Decimal(f"{value:.5f}") if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: _to_decimal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_decimal(v) for v in value]
    return value


def format_json_stats(stats: dict) -> str:
    """The JSON text of one stats dict, as PySlowFast writes it (sorted keys, floats with 5 decimals)."""
    return simplejson.dumps(_to_decimal(stats), sort_keys=True, use_decimal=True)


def log_json_stats(stats: dict, output_dir: Optional[str] = None) -> str:
    """Log ``json_stats: {...}``; with ``output_dir``, also append the JSON line to ``json_stats.log`` there.

    Returns:
        The JSON text written.
    """
    text = format_json_stats(stats)
    logger.info("json_stats: %s", text)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, JSON_STATS_FILE), "a") as f:
            f.write(text + "\n")
    return text


def read_json_stats(path: str) -> "list[dict]":
    """Parse a ``json_stats.log`` (one JSON object per line; ``json_stats:`` prefixes are accepted)."""
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if "json_stats:" in line:
                line = line.split("json_stats:", 1)[1].strip()
            if line.startswith("{"):
                records.append(simplejson.loads(line))
    return records


def save_config(cfg, output_dir: str, name: str = CONFIG_FILE) -> str:
    """Write ``cfg.dump()`` to ``output_dir/name`` and return the path (the caller picks the rank that writes)."""
    path = os.path.join(output_dir, name)
    os.makedirs(output_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(cfg.dump())
    return path
