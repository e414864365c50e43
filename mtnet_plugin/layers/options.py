"""The options of MTConv and MTBlock: one frozen dataclass each, the single home of every default.

A field's ``metadata`` holds what the rest of the package derives from it:

- ``key``: its key in the ``MTNET`` config node. ``mtnet_plugin.config.mtnet`` builds the node's defaults from
  the fields that have one, and :meth:`MTConvOptions.from_node` reads a node back into options (the one
  cfg-to-options mapping, used by the model builders and by config validation). Fields without a key
  (BatchNorm settings) are set by the model builder from ``BN.*``.
- ``choices``: the valid values of a string option; :meth:`MTConvOptions.__post_init__` checks them.

Adding an option = one field here, plus the code that uses it.
"""
import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Tuple

from mtnet_plugin.ops import POOL_METHODS

from .squeeze_recursion import CELLS

P_INPUTS = ("full", "split", "split_io")
LP_KERNELS = ("same", "1x1x1")
SELECTIONS = ("lowest", "highest", "none")
# What a builder's zero-init (RESNET.ZERO_INIT_FINAL_BN) zeroes so an MTBlock starts as the identity
# (docs/spec-decisions.md, "Zero-initialised blocks").
ZERO_INIT_TARGETS = ("sr", "final_bn")


class OptionError(ValueError):
    """An option value that cannot work; ``name`` is the field, ``value`` the value given."""

    def __init__(self, name: str, value: Any, why: str):
        super().__init__(f"{name}={value!r}: {why}")
        self.name, self.value, self.why = name, value, why


def _option(default: Any, key: str = "", choices: Tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"key": key, "choices": choices})


def check_delta(delta: Any) -> float:
    """Eq. 1's delta, the local share of output channels, must be a number in (0, 1]."""
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not 0.0 < delta <= 1.0:
        raise OptionError("delta", delta, "must be in (0, 1] (the local share of channels, Eq. 1)")
    return delta


@dataclass(frozen=True)
class MTConvOptions:
    """What every MTConv of a network shares (Sec. III-A); see :class:`~mtnet_plugin.layers.MTConv`.

    Attributes:
        delta: share of output channels in the local branch L, (0, 1] (Eq. 1); 1.0 builds no P branch.
        p_input: what the branches read: "full" (the text: P reads a_L plus all input channels), "split" (P
            reads a_L plus the last ``C_in - floor(delta * C_in)`` input channels) or "split_io" (as "split",
            and L reads only the first ``floor(delta * C_in)``: inputs and outputs split octave-like, the
            reading whose parameter and FLOP curves have Table VIa's shape; docs/model_zoo.md). A channelwise
            conv always splits its channels this way (docs/spec-decisions.md).
        lp_kernel: kernel of w_LP, "same" as L (the text) or "1x1x1" (the authors' code).
        pool: P's spatial pooling, one of ``mtnet_plugin.ops.POOL_METHODS`` (Eq. 5, Table VIc).
        symmetric_pool: pool 2x2x2 over (T, H, W) instead of selecting frames (Table VIc); needs
            selection "none".
        selection: triplet cosine frame selection (Eq. 6-7): "lowest" (the text), "highest" (the authors'
            code) or "none".
        norm_eps, norm_momentum: of every BatchNorm3d (from ``BN.EPSILON`` / ``BN.MOMENTUM``).
    """

    delta: float = _option(0.875, "DELTA")
    p_input: str = _option("full", "P_INPUT", P_INPUTS)
    lp_kernel: str = _option("same", "LP_KERNEL", LP_KERNELS)
    pool: str = _option("softpool", "POOL", POOL_METHODS)
    symmetric_pool: bool = _option(False, "SYMMETRIC_POOL")
    selection: str = _option("lowest", "SELECTION", SELECTIONS)
    norm_eps: float = _option(1e-5)
    norm_momentum: float = _option(0.1)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata["choices"]:
                if value not in f.metadata["choices"]:
                    raise OptionError(f.name, value, f"must be one of {list(f.metadata['choices'])}")
            elif f.type is bool:
                if not isinstance(value, bool):
                    raise OptionError(f.name, value, "must be True or False")
            elif f.type is int:
                if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                    raise OptionError(f.name, value, "must be a positive integer")
            elif f.type is float and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise OptionError(f.name, value, "must be a number")
        check_delta(self.delta)
        if self.symmetric_pool and self.selection != "none":
            raise OptionError("symmetric_pool", True, f"pools time itself; frame selection {self.selection!r} "
                              "would halve T twice: set selection='none'")

    @classmethod
    def build(cls, options: "MTConvOptions" = None, **overrides: Any) -> "MTConvOptions":
        """``options`` (default: the defaults) with ``overrides`` replaced by name.

        Raises:
            TypeError: an override that names no field.
            OptionError: a value that cannot work.
        """
        options = cls() if options is None else options
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(options)})
        if unknown:
            valid = sorted(f.name for f in dataclasses.fields(options))
            raise TypeError(f"unknown MTNet options {unknown}; valid: {valid}")
        return dataclasses.replace(options, **overrides) if overrides else options

    @classmethod
    def config_defaults(cls) -> Dict[str, Any]:
        """``{MTNET key: default}`` of every field that has a config key."""
        return {f.metadata["key"]: f.default for f in dataclasses.fields(cls) if f.metadata["key"]}

    @classmethod
    def config_key(cls, name: str) -> str:
        """The ``MTNET`` key of field ``name`` ("" when the field has none)."""
        return next(f.metadata["key"] for f in dataclasses.fields(cls) if f.name == name)

    @classmethod
    def from_node(cls, node: Mapping[str, Any], **overrides: Any) -> "MTConvOptions":
        """Options from an ``MTNET`` config node, read by each field's key; a key the node lacks keeps the
        field's default (a node written by an older version). ``overrides`` set fields by name."""
        values = {f.name: node[f.metadata["key"]] for f in dataclasses.fields(cls)
                  if f.metadata["key"] and f.metadata["key"] in node}
        return cls(**values, **overrides)


@dataclass(frozen=True)
class MTBlockOptions(MTConvOptions):
    """MTConv's options plus the block's own (Sec. III-B); see :class:`~mtnet_plugin.layers.MTBlock`.

    Attributes:
        cell: recurrent cell of Squeeze-and-Recursion, one of ``layers.CELLS`` (Table VIb).
        sr_layers: recurrent layers of SR (the text: 2).
        last_act: ReLU after the block's last MTConv (the text) or none (projection convention).
        zero_init: what a builder's zero-init (``RESNET.ZERO_INIT_FINAL_BN``) zeroes: "sr" (Squeeze and
            Recursion's output, every weight still learns) or "final_bn" (the last MTConv's BNs, X3D's rule;
            with ``last_act`` nothing in the block would ever get a gradient). See :class:`MTBlock`.
    """

    cell: str = _option("gru", "CELL", CELLS)
    sr_layers: int = _option(2, "SR_LAYERS")
    last_act: bool = _option(True, "LAST_MTCONV_ACT")
    zero_init: str = _option("sr", "ZERO_INIT", ZERO_INIT_TARGETS)
