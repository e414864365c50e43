"""mtnet_plugin.ops: pure tensor functions (torch only) for MTNet's prolonged branch.

- SoftPool (Eq. 5) and the pooling alternatives of Table VIc: :mod:`.softpool`, :mod:`.pooling`.
- Temporal triplet cosine frame selection (Eq. 6-7): :mod:`.frame_select`.
- Trilinear resize, the I() of Eq. 3: :mod:`.resize`.
- Channelwise 3D convolution with a faster CPU backward (X3D's and MTConv's depthwise convs): :mod:`.channelwise`.
- A stacked GRU (nn.GRU's equations) on the CPU kernel, for Squeeze and Recursion: :mod:`.recurrent`.
- Eval BatchNorm + ReLU into a slot of a larger output: :mod:`.norm_act`.
- Fused CPU kernels behind all of these (plain C, built on first use, validated wrappers): :mod:`.native`;
  each op chooses kernel or eager in one place, and the kernel ops are ``torch.library`` custom ops
  (``torch.ops.mtnet.*``; :mod:`._library`, docs/design.md "CPU kernels: one door").
- ``fp32_region(x)`` / ``compute_dtype(x)``: the fp32-under-autocast rule (spec #19) for layers to reuse.
"""
from ._windows import compute_dtype, fp32_region
from ._library import decompositions
from .channelwise import channelwise_conv3d
from .frame_select import adjacent_cosine, select_frames, selection_scores, triplet_cosine_select, triplet_scores
from .norm_act import inference_into_applies, norm_act_into
from .pooling import (
    POOL_METHODS,
    avg_pool_spatial,
    max_pool_spatial,
    pool_spatial,
    pool_symmetric,
    stochastic_pool_spatial,
)
from .recurrent import gru_sequence
from .resize import trilinear_resize
from .softpool import softpool2d, softpool_spatial, softpool_symmetric

__all__ = [
    "POOL_METHODS",
    "adjacent_cosine",
    "avg_pool_spatial",
    "channelwise_conv3d",
    "compute_dtype",
    "decompositions",
    "fp32_region",
    "gru_sequence",
    "inference_into_applies",
    "max_pool_spatial",
    "norm_act_into",
    "pool_spatial",
    "pool_symmetric",
    "select_frames",
    "selection_scores",
    "softpool2d",
    "softpool_spatial",
    "softpool_symmetric",
    "stochastic_pool_spatial",
    "trilinear_resize",
    "triplet_cosine_select",
    "triplet_scores",
]
