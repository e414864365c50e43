"""Export of a trained tiny MTNet (mtnet_plugin/engine/export.py, tools/export.py): TorchScript trace, torch.export
and ONNX (through onnxruntime) agree with the eager model on random and real inputs, frame selection included."""
import importlib.util
import os

import numpy as np
import pytest
import torch

from mtnet_plugin.data.video_io import write_video
from mtnet_plugin.engine.export import export_loaded, parse_input, real_clip
from mtnet_plugin.models import build_model

from test_engine_predict import save_tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
HAVE_ONNX_DYNAMO = HAVE_ORT and importlib.util.find_spec("onnxscript") is not None
ATOL = 1e-5

pytestmark = pytest.mark.slow  # one export of every format: ~25 s of CPU in all


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Run ``tools/export.py`` once (every format the machine can check) on a tiny checkpoint and a real video."""
    tmp = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60, size=(12, 32, 48, 3), dtype=np.uint8)
    for t in range(12):  # a square moving right: frames differ, so frame selection has something to choose
        frames[t, 8:24, 2 * t : 2 * t + 12] = (230, 200, 40)
    video = str(tmp / "clip.mp4")
    write_video(video, frames, fps=10)
    cfg_path, ckpt, cfg = save_tiny_checkpoint(tmp, str(tmp))
    formats = ["torchscript", "export"] + (["onnx"] if HAVE_ONNX_DYNAMO else [])
    out = str(tmp / "exported")
    code = _tool("export").main(["--cfg", cfg_path, "--checkpoint", ckpt, "--out", out, "--video", video,
                                 "--json", "--atol", str(ATOL), "--formats", *formats])
    model = build_model(cfg)
    model.load_state_dict(torch.load(ckpt, weights_only=True)["model_state"])
    return {"code": code, "out": out, "video": video, "cfg": cfg, "model": model.eval(), "ckpt": ckpt}


def _fresh_inputs(ctx):
    """Inputs the export never saw: a new random clip and the real clip (test pipeline, centre crop)."""
    x = torch.randn(1, 3, 6, 32, 32, generator=torch.Generator().manual_seed(123)) * 2.0
    return {"random": x, "video": real_clip(ctx["cfg"], ctx["video"], 6, 32)[None]}


def _assert_matches_eager(ctx, run):
    with torch.no_grad():
        for name, x in _fresh_inputs(ctx).items():
            expected = ctx["model"](x)
            got = run(x)
            assert got.shape == expected.shape == (1, 3)
            assert (got - expected).abs().max().item() <= ATOL, name


def test_cli_exits_zero_and_writes_the_files(exported):
    assert exported["code"] == 0  # every max |exported - eager| <= ATOL on the random and the real input
    names = {"model.torchscript.pt", "model.pt2"} | ({"model.onnx"} if HAVE_ONNX_DYNAMO else set())
    assert names <= set(os.listdir(exported["out"]))


def test_torchscript_trace_matches_eager(exported):
    loaded = torch.jit.load(os.path.join(exported["out"], "model.torchscript.pt"))
    _assert_matches_eager(exported, loaded)


def test_torch_export_matches_eager(exported):
    program = torch.export.load(os.path.join(exported["out"], "model.pt2"))
    _assert_matches_eager(exported, program.module())


@pytest.mark.skipif(not HAVE_ONNX_DYNAMO, reason="onnxruntime and onnxscript (the 'export' extra) not installed")
def test_onnx_matches_eager_through_onnxruntime(exported):
    import onnxruntime as ort

    session = ort.InferenceSession(os.path.join(exported["out"], "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["video"]
    _assert_matches_eager(exported, lambda x: torch.from_numpy(session.run(["logits"], {"video": x.numpy()})[0]))


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime (the 'export' extra) not installed")
def test_legacy_onnx_exporter_matches_eager(exported, tmp_path):
    example = torch.randn(2, 3, 6, 32, 32, generator=torch.Generator().manual_seed(7))
    checks = {"random": example, "other": torch.randn(2, 3, 6, 32, 32)}
    report = export_loaded(exported["model"], str(tmp_path), example, formats=["onnx"], checks=checks,
                           onnx_exporter="legacy")
    entry = report["formats"]["onnx"]
    assert report["input_shape"] == [2, 3, 6, 32, 32] and entry["exporter"] == "legacy"
    assert set(entry["max_abs_diff"]) == {"random", "other"}
    assert max(entry["max_abs_diff"].values()) <= ATOL


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx (the 'export' extra) not installed")
def test_report_without_onnxruntime_marks_onnx_unchecked(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 2, 1), torch.nn.Flatten()).eval()
    report = export_loaded(model, str(tmp_path), torch.randn(1, 3, 2, 4, 4), formats=["onnx", "torchscript"],
                           onnx_exporter="legacy")
    assert report["formats"]["onnx"]["max_abs_diff"] is None
    assert os.path.getsize(report["formats"]["onnx"]["path"]) > 100
    assert report["formats"]["torchscript"]["max_abs_diff"]["random"] <= ATOL


def test_bad_arguments(exported, tmp_path):
    with pytest.raises(ValueError):
        export_loaded(exported["model"], str(tmp_path), torch.randn(1, 3, 6, 32, 32), formats=["tflite"])
    with pytest.raises(ValueError):
        export_loaded(exported["model"], str(tmp_path), torch.randn(1, 3, 6, 32, 32), onnx_exporter="x")
    assert parse_input("16x256") == (16, 256)
    for bad in ("16", "0x32", "ax3"):
        with pytest.raises(ValueError):
            parse_input(bad)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"junk" * 100)
    code = _tool("export").main(["--checkpoint", exported["ckpt"], "--out", str(tmp_path / "o"), "--formats", "torchscript", "--video", str(broken)])
    assert code == 2  # the video is named in the error; nothing crashes
