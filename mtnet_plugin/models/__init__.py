"""mtnet_plugin.models: X3D-style builders, MTNet, heads, registries, presets and FLOP counting.

Importing this package registers ``X3D`` and ``MTNet`` in ``MODEL_REGISTRY`` and ``X3DHead`` in
``HEAD_REGISTRY`` (each registering module is imported below; an ImportError propagates).
"""
import warnings

with warnings.catch_warnings():
    # fvcore.nn's first import scripts its focal loss, and torch deprecates torch.jit.script: a FutureWarning
    # users would see on every start. Import it once here, quietly; other warnings are untouched.
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    import fvcore.nn  # noqa: F401

from . import heads  # noqa: F401  (registers X3DHead)
from . import from_config  # noqa: F401  (registers X3D and MTNet)
from .build import HEAD_REGISTRY, MODEL_REGISTRY, build_model, get_registered, registered_names
from .flops import model_stats
from .heads import X3DHead
from .from_config import MTNet, X3D, args_from_config
from .mtnet import create_mtblock, create_mtnet
from .presets import PRESET_NAMES, preset, preset_input_shape
from .x3d import VideoNet, create_x3d, create_x3d_block, init_weights

__all__ = [
    "HEAD_REGISTRY", "MODEL_REGISTRY", "MTNet", "PRESET_NAMES", "VideoNet", "X3D", "X3DHead", "args_from_config",
    "build_model", "create_mtblock", "create_mtnet", "create_x3d", "create_x3d_block", "get_registered",
    "init_weights", "model_stats", "preset", "preset_input_shape", "registered_names",
]
