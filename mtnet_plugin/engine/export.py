"""Export a trained model for deployment, each format checked against the eager model.

``export_model(cfg, checkpoint, out_dir)`` (what ``tools/export.py`` calls) loads the checkpoint into
``build_model(cfg)`` in eval mode on CPU and writes, for one fixed input shape ``(B, 3, T, S, S)``:

- ``torchscript``: ``model.torchscript.pt``, from ``torch.jit.trace`` (load with ``torch.jit.load``);
- ``export``: ``model.pt2``, a ``torch.export`` ExportedProgram (``torch.export.load(path).module()``);
- ``onnx``: ``model.onnx`` (input ``video``, output ``logits``). The default exporter is torch's current one,
  ``torch.onnx.export(..., dynamo=True)`` (needs ``onnxscript``), translated from the same ExportedProgram as
  ``model.pt2``; ``onnx_exporter="legacy"`` uses the TorchScript-based exporter (deprecated since torch 2.9, faster).

Every file is loaded back and run on a seeded random input and, when ``video`` is given, on a real clip (the test
pipeline's centre crop of the first clip, as ``predict`` decodes it); the largest absolute difference from the
eager logits is reported per format and input. ONNX files are run through ``onnxruntime`` when it is installed
(else they are written but reported as unchecked). All of MTNet exports, triplet-cosine frame selection included:
its data-dependent indices are computed with comparisons, sums and ``gather`` (``ops/frame_select.py``), so the
graph computes them for every input instead of freezing the indices of the example input. ``model.pt2`` keeps
MTNet's custom ops (``torch.ops.mtnet.*``: load it after importing mtnet_plugin); the ONNX file gets their
aten decompositions (``mtnet_plugin.ops.decompositions()``, docs/design.md "CPU kernels: one door").
"""
import logging
import os
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from mtnet_plugin.data import VideoDecodeError, probe_video
from mtnet_plugin.ops import decompositions

from .checkpoint import open_checkpoint
from .cli_values import parse_pair
from .predict import CfgLike, VideoFilesDataset, inference_cfg, load_trained_model, resolve_checkpoint

logger = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx", "export")
FILE_NAMES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx", "export": "model.pt2"}
ONNX_EXPORTERS = ("dynamo", "legacy")


def parse_input(text: str) -> Tuple[int, int]:
    """``"16x256"`` -> ``(T, S)``: frames and square crop side."""
    return parse_pair(text, "input", "'16x256' (frames x crop)")


def real_clip(cfg, video: str, frames: int, side: int) -> torch.Tensor:
    """The test pipeline's view of ``video`` at ``(frames, side)``: first clip, centre crop. Returns (3, T, S, S)."""
    local = cfg.clone()
    local.defrost()
    local.DATA.NUM_FRAMES, local.DATA.TEST_CROP_SIZE = frames, side
    local.TEST.NUM_ENSEMBLE_VIEWS, local.TEST.NUM_SPATIAL_CROPS = 1, 3  # short side = crop; view 1 = centre
    probe_video(video)  # raises VideoDecodeError naming the file
    sample = VideoFilesDataset(local, [video])[1]
    if sample["failed"]:
        raise VideoDecodeError(video, "; ".join(f["error"] for f in sample["failures"]) or "no frame decoded")
    return sample["inputs"]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float().cpu() - b.detach().float().cpu()).abs().max())


