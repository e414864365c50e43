"""Wall-clock benchmark of MTNet beside X3D: latency, peak memory, throughput, the MTNet / X3D
ratios, the share of MTNet's forward time per part, and (through :mod:`mtnet_plugin.benchmarks.loader_benchmark`)
the data loader's clip rate beside the model's training step rate.

Method (stated in every report):

- All models are built first, then measured in ONE process, interleaved: each repetition runs every model's
  eval forward, then every model's train forward+backward, so that a change in machine load hits all models
  alike. ``warmup`` repetitions are discarded. Latencies are per batch; the ratio MTNet / X3D of a
  same-size pair (``MTNet_M`` / ``X3D_M``, or any ``MTNet*`` / ``X3D*`` labels with the same suffix) is per
  clip since both run the same batch.
- Forward: ``model.eval()`` under ``torch.inference_mode()``. Forward+backward: ``model.train()``, gradients
  set to None, ``model(x).float().sum().backward()`` (no optimiser step).
- CPU times with ``time.perf_counter``; CUDA times with CUDA events, AMP (``amp_dtype`` autocast, float16 by
  default; bfloat16 is what the trainer uses where the GPU supports it) on and off, or AMP only.
- Peak memory: CUDA ``torch.cuda.max_memory_allocated`` minus the memory allocated before the step; CPU:
  ``torch.profiler`` with ``profile_memory=True``, the peak of the running sum of allocations minus frees
  over one step, at op granularity (tracemalloc does not see torch's allocator). Parameters and the input
  are allocated before the step and not counted; parameter gradients are.
- Parts: one profiled eval forward (fp32) with a ``record_function`` label around every leaf module of a part
  (see :func:`part_of`); a part's time is the inclusive CPU time of its labels on the CPU, and on CUDA the GPU
  time of the kernels launched inside them ("rest" then also holds no idle time: the shares are of kernel
  time, not of wall time); "rest" is the forward's total minus the parts (residual adds, concatenations, slicing, the head's pooling, ...). Profiling adds a
  fixed overhead per op, which inflates parts made of many small ops; the shares are indicative.

json layout (what :func:`run_benchmark` returns and ``--json`` writes):

- ``models.<label>``: ``fwd_ms``, ``fwd_bwd_ms``, ``peak_mem_mb`` (the issue's public keys) and more, for the
  primary run: fp32 (or, when only AMP was run, AMP). ``pairs."MTNet_M/X3D_M"``: ``ratio_fwd``,
  ``ratio_fwd_bwd`` (MTNet / X3D of the same size), ``ratio_fwd_bwd_min``, ``ratio_peak_mem`` of that run.
  These two are the same dicts as ``results.fp32.models`` and ``results.fp32.pairs``.
- ``results.<fp32|amp>.models`` / ``.pairs``: every precision that was run (``amp`` on CUDA only).
- ``machine``, ``settings``, ``parts.<label>`` (CPU), ``loader`` (with ``--loader``).

Shape legend: N batch, T frames, S crop size.
"""
import contextlib
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from mtnet_plugin.engine.cli_values import parse_pair
from mtnet_plugin.layers import FrameSelect, MTConv, SpatialPool, SqueezeRecursion, TrilinearResize
from mtnet_plugin.models import PRESET_NAMES, preset, preset_input_shape
from mtnet_plugin.ops import native

from .loader_benchmark import format_loader, loader_report


PARTS = ("L conv", "P conv", "other conv", "normalisation", "activation", "SoftPool", "frame selection",
         "interpolation", "recurrent unit", "rest")
CONV_NORM_PARTS = ("L conv", "P conv", "other conv", "normalisation")
MEMORY_METHOD = {
    "cpu": "torch.profiler profile_memory: peak running sum of allocations - frees over one step (op granularity)",
    "cuda": "torch.cuda.max_memory_allocated during the step minus allocated before it",
}
_LABEL = "bench_part::"


