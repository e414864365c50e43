"""The ops' one door to the C kernels, and their ``torch.library`` registrations (namespace ``mtnet``).

Each kernel-backed op decides in one function of its module how it runs, by execution mode (docs/design.md,
"CPU kernels: one door"):

- eager: the op's implementation, which runs the C kernel of :mod:`.native` where :func:`native.kernel_eligible`
  (fp32 CPU, kernels built) and an eager PyTorch version otherwise; autograd through a Function whose
  backward is the op's registered backward implementation;
- ``torch.compile`` / ``torch.export``: the registered custom op (``torch.ops.mtnet.*``, with a fake
  implementation for shapes and the same autograd formula), whose implementation is that same function;
- ``torch.jit.trace`` (TorchScript export, the legacy ONNX exporter, fvcore's FLOP counter): the op's
  decomposition into plain aten ops; the same decompositions turn the custom ops of an ExportedProgram into
  aten ops for ONNX (:func:`decompositions`, used by ``program.run_decompositions``).

The eager path calls the implementation directly instead of through the dispatcher: a Python custom op costs
about 70 us per call without autograd and 200 us with it (measured here), several percent of MTNet_M's
CPU forward, which calls these ops a few hundred times.
"""
from typing import Callable, Dict

import torch

_DECOMPOSITIONS: Dict[object, Callable] = {}


def mode() -> str:
    """"trace" under torch.jit.trace, "graph" under torch.compile / torch.export, else "eager"."""
    if torch.jit.is_tracing():
        return "trace"
    if torch.compiler.is_compiling():
        return "graph"
    return "eager"


def add_decomposition(op, fn: Callable) -> None:
    """Register ``fn`` (plain aten ops) as the decomposition of custom op ``op``."""
    _DECOMPOSITIONS[op] = fn


def decompositions() -> Dict[object, Callable]:
    """Custom op overload -> its aten-only decomposition: ``program.run_decompositions(decompositions())``
    leaves an ExportedProgram without ``mtnet`` ops (what ONNX needs)."""
    return dict(_DECOMPOSITIONS)