def _run_onnx(path: str, inputs: Dict[str, torch.Tensor]) -> Optional[Dict[str, torch.Tensor]]:
    """Logits of the ONNX file for each input through onnxruntime (CPU), or None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return {k: torch.from_numpy(session.run(None, {name: x.detach().cpu().numpy()})[0]) for k, x in inputs.items()}


def _export_onnx(model: nn.Module, program, example: torch.Tensor, path: str, exporter: str) -> None:
    if exporter == "dynamo":  # ONNX knows no mtnet ops: their aten decompositions instead
        plain = program.run_decompositions(decompositions())
        torch.onnx.export(plain, (example,), path, dynamo=True, external_data=False,
                          input_names=["video"], output_names=["logits"], verbose=False)
    else:
        torch.onnx.export(model, (example,), path, dynamo=False, opset_version=17, input_names=["video"],
                          output_names=["logits"])


@torch.no_grad()
def export_loaded(model: nn.Module, out_dir: str, example: torch.Tensor, *, formats: Sequence[str] = FORMATS,
                  checks: Optional[Dict[str, torch.Tensor]] = None, onnx_exporter: str = "dynamo") -> Dict[str, Any]:
    """Export an eval-mode model traced at ``example``'s shape and check every file against it.

    Args:
        model: the model (eval mode), on the device of ``example`` (files are loaded back onto that device; ONNX
            runs on the CPU through onnxruntime).
        out_dir: folder for the files (created).
        example: (B, 3, T, S, S) example input; the exported graphs are specialised to this shape.
        formats: a subset of ``FORMATS``.
        checks: named inputs of the same shape to compare on (default: ``{"random": example}``).
        onnx_exporter: ``dynamo`` | ``legacy``.

    Returns:
        ``{"input_shape", "formats": {fmt: {"path", "max_abs_diff": {input: float} | None}}}``; ``None`` means
        the file was written but could not be run here (onnxruntime missing).
    """
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ValueError(f"formats must be among {FORMATS}, got {list(formats)}")
    if onnx_exporter not in ONNX_EXPORTERS:
        raise ValueError(f"onnx_exporter must be one of {ONNX_EXPORTERS}, got {onnx_exporter!r}")
    model.eval()
    checks = dict(checks or {"random": example})
    eager = {k: model(x) for k, x in checks.items()}
    os.makedirs(out_dir, exist_ok=True)
    report: Dict[str, Any] = {"input_shape": list(example.shape), "formats": {}}
    program = None
    with warnings.catch_warnings():
        # torch's exporters warn about shape reads and deprecations on every call; keep the log readable.
        for category in (torch.jit.TracerWarning, DeprecationWarning, FutureWarning, UserWarning):
            warnings.simplefilter("ignore", category)
        for fmt in [f for f in ("torchscript", "export", "onnx") if f in formats]:
            path = os.path.join(out_dir, FILE_NAMES[fmt])
            logger.info("Exporting %s -> %s", fmt, path)
            if fmt in ("export", "onnx") and program is None and (fmt == "export" or onnx_exporter == "dynamo"):
                program = torch.export.export(model, (example,))
            if fmt == "torchscript":
                torch.jit.save(torch.jit.trace(model, (example,), check_trace=False), path)
                loaded = torch.jit.load(path, map_location=example.device)
                outputs = {k: loaded(x) for k, x in checks.items()}
            elif fmt == "export":
                torch.export.save(program, path)
                loaded = torch.export.load(path).module()
                outputs = {k: loaded(x) for k, x in checks.items()}
            else:
                _export_onnx(model, program, example, path, onnx_exporter)
                outputs = _run_onnx(path, checks)
                if outputs is None:
                    logger.warning("onnxruntime is not installed: %s written but not checked", path)
            diffs = None if outputs is None else {k: _max_diff(outputs[k], eager[k]) for k in checks}
            report["formats"][fmt] = {"path": path, "max_abs_diff": diffs}
            if fmt == "onnx":
                report["formats"][fmt]["exporter"] = onnx_exporter
            logger.info("%s: max |exported - eager| = %s", fmt, diffs)
    return report


def export_model(
    cfg: CfgLike = None,
    checkpoint: Optional[str] = None,
    out_dir: str = "export",
    *,
    formats: Sequence[str] = FORMATS,
    input_size: Optional[str] = None,
    batch_size: int = 1,
    video: Optional[str] = None,
    opts: Sequence[str] = (),
    onnx_exporter: str = "dynamo",
    seed: int = 0,
) -> Dict[str, Any]:
    """Export a trained model (see the module docstring) and report the parity of every file.

    Args:
        cfg: a config, a YAML file, or None for the config stored in the checkpoint.
        checkpoint: the ``.pyth`` checkpoint (None: the one ``run_test(cfg)`` would load).
        out_dir: output folder.
        formats: subset of ``("torchscript", "onnx", "export")``.
        input_size: ``"TxS"``; default ``DATA.NUM_FRAMES x DATA.TEST_CROP_SIZE`` (one test view).
        batch_size: B of the fixed input shape.
        video: a video to check on, decoded with the test pipeline (first clip, centre crop), repeated B times.
        opts: ``KEY VALUE ...`` config overrides.
        onnx_exporter: ``dynamo`` (default) | ``legacy``.
        seed: seed of the random check input.

    Returns:
        :func:`export_loaded`'s report plus ``checkpoint``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    path = resolve_checkpoint(checkpoint, inference_cfg(cfg, opts)) if checkpoint is None else checkpoint
    ckpt = open_checkpoint(os.fspath(path))
    run_cfg = inference_cfg(cfg, opts, ckpt)
    model = load_trained_model(run_cfg, ckpt, os.fspath(path), "cpu")
    frames, side = parse_input(input_size) if input_size else (int(run_cfg.DATA.NUM_FRAMES),
                                                                int(run_cfg.DATA.TEST_CROP_SIZE))
    shape = (batch_size, int(run_cfg.DATA.INPUT_CHANNEL_NUM[0]), frames, side, side)
    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(shape, generator=gen)
    checks = {"random": example}
    if video:
        checks["video"] = real_clip(run_cfg, video, frames, side).unsqueeze(0).expand(shape).contiguous()
    report = export_loaded(model, out_dir, example, formats=formats, checks=checks, onnx_exporter=onnx_exporter)
    report["checkpoint"] = os.fspath(path)
    return report
