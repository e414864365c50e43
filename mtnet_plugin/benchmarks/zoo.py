"""Measured size and cost of the presets beside the published figures (``tools/model_stats.py``).

Every number in the "ours" columns comes from ``model_stats`` (fvcore, multiply-adds, batch 1, one view; see
``flops.py``) on a freshly built model; nothing is tuned toward the published columns, which are quoted
with their source:

- MTNet: Stergiou & Poppe, IJCNN 2021, Table I (K-400, "GFLOPs per view at 256x256", inputs 16x256^2),
  Table VIa (delta sweep, HACS) and Table VIb (recurrent cells, HACS).
- X3D: the PySlowFast model zoo (conv + linear multiply-adds at the train crop, params rounded to 0.1M), and
  for X3D-L also MTNet Table V (24.8 GFLOPs, 6.1M).
"""
import dataclasses
import logging
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from mtnet_plugin.layers import MTBlockOptions
from mtnet_plugin.layers.options import P_INPUTS

from mtnet_plugin.models.flops import model_stats
from mtnet_plugin.models.presets import PRESET_NAMES, preset, preset_input_shape, same_network

logger = logging.getLogger(__name__)

SECTIONS = ("main", "delta", "cell")
DELTAS = (1.0, 7 / 8, 3 / 4, 5 / 8, 1 / 2, 3 / 8, 1 / 4)
CELLS = ("rnn", "lstm", "lstm_peephole", "gru")
PAPER_INPUT = (3, 16, 256, 256)  # Table I: 16 x 256^2 per view (spec #18)

# name -> (params M, GFLOPs per view, source)
PAPER_MAIN: Dict[str, Tuple[float, float, str]] = {
    "MTNet_S": (25.8, 5.8, "MTNet Tab. I (16x256)"),
    "MTNet_M": (25.8, 8.8, "MTNet Tab. I (16x256)"),
    "MTNet_L": (50.1, 17.6, "MTNet Tab. I (16x256)"),
    "X3D_S": (3.8, 1.96, "PySlowFast zoo (13x160)"),
    "X3D_M": (3.8, 4.73, "PySlowFast zoo (16x224)"),
    "X3D_L": (6.2, 18.37, "PySlowFast zoo (16x312); MTNet Tab. V: 6.1M, 24.8"),
}
# (name, delta) -> (GFLOPs, params M), MTNet Table VIa; no 5/8 row for MTNet_L.
PAPER_DELTA: Dict[Tuple[str, float], Tuple[float, float]] = {
    ("MTNet_M", 1.0): (10.8, 29.7), ("MTNet_M", 7 / 8): (8.8, 25.8), ("MTNet_M", 3 / 4): (6.7, 21.8),
    ("MTNet_M", 5 / 8): (4.8, 19.3), ("MTNet_M", 1 / 2): (3.6, 18.6), ("MTNet_M", 3 / 8): (2.6, 19.2),
    ("MTNet_M", 1 / 4): (2.1, 21.0),
    ("MTNet_L", 1.0): (20.6, 53.5), ("MTNet_L", 7 / 8): (17.6, 50.1), ("MTNet_L", 3 / 4): (12.5, 45.3),
    ("MTNet_L", 1 / 2): (7.09, 42.7), ("MTNet_L", 3 / 8): (5.2, 45.3), ("MTNet_L", 1 / 4): (4.1, 47.8),
}
# (name, cell) -> (params M, GFLOPs), MTNet Table VIb.
PAPER_CELL: Dict[Tuple[str, str], Tuple[float, float]] = {
    ("MTNet_S", "rnn"): (24.3, 5.8), ("MTNet_S", "lstm"): (26.5, 5.8), ("MTNet_S", "lstm_peephole"): (26.5, 5.8),
    ("MTNet_S", "gru"): (25.8, 5.8), ("MTNet_M", "rnn"): (24.3, 8.8), ("MTNet_M", "lstm"): (26.5, 8.8),
    ("MTNet_M", "lstm_peephole"): (26.5, 8.8), ("MTNet_M", "gru"): (25.8, 8.8),
}


class _Measurer:
    """Runs ``model_stats`` once per (preset, input, options) and remembers the result."""

    def __init__(self, progress: Optional[Callable[[str], None]]):
        self.cache: Dict[Tuple, Dict[str, Any]] = {}
        self.progress = progress

    def __call__(self, name: str, input_shape: Sequence[int], **overrides: Any) -> Dict[str, Any]:
        defaults = dataclasses.asdict(MTBlockOptions())
        overrides = {k: v for k, v in overrides.items() if defaults.get(k, object()) != v}
        if overrides.get("delta") == 1.0:  # no P branch: nothing for p_input to change
            overrides.pop("p_input", None)
        arch = next(n for n in PRESET_NAMES if same_network(n, name))  # S and M share one measurement
        key = (arch, tuple(input_shape), tuple(sorted(overrides.items())))
        if key not in self.cache:
            model = preset(name, num_classes=400, **overrides)
            self.cache[key] = model_stats(model, input_shape, reuse_repeated_blocks=True)
            del model
            unsupported = self.cache[key]["unsupported_ops"]
            if unsupported:
                logger.warning("%s %s: unsupported ops %s", name, overrides, unsupported)
            if self.progress is not None:
                self.progress(f"{name} {tuple(input_shape)} {overrides}: {self.cache[key]['gflops']:.3f} GFLOPs")
        return self.cache[key]