def machine_info(device: torch.device) -> Dict[str, Any]:
    """Machine description for the report: CPU model, cores, torch threads, load average, GPU name, and whether
    the fused CPU kernels run ("loaded") or why not (they change the CPU timings of MTNet)."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info = dict(cpu=cpu, cores=os.cpu_count(), threads=torch.get_num_threads(), torch=torch.__version__,
                device=str(device), loadavg=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                cpu_kernels=native.reason())
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def parse_input(text: str) -> Tuple[int, int]:
    """``"16x224"`` -> (T, S): :func:`~mtnet_plugin.engine.cli_values.parse_pair` with this option's messages."""
    return parse_pair(text, "--input", "TxS (frames x crop), e.g. '16x224'")


def build_named_model(name: str, num_classes: int = 400) -> Tuple[nn.Module, Tuple[int, int]]:
    """A preset by name (``PRESET_NAMES``) and its native (T, S)."""
    if name not in PRESET_NAMES:
        raise KeyError(f"unknown model {name!r}: use a preset ({', '.join(PRESET_NAMES)}) or --cfg FILE")
    _, t, s, _ = preset_input_shape(name)
    return preset(name, num_classes=num_classes), (t, s)


def pairs_of(labels: Sequence[str]) -> List[Tuple[str, str]]:
    """Same-size (MTNet, X3D) pairs: ``MTNet<suffix>`` with ``X3D<suffix>``, e.g. MTNet_M / X3D_M."""
    out = []
    for a in labels:
        if a.startswith("MTNet"):
            b = "X3D" + a[len("MTNet"):]
            if b in labels:
                out.append((a, b))
    return out


# ---------------------------------------------------------------------------------------------- timing
AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _autocast(device: torch.device, amp: bool, dtype: torch.dtype = torch.float16):
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=amp and device.type == "cuda")


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    """Milliseconds of one call of fn (CUDA events on CUDA)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def _forward(model: nn.Module, x: torch.Tensor, device: torch.device, amp: bool,
             dtype: torch.dtype = torch.float16) -> Callable[[], None]:
    def run():
        model.eval()
        with torch.inference_mode(), _autocast(device, amp, dtype):
            model(x)

    return run


def _forward_backward(model: nn.Module, x: torch.Tensor, device: torch.device, amp: bool,
                      dtype: torch.dtype = torch.float16) -> Callable[[], None]:
    def run():
        model.train()
        for p in model.parameters():
            p.grad = None
        with _autocast(device, amp, dtype):
            out = model(x)
        out.float().sum().backward()

    return run


def peak_memory_mb(fn: Callable[[], None], device: torch.device) -> float:
    """Peak memory (MB, 1e6 bytes) allocated by one call of fn (``MEMORY_METHOD``)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 1e6
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    running = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        peak = max(peak, running)
    return peak / 1e6


# ----------------------------------------------------------------------------------------------- parts
def part_of(name: str, module: nn.Module, parents: Dict[str, nn.Module]) -> Optional[str]:
    """The part (one of ``PARTS``) a leaf module's time belongs to, or None for a module not labelled."""
    parent = parents.get(name.rsplit(".", 1)[0] if "." in name else "")
    leaf = name.rsplit(".", 1)[-1]
    if isinstance(module, SqueezeRecursion):
        return "recurrent unit"
    if isinstance(module, SpatialPool):
        return "SoftPool" if module.method == "softpool" else f"{module.method} pool"
    if isinstance(module, FrameSelect):
        return "frame selection"
    if isinstance(module, TrilinearResize):
        return "interpolation"
    if isinstance(module, nn.modules.conv._ConvNd):
        if isinstance(parent, MTConv):
            return "L conv" if leaf == "conv_local" else "P conv"
        return "other conv"
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return "normalisation"
    if isinstance(module, (nn.ReLU, nn.SiLU, nn.Sigmoid, nn.Softmax)):
        return "activation"
    return None


