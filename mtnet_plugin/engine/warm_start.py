"""``MTNET.INIT_FROM_X3D``: start MTNet's training from a PySlowFast-layout X3D checkpoint of the same size.

The mapping is ``mtnet_plugin.models.warm_start`` (what is copied where, documented there and in
docs/ecosystem.md). Applied by the trainer to a new run only: a run that auto-resumes from its own checkpoint
ignores the key, and it cannot be combined with ``TRAIN.CHECKPOINT_FILE_PATH`` (config validation). The counts are
logged, the lists too (INFO), and the full report is written to ``OUTPUT_DIR/init_from_x3d.json``.
"""
import json
import logging
import os

from torch import nn

from mtnet_plugin.models.warm_start import init_from_x3d, summarize

from .checkpoint import CheckpointError, open_checkpoint, unwrap

logger = logging.getLogger(__name__)

KEY = "MTNET.INIT_FROM_X3D"
REPORT_FILE = "init_from_x3d.json"


def warm_start_from_x3d(model: nn.Module, path: str, output_dir: str = "") -> dict:
    """Initialise ``model`` (an MTNet, possibly DDP-wrapped) from the X3D checkpoint ``path``.

    Raises:
        FileNotFoundError, CheckpointError: the file is missing, unreadable, or nothing in it fits this MTNet
            (the message names the file and the key).
    """
    ckpt = open_checkpoint(path, KEY)
    try:
        report = init_from_x3d(unwrap(model), ckpt["model_state"])
    except ValueError as err:
        raise CheckpointError(f"{KEY} = {path}: {err}") from err
    logger.info("%s = %s: %s", KEY, path, summarize(report))
    for kind in ("copied", "local", "not_copied"):
        logger.info("  %s (%d): %s", kind, len(report[kind]), ", ".join(report[kind]))
    logger.info("  from scratch (%d): %s", len(report["from_scratch"]), ", ".join(report["from_scratch"]))
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, REPORT_FILE), "w") as f:
            json.dump({"source": path, **report}, f, indent=1)
    return report
