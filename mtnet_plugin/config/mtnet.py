"""The ``MTNET`` config node: options of the MTNet model (spec: shared design ``mtnet-spec.md``).

Defaults follow the paper's text; every alternative is a spec decision (``spec #N``) or a paper ablation.
``add_mtnet_config`` is safe to call on any fvcore/yacs ``CfgNode`` (ours or PySlowFast's).
"""
from fvcore.common.config import CfgNode


def add_mtnet_config(cfg: CfgNode) -> CfgNode:
    """Add the ``MTNET`` node to ``cfg`` in place (no-op for keys already present) and return ``cfg``."""
    if "MTNET" not in cfg:
        cfg.MTNET = CfgNode()
    node = cfg.MTNET
    defaults = {
        # Eq. 1: share of output channels in the local branch L; C_L = floor(DELTA * C). 1.0 = no P branch.
        "DELTA": 0.875,
        # spec #7: what the branches read: "full" (P: a_L + all input channels) | "split" (P: a_L + the last
        # C_in - floor(DELTA * C_in) channels) | "split_io" (as split, and L reads only the first floor(DELTA * C_in)).
        "P_INPUT": "full",
        # spec #10: kernel of w_LP: "same" (as L, text) | "1x1x1" (authors' code).
        "LP_KERNEL": "same",
        # Table VIc: P-branch pooling: "softpool" (Eq. 5) | "avg" | "max" | "stochastic".
        "POOL": "softpool",
        # Table VIc: "symmetric" pooling also halves T with the same pooling (no frame selection).
        "SYMMETRIC_POOL": False,
        # spec #1: triplet-cosine frame selection (Eq. 6-7): "lowest" (text) | "highest" (authors' code) | "none".
        "SELECTION": "lowest",
        # Table VIb / spec #17: recurrent cell of Squeeze-and-Recursion: "gru" | "lstm" | "lstm_peephole" | "rnn".
        "CELL": "gru",
        # spec #16: layers of the recurrent unit (text: 2).
        "SR_LAYERS": 2,
        # spec #8: whether the block's last MTConv ends with an activation (text: True).
        "LAST_MTCONV_ACT": True,
        # spec #13: head of X3D and MTNet, a name in mtnet_plugin.models.HEAD_REGISTRY (adaptive X3D head).
        "HEAD": "X3DHead",
    }
    for key, value in defaults.items():
        if key not in node:
            node[key] = value
    return cfg