def _fmt_shape(shape: Sequence[int]) -> str:
    return f"{shape[1]}x{shape[2]}x{shape[3]}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _fraction(delta: float) -> str:
    return "1" if delta == 1 else f"{round(delta * 8)}/8"


def _main(measure: _Measurer) -> List[str]:
    names = ("X3D_S", "X3D_M", "X3D_L", "MTNet_S", "MTNet_M", "MTNet_L")
    rows = []
    for name in names:
        native = preset_input_shape(name)
        for shape in (native, PAPER_INPUT):
            s = measure(name, shape)
            p_params, p_gflops, source = PAPER_MAIN[name]
            rows.append([name, _fmt_shape(shape), f"{s['params'] / 1e6:.2f}", f"{s['gflops']:.2f}",
                         f"{s['gflops_weighted']:.2f}", len(s["unsupported_ops"]), p_params, p_gflops, source])
    return ["## Presets at native input and at 16x256x256", ""] + _table(
        ["model", "input", "params (M)", "GFLOPs", "GFLOPs conv+linear+rec.", "unsupported ops",
         "paper params (M)", "paper GFLOPs", "paper source"], rows)


def affine_fit(ours: Sequence[float], paper: Sequence[float]) -> Tuple[float, float, float]:
    """Least-squares ``paper ~ a + b * ours`` over paired rows. Returns (a, b, largest |residual|).

    A shape test: the paper's network is 2-3 times the size of ours (docs/model_zoo.md), so only an offset and
    a scale are fitted; a small residual means our curve over delta has the paper's shape.
    """
    n = len(ours)
    mean_x, mean_y = sum(ours) / n, sum(paper) / n
    var = sum((x - mean_x) ** 2 for x in ours)
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(ours, paper)) / var if var > 0 else 0.0
    a = mean_y - b * mean_x
    return a, b, max(abs(y - a - b * x) for x, y in zip(ours, paper))


def _delta(measure: _Measurer) -> List[str]:
    rows, fits = [], []
    for name in ("MTNet_M", "MTNet_L"):
        measured = {}
        for delta in DELTAS:
            cells = [name, _fraction(delta)]
            for p_input in P_INPUTS:
                s = measure(name, PAPER_INPUT, delta=delta, p_input=p_input)
                measured[p_input, delta] = (s["params"] / 1e6, s["gflops"])
                cells += [f"{s['params'] / 1e6:.2f}", f"{s['gflops']:.2f}"]
            paper = PAPER_DELTA.get((name, delta))
            cells += [paper[1], paper[0]] if paper else ["-", "-"]
            rows.append(cells)
        paired = [d for d in DELTAS if (name, d) in PAPER_DELTA]
        for p_input in P_INPUTS:
            params = [measured[p_input, d][0] for d in DELTAS]
            fit_params, fit_flops = (
                affine_fit([measured[p_input, d][k] for d in paired], [PAPER_DELTA[name, d][1 - k] for d in paired])
                for k in (0, 1)
            )
            fits.append([name, p_input, _fraction(DELTAS[params.index(min(params))]),
                         f"{fit_params[0]:.1f} + {fit_params[1]:.2f} x ours", f"{fit_params[2]:.2f}",
                         f"{fit_flops[0]:.2f} + {fit_flops[1]:.2f} x ours", f"{fit_flops[2]:.2f}"])
    header = ["model", "delta"]
    for p_input in P_INPUTS:
        header += [f"{p_input}: params (M)", f"{p_input}: GFLOPs"]
    return (["## Channel ratio delta (Table VIa), 16x256x256", ""]
            + _table(header + ["paper params (M)", "paper GFLOPs"], rows)
            + ["", "Fit of the paper's rows to ours, paper = a + b x ours (least squares); the paper's params "
               "minimum is at delta 4/8 for both models.", ""]
            + _table(["model", "P_INPUT", "our params minimum at delta", "params fit (M)",
                      "params max residual (M)", "GFLOPs fit", "GFLOPs max residual"], fits))


def _cell(measure: _Measurer) -> List[str]:
    rows = []
    for name in ("MTNet_S", "MTNet_M"):
        shape = preset_input_shape(name)
        for cell in CELLS:
            s = measure(name, shape, cell=cell)
            paper = PAPER_CELL[(name, cell)]
            rows.append([name, _fmt_shape(shape), cell, f"{s['params'] / 1e6:.2f}", f"{s['gflops']:.2f}",
                         paper[0], paper[1]])
    return ["## Recurrent cell of SR (Table VIb), native input", ""] + _table(
        ["model", "input", "cell", "params (M)", "GFLOPs", "paper params (M)", "paper GFLOPs"], rows)


def zoo_report(sections: Sequence[str] = SECTIONS, progress: Optional[Callable[[str], None]] = None) -> str:
    """Markdown tables of params and GFLOPs per view: presets (native input and 16x256x256), the delta
    sweep of Table VIa for MTNet_M/L in every P-input mode (spec #7) with a fit of the paper's rows to each, and
    the cell sweep of Table VIb.

    Args:
        sections: any of ``SECTIONS``.
        progress: called with one line per measured model (e.g. ``print``), or None.

    Returns:
        The report, one markdown table per section.
    """
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown sections {unknown}; valid: {list(SECTIONS)}")
    measure = _Measurer(progress)
    builders = {"main": _main, "delta": _delta, "cell": _cell}
    lines: List[str] = []
    for section in sections:
        lines += builders[section](measure) + [""]
    return "\n".join(lines)