def _label_modules(model: nn.Module) -> List[Any]:
    """Wrap every labelled module's forward in ``record_function``; returns the hook handles."""
    modules = dict(model.named_modules())
    handles, stack = [], []

    def pre(label):
        def hook(mod, inp):
            ctx = record_function(_LABEL + label)
            ctx.__enter__()
            stack.append(ctx)

        return hook

    def post(mod, inp, out):
        stack.pop().__exit__(None, None, None)

    for name, module in modules.items():
        label = part_of(name, module, modules)
        if label is None:
            continue
        handles.append(module.register_forward_pre_hook(pre(label)))
        handles.append(module.register_forward_hook(post))
    return handles


@contextlib.contextmanager
def _label_fused_norm_act():
    """Count MTConv's fused eval BatchNorm + ReLU of L as "normalisation": that pass is one call of
    ``ops.native.affine_act_into`` inside ``MTConv.forward``, not a module a hook could label, so the function
    is wrapped in a label for the duration (and restored after)."""
    original = native.affine_act_into

    def labelled(*args, **kwargs):
        with record_function(_LABEL + "normalisation"):
            return original(*args, **kwargs)

    native.affine_act_into = labelled
    try:
        yield
    finally:
        native.affine_act_into = original


def part_shares(model: nn.Module, x: torch.Tensor) -> Dict[str, Any]:
    """Profile one eval forward: per part, ms and share of the forward time (``PARTS``); on CUDA the times
    are the GPU time of the kernels each part launched (``time_basis`` says which)."""
    model.eval()
    cuda = x.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    handles = _label_modules(model)
    try:
        with torch.inference_mode(), _label_fused_norm_act():
            model(x)  # warm
            if cuda:
                torch.cuda.synchronize(x.device)
            with profile(activities=activities) as prof:
                with record_function(_LABEL + "total"):
                    model(x)
                if cuda:
                    torch.cuda.synchronize(x.device)
    finally:
        for h in handles:
            h.remove()
    times: Dict[str, float] = {}
    for event in prof.events():
        if event.device_type != DeviceType.CPU:  # the GPU-side copies of the labels: counted through the CPU's
            continue
        if event.name.startswith(_LABEL):
            key = event.name[len(_LABEL):]
            us = event.device_time_total if cuda else event.cpu_time_total
            times[key] = times.get(key, 0.0) + us / 1e3
    total = times.pop("total")
    times["rest"] = max(0.0, total - sum(times.values()))
    shares = {k: v / max(total, 1e-12) for k, v in times.items()}
    other = sum(v for k, v in shares.items() if k not in CONV_NORM_PARTS)
    return dict(total_ms=total, ms=times, share=shares, share_not_conv_norm=other,
                time_basis="CUDA kernel time" if cuda else "CPU time")


