"""The ``SYNTHETIC`` config node: the generated multi-tempo demo dataset (``mtnet_plugin.data.synthetic``).

With ``SYNTHETIC.ENABLE``, ``tools/run_net.py`` (or ``tools/make_synthetic.py --cfg``) generates the dataset into
``DATA.PATH_TO_DATA_DIR`` before training starts, when that folder holds no ``train.csv``/``val.csv``/``test.csv``
yet; a folder that already holds them is used as it is, synthetic or not. A distributed run never generates.
``add_synthetic_config`` is safe to call on any fvcore/yacs ``CfgNode`` (ours or PySlowFast's).
"""
from fvcore.common.config import CfgNode


def add_synthetic_config(cfg: CfgNode) -> CfgNode:
    """Add the ``SYNTHETIC`` node to ``cfg`` in place (no-op for keys already present) and return ``cfg``."""
    if "SYNTHETIC" not in cfg:
        cfg.SYNTHETIC = CfgNode()
    node = cfg.SYNTHETIC
    defaults = {
        # Generate the dataset into DATA.PATH_TO_DATA_DIR when its lists are missing (tools/run_net.py, before launch).
        "ENABLE": False,
        # Seed of the generator: the same seed and options give the same videos and lists.
        "SEED": 0,
        # Class family, a key of data.synthetic.PRESETS: tempo | direction | duration | rate | order | pauses.
        # "direction" labels a direction in the image: set DATA.RANDOM_FLIP False with it.
        "PRESET": "tempo",
        # Number of classes, taken in order from the preset's classes (tempo: 2..6; must equal MODEL.NUM_CLASSES).
        "NUM_CLASSES": 4,
        # Clips per class in train.csv / val.csv / test.csv.
        "NUM_TRAIN": 100,
        "NUM_VAL": 20,
        "NUM_TEST": 25,
        # Frames per video; the class timings are in seconds, so keep FRAMES / FPS >= about 1.1 s.
        "FRAMES": 48,
        # Frame height in pixels; WIDTH 0 means round(4 * SIZE / 3) rounded to even (landscape, like Kinetics).
        "SIZE": 32,
        "WIDTH": 0,
        # Frame rate stored in the files (and the one the class timings are converted with).
        "FPS": 30,
        # Standard deviation of the per-pixel Gaussian noise is drawn uniformly in [0, NOISE_STD] per clip.
        "NOISE_STD": 10.0,
        # Each clip has a number of distractor objects drawn uniformly in [0, MAX_DISTRACTORS].
        "MAX_DISTRACTORS": 3,
    }
    for key, value in defaults.items():
        if key not in node:
            node[key] = value
    return cfg
