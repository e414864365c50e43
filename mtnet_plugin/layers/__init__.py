"""mtnet_plugin.layers: nn.Modules over ops: MTConv (Eq. 1-4), SqueezeRecursion (Eq. 8-11), MTBlock."""
from .mtconv import MTConv, split_channels
from .prolonged import ProlongedDownsample, TrilinearResize

__all__ = ["MTConv", "ProlongedDownsample", "TrilinearResize", "split_channels"]
