"""torch.hub entry points of mtnet_plugin: MTNet_S/M/L and the X3D-S/M/L they are built on.

    model = torch.hub.load("path/to/mtnet_plugin", "mtnet_m", source="local", num_classes=10)
    model = torch.hub.load(..., "mtnet_m", pretrained="ckpt.pyth", num_classes=10)   # all but the head if 10 != file's
    embedding = model.forward_features(clip)   # (N, 2048), the classifier's input

``pretrained`` takes a local file or a URL whose file name carries its SHA-256 prefix (torch.hub checks it);
details in mtnet_plugin/integrations/hub.py and docs/ecosystem.md.
"""
# Third-party packages the entry points import (torch.hub checks they are installed before loading).
dependencies = ["torch", "fvcore", "iopath", "numpy"]

from mtnet_plugin.integrations.hub import mtnet_l, mtnet_m, mtnet_s, x3d_l, x3d_m, x3d_s  # noqa: E402,F401
