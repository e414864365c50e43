"""Named variants: X3D-XS/S/M/L and MTNet_XS/S/M/L on the same backbones (Sec. III-C, spec #18).

X3D-S and X3D-M are the same network (width 2.0, depth 2.2) fed different inputs; X3D-L has depth 5.0. Each
MTNet takes its backbone's native input; every FLOP report also gives 16x256x256, the paper's Table I input.
The "XS" pair is not in the MTNet paper (X3D's 4x160 variant), kept for cheap experiments.
"""
from typing import Any, Dict, Tuple

from torch import nn

from .mtnet import create_mtnet
from .x3d import create_x3d

# name -> (builder, depth factor, frames T, train crop, test crop); X3D configs, spec #18.
_PRESETS: Dict[str, Tuple[Any, float, int, int, int]] = {
    "X3D_XS": (create_x3d, 2.2, 4, 160, 182),
    "X3D_S": (create_x3d, 2.2, 13, 160, 182),
    "X3D_M": (create_x3d, 2.2, 16, 224, 256),
    "X3D_L": (create_x3d, 5.0, 16, 312, 356),
    "MTNet_XS": (create_mtnet, 2.2, 4, 160, 182),
    "MTNet_S": (create_mtnet, 2.2, 13, 160, 182),
    "MTNet_M": (create_mtnet, 2.2, 16, 224, 256),
    "MTNet_L": (create_mtnet, 5.0, 16, 312, 356),
}
PRESET_NAMES = tuple(_PRESETS)


def _lookup(name: str) -> Tuple[Any, float, int, int, int]:
    if name not in _PRESETS:
        raise KeyError(f"unknown preset {name!r}; valid: {list(PRESET_NAMES)}")
    return _PRESETS[name]


def preset(name: str, num_classes: int = 400, **overrides: Any) -> nn.Module:
    """Build a named variant (width 2.0, bottleneck 2.25, dim_c1 12, dim_c5 2048).

    Args:
        name: one of ``PRESET_NAMES`` ("MTNet_S", "MTNet_M", "MTNet_L", "X3D_S", "X3D_M", "X3D_L", "*_XS").
        num_classes: classifier width.
        overrides: any keyword argument of ``create_x3d`` / ``create_mtnet`` (e.g. ``delta=0.75``,
            ``cell="lstm"``, ``p_input="split"``).

    Returns:
        The model, initialised, in train mode; it returns logits.
    """
    builder, depth, _, _, _ = _lookup(name)
    args = dict(num_classes=num_classes, width_factor=2.0, depth_factor=depth, bottleneck_factor=2.25, dim_c1=12,
                dim_c5=2048)
    args.update(overrides)
    return builder(**args)


def same_network(a: str, b: str) -> bool:
    """Whether two presets build the same network (they may differ in input only, as X3D-S and X3D-M)."""
    return _lookup(a)[:2] == _lookup(b)[:2]


def preset_input_shape(name: str, *, test: bool = False) -> Tuple[int, int, int, int]:
    """Native input of one view, (C, T, H, W): the train crop, or the 3-crop test crop when ``test``
    (S: 13x160 / 182, M: 16x224 / 256, L: 16x312 / 356; spec #18)."""
    _, _, frames, crop, test_crop = _lookup(name)
    size = test_crop if test else crop
    return (3, frames, size, size)