# ------------------------------------------------------------------------------------------ benchmark
def run_benchmark(
    models: Dict[str, Tuple[nn.Module, Tuple[int, int]]],
    *,
    input_size: Optional[Tuple[int, int]] = None,
    batch: int = 1,
    repeats: int = 3,
    warmup: int = 1,
    device: str = "cpu",
    amp_modes: Optional[Sequence[bool]] = None,
    amp_dtype: str = "float16",
    parts: bool = True,
    memory: bool = True,
    progress: Optional[Callable[[str], None]] = None,
) -> Dict[str, Any]:
    """Measure models interleaved in this process (module docstring).

    Args:
        models: label -> (model, native (T, S)).
        input_size: (T, S) for every model; None uses each model's native input.
        batch: clips per step (throughput = batch / latency).
        repeats, warmup: measured and discarded repetitions.
        device: "cpu" or "cuda".
        amp_modes: AMP settings to run (default: (False,) on CPU, (False, True) on CUDA; AMP is CUDA only).
        amp_dtype: autocast dtype of the AMP runs, ``float16`` | ``bfloat16``.
        parts: profile the per-part forward shares of models that contain MTConvs.
        memory: measure peak memory.
        progress: called with a line of text after each step.

    Returns:
        json-ready dict: ``machine``, ``settings``, ``results[fp32|amp]`` with per model ``fwd_ms``,
        ``fwd_bwd_ms``, ``peak_mem_mb`` ..., and per pair ``ratio_fwd`` / ``ratio_fwd_bwd`` /
        ``ratio_peak_mem``; top-level ``models`` and ``pairs`` repeat the primary (fp32) run's (module docstring).
    """
    dev = torch.device(device)
    if amp_dtype not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be one of {sorted(AMP_DTYPES)}, got {amp_dtype!r}")
    dtype = AMP_DTYPES[amp_dtype]
    amp_modes = tuple(amp_modes) if amp_modes is not None else ((False,) if dev.type == "cpu" else (False, True))
    say = progress or (lambda s: None)
    inputs = {}
    for label, (model, native) in models.items():
        t, s = input_size or native
        model.to(dev)
        gen = torch.Generator().manual_seed(0)
        inputs[label] = torch.randn(batch, 3, t, s, s, generator=gen).to(dev)
    report: Dict[str, Any] = dict(machine=machine_info(dev), settings=dict(
        batch=batch, repeats=repeats, warmup=warmup, input={k: list(v.shape[2:4]) for k, v in inputs.items()},
        timing="CUDA events" if dev.type == "cuda" else "time.perf_counter", stat="median over repeats",
        memory_method=MEMORY_METHOD[dev.type], interleaved=True, amp_dtype=amp_dtype), results={})
    for amp in amp_modes:
        samples = {k: {"fwd": [], "fwd_bwd": []} for k in models}
        for rep in range(warmup + repeats):
            for kind, make in (("fwd", _forward), ("fwd_bwd", _forward_backward)):
                for label, (model, _) in models.items():
                    ms = _timed(make(model, inputs[label], dev, amp, dtype), dev)
                    if rep >= warmup:
                        samples[label][kind].append(ms)
                    say(f"amp={amp} rep {rep}{' (warm-up)' if rep < warmup else ''} {label} {kind}: {ms:.1f} ms")
        per_model = {}
        for label, (model, _) in models.items():
            fwd, fb = samples[label]["fwd"], samples[label]["fwd_bwd"]
            row = dict(fwd_ms=statistics.median(fwd), fwd_bwd_ms=statistics.median(fb), fwd_ms_min=min(fwd),
                       fwd_bwd_ms_min=min(fb), fwd_samples=fwd, fwd_bwd_samples=fb)
            row["fwd_clips_per_s"] = batch * 1e3 / row["fwd_ms"]
            row["train_clips_per_s"] = batch * 1e3 / row["fwd_bwd_ms"]
            if memory:
                row["peak_mem_mb"] = peak_memory_mb(_forward_backward(model, inputs[label], dev, amp, dtype), dev)
                row["peak_mem_fwd_mb"] = peak_memory_mb(_forward(model, inputs[label], dev, amp, dtype), dev)
                say(f"amp={amp} {label} peak memory {row['peak_mem_mb']:.0f} MB")
            per_model[label] = row
        pairs = {}
        for a, b in pairs_of(list(models)):
            ra, rb = per_model[a], per_model[b]
            pair = dict(ratio_fwd=ra["fwd_ms"] / rb["fwd_ms"], ratio_fwd_bwd=ra["fwd_bwd_ms"] / rb["fwd_bwd_ms"],
                        ratio_fwd_bwd_min=ra["fwd_bwd_ms_min"] / rb["fwd_bwd_ms_min"])
            if memory:
                pair["ratio_peak_mem"] = ra["peak_mem_mb"] / max(rb["peak_mem_mb"], 1e-9)
            pairs[f"{a}/{b}"] = pair
        report["results"]["amp" if amp else "fp32"] = dict(models=per_model, pairs=pairs)
    report.update(_primary(report["results"]))
    if parts:
        report["parts"] = {}
        for label, (model, _) in models.items():
            if any(isinstance(m, MTConv) for m in model.modules()):
                report["parts"][label] = part_shares(model, inputs[label])
                say(f"{label} parts profiled")
    report["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return report


def _primary(results: Dict[str, Any]) -> Dict[str, Any]:
    """Top-level ``models`` and ``pairs``: the fp32 run's (else the first run's; empty when none ran)."""
    res = results.get("fp32") or next(iter(results.values()), dict(models={}, pairs={}))
    return dict(models=res["models"], pairs=res["pairs"])


# -------------------------------------------------------------------------------------------- report
def format_report(report: Dict[str, Any]) -> str:
    """Markdown tables of a :func:`run_benchmark` (and optionally loader) report."""
    m, st = report["machine"], report.get("settings")
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads, device "
             f"{m.get('gpu', m['device'])}, load average {_load(m.get('loadavg'))} -> {_load(m.get('loadavg_end'))}, "
             f"C kernels: {m.get('cpu_kernels', '?')}"]
    if st:
        lines.append(f"batch {st['batch']}, {st['repeats']} repeats after {st['warmup']} warm-up, interleaved, "
                     f"{st['stat']}; timing {st['timing']}; memory: {st['memory_method']}")
    lines.append("")
    for mode, res in report["results"].items():
        title = f"amp ({st.get('amp_dtype', 'float16')} autocast)" if mode == "amp" and st else mode
        lines += [f"### {title}", "", "| model | input | fwd ms | fwd+bwd ms | fwd clips/s | train clips/s | "
                  "peak MB (fwd+bwd) | peak MB (fwd) |", "|---|---|---|---|---|---|---|---|"]
        for label, r in res["models"].items():
            t, s = st["input"][label]
            lines.append(f"| {label} | {t}x{s} | {r['fwd_ms']:.1f} | {r['fwd_bwd_ms']:.1f} | {r['fwd_clips_per_s']:.2f}"
                         f" | {r['train_clips_per_s']:.2f} | {_num(r.get('peak_mem_mb'))} | "
                         f"{_num(r.get('peak_mem_fwd_mb'))} |")
        if res["pairs"]:
            lines += ["", "| pair | fwd ratio | fwd+bwd ratio | fwd+bwd ratio (min) | peak mem ratio |",
                      "|---|---|---|---|---|"]
            for name, p in res["pairs"].items():
                lines.append(f"| {name} | {p['ratio_fwd']:.2f} | {p['ratio_fwd_bwd']:.2f} | "
                             f"{p['ratio_fwd_bwd_min']:.2f} | {_num(p.get('ratio_peak_mem'), '.2f')} |")
        lines.append("")
    for label, p in report.get("parts", {}).items():
        lines += [f"### forward time by part: {label} (profiled eval forward, {p['total_ms']:.1f} ms "
                  f"{p.get('time_basis', 'CPU time')})", "",
                  "| part | ms | share |", "|---|---|---|"]
        for part in sorted(p["ms"], key=lambda k: -p["ms"][k]):
            lines.append(f"| {part} | {p['ms'][part]:.1f} | {100 * p['share'][part]:.1f}% |")
        lines += [f"| not conv / norm | | {100 * p['share_not_conv_norm']:.1f}% |", ""]
    if "loader" in report:
        lines += format_loader(report["loader"])
    return "\n".join(lines)


