"""Eval-mode BatchNorm (+ ReLU) written into a slot of a larger tensor: MTConv's a_L = g(BN(z_L)) (Eq. 3)
in its place in the concatenation of Eq. 2, so inference needs neither BN's own output nor torch.cat.

:func:`inference_into_applies` says where this write-into-slots inference pays: eager fp32 on the CPU with
the C kernels built (``csrc/norm_act.c`` then does the affine + ReLU in one pass). Elsewhere the layers
concatenate, which traces and exports cleanly; :func:`norm_act_into` still gives the same values there.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from . import native


def inference_into_applies(x: torch.Tensor) -> bool:
    """Whether writing inference outputs into slots of a preallocated tensor (:func:`norm_act_into`,
    ``trilinear_resize(out=...)``) is the fast path for x: eager execution, fp32 CPU, kernels built."""
    return native.kernel_eligible(x)


def norm_act_into(z: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                  weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], eps: float, out: torch.Tensor,
                  relu: bool) -> torch.Tensor:
    """``out = relu(batch_norm(z))`` with running statistics (eval mode), without the ReLU when ``relu`` is
    False, written into ``out`` (z's shape; e.g. a channel slot of a larger tensor; it may not share memory
    with z). Returns out."""
    with torch.no_grad():
        scale = torch.rsqrt(running_var + eps)  # eval BN = z * scale + shift per channel
        if weight is not None:
            scale = scale * weight
        shift = -running_mean * scale + (bias if bias is not None else 0.0)
        if native.kernel_eligible(z) and out.dtype == torch.float32 and out.device.type == "cpu":
            return native.affine_act_into(z, scale, shift, out, relu=relu)
        y = F.batch_norm(z, running_mean, running_var, weight, bias, False, 0.0, eps)
        return out.copy_(torch.relu(y) if relu else y)
