"""mtnet_plugin.layers: nn.Modules over ops: MTConv (Eq. 1-4), SqueezeRecursion (Eq. 8-11), MTBlock, their
options (``options.py``), and ``Conv3d`` (``nn.Conv3d`` with a faster CPU backward when channelwise)."""
from .bottleneck import bottleneck_parts
from .mtblock import MTBlock
from .mtconv import MTConv, split_channels
from .cells import PeepholeLSTM
from .conv import Conv3d
from .options import MTBlockOptions, MTConvOptions, OptionError
from .prolonged import FrameSelect, ProlongedDownsample, SpatialPool, TrilinearResize
from .squeeze_recursion import CELLS, SqueezeRecursion, build_cell

__all__ = [
    "CELLS",
    "Conv3d",
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
