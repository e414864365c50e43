"""mtnet_plugin.layers: nn.Modules over ops: MTConv (Eq. 1-4), SqueezeRecursion (Eq. 8-11), MTBlock."""
from .mtblock import MTBlock
from .mtconv import MTConv, split_channels
from .cells import PeepholeLSTM
from .prolonged import FrameSelect, ProlongedDownsample, SpatialPool, TrilinearResize
from .squeeze_recursion import CELLS, SqueezeRecursion, build_cell

__all__ = [
    "CELLS",
    "FrameSelect",
    "MTBlock",
    "MTConv",
    "PeepholeLSTM",
    "ProlongedDownsample",
    "SpatialPool",
    "SqueezeRecursion",
    "TrilinearResize",
    "build_cell",
    "split_channels",
]
