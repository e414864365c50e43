"""mtnet_plugin.models: X3D-style builders, heads, registries and FLOP counting (MTNet follows with MTBlock).

Importing this package registers ``X3D`` in ``MODEL_REGISTRY`` and ``X3DHead`` in ``HEAD_REGISTRY`` (each
registering module is imported below; an ImportError propagates).
"""
from . import heads  # noqa: F401  (registers X3DHead)
from . import x3d  # noqa: F401  (registers X3D)
from .build import HEAD_REGISTRY, MODEL_REGISTRY, build_model, get_registered, registered_names
from .flops import model_stats
from .heads import X3DHead
from .presets import PRESET_NAMES, preset, preset_input_shape
from .x3d import X3D, VideoNet, create_x3d, create_x3d_block, init_weights

__all__ = [
    "HEAD_REGISTRY", "MODEL_REGISTRY", "PRESET_NAMES", "VideoNet", "X3D", "X3DHead", "build_model", "create_x3d",
    "create_x3d_block", "get_registered", "init_weights", "model_stats", "preset",
    "preset_input_shape", "registered_names",
]
