"""mtnet_plugin.layers: nn.Modules over ops: MTConv (Eq. 1-4), SqueezeRecursion (Eq. 8-11), MTBlock, and their
options (``options.py``)."""
from .bottleneck import bottleneck_parts
from .mtblock import MTBlock
from .mtconv import MTConv, split_channels
from .cells import PeepholeLSTM
from .options import MTBlockOptions, MTConvOptions, OptionError
from .prolonged import FrameSelect, ProlongedDownsample, SpatialPool, TrilinearResize
from .squeeze_recursion import CELLS, SqueezeRecursion, build_cell

__all__ = [
    "CELLS",
    "FrameSelect",
    "MTBlock",
    "MTBlockOptions",
    "MTConv",
    "MTConvOptions",
    "OptionError",
    "PeepholeLSTM",
    "ProlongedDownsample",
    "SpatialPool",
    "SqueezeRecursion",
    "TrilinearResize",
    "bottleneck_parts",
    "build_cell",
    "split_channels",
]
