"""Classification heads, registered in ``HEAD_REGISTRY`` (contract in ``build.py``).

MTNet keeps X3D's head (spec #13). Unlike PySlowFast's ``X3DHead`` (a fixed ``AvgPool3d`` sized for the train
crop, softmax in eval), this one pools adaptively over whatever (T, H, W) reaches it and always returns
logits: larger test crops, multigrid's smaller crops and any clip length work, and the runtime applies the
activation named by ``head.act`` (docs/design.md "Model contract"). At the train crop the two are the same
function; at a larger crop PySlowFast averages the per-location softmax scores after a sliding pool,
whereas this head pools globally first.
"""
import torch
from torch import nn

from .build import HEAD_REGISTRY

HEAD_ACTIVATIONS = ("softmax", "sigmoid", "none")


@HEAD_REGISTRY.register()
class X3DHead(nn.Module):
    """X3D head with global adaptive pooling (X3D Sec. 3, Table 1 "conv5 / pool5 / fc1 / fc2").

    ::

        conv_5: 1x1x1 conv dim_in -> dim_inner, BN, ReLU
        avg_pool: AdaptiveAvgPool3d(1)
        lin_5: 1x1x1 conv dim_inner -> dim_out (no bias) [+ BN], ReLU
        dropout, projection: Linear(dim_out, num_classes)

    Args:
        dim_in: channels of the last stage (192 for X3D-S/M/L).
        dim_inner: width of conv_5 (432).
        dim_out: width of lin_5 (X3D.DIM_C5, 2048).
        num_classes: classes.
        dropout_rate: dropout before the projection.
        act: activation the runtime applies to the logits (``softmax`` | ``sigmoid`` | ``none``).
        bn_lin5: BN after lin_5 (X3D.BN_LIN5).
        norm_eps, norm_momentum: BatchNorm3d settings.
    """

    def __init__(self, *, dim_in: int, dim_inner: int, dim_out: int, num_classes: int, dropout_rate: float = 0.5,
                 act: str = "softmax", bn_lin5: bool = False, norm_eps: float = 1e-5, norm_momentum: float = 0.1):
        super().__init__()
        if act not in HEAD_ACTIVATIONS:
            raise ValueError(f"head activation must be one of {HEAD_ACTIVATIONS}, got {act!r}")
        self.act = act
        self.conv_5 = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.conv_5_bn = nn.BatchNorm3d(dim_inner, eps=norm_eps, momentum=norm_momentum)
        self.conv_5_relu = nn.ReLU(inplace=True)
        self.avg_pool = nn.AdaptiveAvgPool3d(1)
        self.lin_5 = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.lin_5_bn = nn.BatchNorm3d(dim_out, eps=norm_eps, momentum=norm_momentum) if bn_lin5 else None
        self.lin_5_relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()
        self.projection = nn.Linear(dim_out, num_classes, bias=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, dim_in, T, H, W) -> the classifier's input (N, dim_out): lin_5's output after its ReLU."""
        x = self.avg_pool(self.conv_5_relu(self.conv_5_bn(self.conv_5(x))))
        x = self.lin_5(x)
        if self.lin_5_bn is not None:
            x = self.lin_5_bn(x)
        return self.lin_5_relu(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, dim_in, T, H, W) -> logits (N, num_classes)."""
        return self.projection(self.dropout(self.features(x)))

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply ``self.act`` to logits (N, num_classes): what the runtime does where it needs scores."""
        if self.act == "softmax":
            return logits.softmax(dim=1)
        if self.act == "sigmoid":
            return logits.sigmoid()
        return logits
