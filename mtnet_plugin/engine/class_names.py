"""Class names for reports: from a file named by the caller or the config, a checkpoint, or the data folder."""
import json
import logging
import os
from typing import List, Optional, Sequence, Union

from fvcore.common.config import CfgNode

logger = logging.getLogger(__name__)


def _read_names_file(path: str, num_classes: int) -> List[str]:
    """Names from PySlowFast's json ``{name: id}`` or a text file with one name per line (label order)."""
    with open(path) as f:
        text = f.read()
    if path.endswith(".json") or text.lstrip().startswith("{"):
        mapping = json.loads(text)
        names = [str(i) for i in range(num_classes)]
        for name, idx in mapping.items():
            if 0 <= int(idx) < num_classes:
                names[int(idx)] = str(name)
        return names
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) < num_classes:
        logger.warning("%s lists %d class names for %d classes; the rest are shown as indices", path, len(names),
                       num_classes)
    return names[:num_classes] + [str(i) for i in range(len(names), num_classes)]


def load_class_names(cfg: CfgNode, ckpt: Optional[dict] = None,
                     class_names: Union[None, str, Sequence[str]] = None) -> List[str]:
    """The ``MODEL.NUM_CLASSES`` class names, from the sources listed in the module docstring."""
    n = int(cfg.MODEL.NUM_CLASSES)
    if class_names is not None and not isinstance(class_names, (str, os.PathLike)):
        names = [str(c) for c in class_names]
        if len(names) != n:
            raise ValueError(f"{len(names)} class names given for MODEL.NUM_CLASSES = {n}")
        return names
    files = [os.fspath(class_names)] if class_names is not None else []
    if cfg.TENSORBOARD.CLASS_NAMES_PATH:
        files.append(cfg.TENSORBOARD.CLASS_NAMES_PATH)
    for i, path in enumerate(files):
        if os.path.isfile(path):
            return _read_names_file(path, n)
        if i == 0 and class_names is not None:
            raise FileNotFoundError(f"class-name file not found: {path}")
        logger.warning("class-name file not found: %s (TENSORBOARD.CLASS_NAMES_PATH)", path)
    stored = (ckpt or {}).get("class_names")
    if isinstance(stored, (list, tuple)) and len(stored) == n:
        return [str(c) for c in stored]
    default = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, "classes.txt")
    if cfg.DATA.PATH_TO_DATA_DIR and os.path.isfile(default):
        return _read_names_file(default, n)
    return [str(i) for i in range(n)]