def _num(v: Optional[float], fmt: str = ".0f") -> str:
    return "-" if v is None else format(v, fmt)


def _load(v: Optional[Sequence[float]]) -> str:
    return "-" if not v else "/".join(f"{x:.1f}" for x in v)


# ------------------------------------------------------------------------------------------ entry point
def benchmark(*, models: Sequence[str] = (), cfg: Sequence[str] = (), opts: Sequence[str] = (),
              input: Optional[str] = None, batch: int = 1, threads: Optional[int] = None, repeats: int = 3,
              warmup: int = 1, device: Optional[str] = None, no_amp: bool = False, amp_only: bool = False,
              amp_dtype: str = "float16", parts: bool = True,
              memory: bool = True, json: Optional[str] = None, loader: bool = False, loader_batches: int = 8,
              videos: int = 4, data_dir: Optional[str] = None, loader_only: bool = False,
              compile: bool = False, quiet: bool = False) -> Dict[str, Any]:
    """What ``tools/benchmark.py`` runs: build the models, measure, print the tables, write the json.

    Args:
        models: preset names (``PRESET_NAMES``).
        cfg: YAML configs, each adding the model ``build_model(cfg)`` builds, labelled by the file's stem,
            with its (NUM_FRAMES, TRAIN_CROP_SIZE) as native input; ``opts`` override keys of every cfg.
        input: ``"TxS"`` for every model (default: each model's native input).
        batch, repeats, warmup: see :func:`run_benchmark`.
        threads: ``torch.set_num_threads`` (default: torch's).
        device: "cpu" | "cuda" (default: cuda when available).
        no_amp: on CUDA, skip the AMP run.
        amp_only: on CUDA, run AMP only (training throughput as the trainer's ``TRAIN.MIXED_PRECISION`` runs).
        amp_dtype: ``float16`` | ``bfloat16`` for the AMP run.
        json: write the report there.
        compile: wrap every model in ``torch.compile`` (default Inductor); the warm-up repetitions include
            the compilation, so give ``warmup >= 1``. Parts are not profiled for compiled models.
        loader_only: with ``loader``, skip the model latency table (the loader report still times the
            first model's training step).
        loader: also run :func:`~mtnet_plugin.benchmarks.loader_benchmark.loader_report` for the first model
            (or cfg) with ``loader_batches`` batches of ``batch`` clips over ``videos`` generated 320p H.264
            videos (or ``data_dir``'s list).
        quiet: no progress lines.
    """
    import json as json_lib

    from mtnet_plugin.config import load_config
    from mtnet_plugin.models import build_model

    if threads:
        torch.set_num_threads(int(threads))
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if amp_only and (no_amp or torch.device(dev).type != "cuda"):
        raise ValueError("--amp-only needs --device cuda and no --no-amp (autocast is measured on CUDA only)")
    say = (lambda s: None) if quiet else (lambda s: print(s, flush=True))
    size = parse_input(input) if input else None
    built: Dict[str, Tuple[nn.Module, Tuple[int, int]]] = {}
    cfgs: Dict[str, Any] = {}
    for name in models:
        built[name] = build_named_model(name)
    for path in cfg:
        c = load_config([path], list(opts))
        label = os.path.splitext(os.path.basename(path))[0]
        built[label] = (build_model(c), (int(c.DATA.NUM_FRAMES), int(c.DATA.TRAIN_CROP_SIZE)))
        cfgs[label] = c
    if not built:
        raise ValueError("nothing to benchmark: give --models NAME ... and/or --cfg FILE ...")
    if compile:
        built = {k: (torch.compile(m, dynamic=False), native) for k, (m, native) in built.items()}
        parts = False
    amp_modes = (True,) if amp_only else (None if not no_amp else (False,))
    if loader and loader_only:
        report = dict(machine=machine_info(torch.device("cpu")), results={}, models={}, pairs={})
    else:
        report = run_benchmark(built, input_size=size, batch=batch, repeats=repeats, warmup=warmup, device=dev,
                               amp_modes=amp_modes, amp_dtype=amp_dtype, parts=parts, memory=memory,
                               progress=say)
    if loader:
        label = next(iter(built))
        model, native = built[label]
        report["loader"] = loader_report(model, size or native, cfg=cfgs.get(label), batch=batch,
                                         batches=loader_batches, videos=videos, data_dir=data_dir, progress=say)
    text = format_report(report)
    print(text)
    if json:
        with open(json, "w") as f:
            json_lib.dump(report, f, indent=1)
    return report
