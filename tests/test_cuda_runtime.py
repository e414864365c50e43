"""The runtime on the device (tests/cuda_helpers.py): mixed-precision training (bf16, and fp16 with a GradScaler),
the demo config with ``NUM_GPUS 1`` and ``TRAIN.MIXED_PRECISION True``, DDP at world size 1 (NCCL on CUDA, gloo
on the CPU) with SyncBN conversion, and predict / export of a model on the device with parity.

On the CPU the same bodies run on tiny data: mixed precision then trains in fp32 with a warning, DDP uses gloo and
keeps plain BatchNorm, predict and export compare the eager path (kernels off) with the default CPU path.
"""
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import yaml

from mtnet_plugin.config import load_config
from mtnet_plugin.engine import Trainer
from mtnet_plugin.engine.checkpoint import list_checkpoints, read_checkpoint
from mtnet_plugin.engine.export import export_loaded
from mtnet_plugin.engine.logs import read_json_stats
from mtnet_plugin.engine.predict import predict
from mtnet_plugin.models import build_model

from cuda_helpers import CUDA_MARKS, device_params, device_path, rel_err
from test_engine_predict import save_tiny_checkpoint
from test_engine_trainer import tiny_cfg_dict, write_class_videos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_NET = os.path.join(ROOT, "tools", "run_net.py")

MTNET = {"MODEL": {"MODEL_NAME": "MTNet", "ARCH": "mtnet", "NUM_CLASSES": 2, "DROPOUT_RATE": 0.0},
         "DATA": {"NUM_FRAMES": 4}}


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def _write_cfg(tmp_path, data_dir, device, **sections):
    """A tiny MTNet run (test_engine_trainer's data) on ``device``, written as YAML; returns (path, cfg)."""
    d = tiny_cfg_dict(data_dir, str(tmp_path / "out"))
    for node, values in list(MTNET.items()) + list(sections.items()):
        d.setdefault(node, {}).update(values)
    d["NUM_GPUS"] = 1 if device == "cuda" else 0
    path = str(tmp_path / "run.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(d, f)
    cfg = load_config([path])
    cfg.freeze()
    return path, cfg


def _finite_train_losses(out_dir):
    epochs = [s for s in read_json_stats(os.path.join(out_dir, "json_stats.log")) if s["_type"] == "train_epoch"]
    assert epochs, "no train_epoch record"
    assert all(math.isfinite(float(s["loss"])) for s in epochs), [s["loss"] for s in epochs]
    return epochs


AMP_CASES = [pytest.param("cpu", None, id="cpu-fp32-fallback"),
             pytest.param("cuda", "bf16", marks=CUDA_MARKS, id="cuda-bf16"),
             pytest.param("cuda", "fp16", marks=CUDA_MARKS, id="cuda-fp16-gradscaler")]


@pytest.mark.parametrize("device,amp", AMP_CASES)
def test_mixed_precision_training_is_finite_and_checkpoints(tmp_path, make_video, monkeypatch, caplog, device, amp):
    """TRAIN.MIXED_PRECISION: bf16 autocast where the GPU supports it, else fp16 with a GradScaler (forced here by
    reporting no bf16 support); the CPU falls back to fp32 with a warning."""
    if amp == "fp16":
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16: the trainer uses fp16 (covered by the fp16 case)")
    data_dir = write_class_videos(make_video)
    _, cfg = _write_cfg(tmp_path, data_dir, device, TRAIN={"MIXED_PRECISION": True},
                        SOLVER={"MAX_EPOCH": 2, "BASE_LR": 0.02, "OPTIMIZING_METHOD": "adamw"})
    caplog.set_level("INFO")
    trainer = Trainer(cfg)
    summary = trainer.train()
    want = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert trainer.amp_dtype == want and trainer.device.type == device
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    if amp == "fp16":
        scale = trainer.scaler.get_scale()
        assert math.isfinite(scale) and scale > 0
    if device == "cpu":
        assert "TRAIN.MIXED_PRECISION needs CUDA" in caplog.text
    else:
        assert f"Mixed precision: {want} autocast" in caplog.text
    epochs = _finite_train_losses(cfg.OUTPUT_DIR)
    assert len(epochs) == 2
    assert [os.path.basename(p) for p in list_checkpoints(cfg.OUTPUT_DIR)][-1] == "checkpoint_epoch_00002.pyth"
    ckpt = read_checkpoint(summary["last_checkpoint"])
    assert "scaler_state" in ckpt
    for k, v in ckpt["model_state"].items():
        if v.is_floating_point():
            assert bool(torch.isfinite(v).all()), k
    model = build_model(cfg)
    model.load_state_dict(ckpt["model_state"])  # loads on the CPU: a CUDA checkpoint is portable


@pytest.mark.slow
@pytest.mark.parametrize("device", device_params(cpu=False))
def test_demo_config_trains_on_one_gpu_with_mixed_precision(tmp_path, device):
    """``tools/run_net.py --cfg configs/Synthetic/MTNet_XS.yaml`` with NUM_GPUS 1 and TRAIN.MIXED_PRECISION True,
    shrunk as tests/test_demo_synthetic.py shrinks it (that test runs the same on the CPU)."""
    from test_demo_synthetic import TINY_OPTS

    data_dir, out = str(tmp_path / "data"), str(tmp_path / "out")
    proc = subprocess.run(
        [sys.executable, RUN_NET, "--cfg", os.path.join(ROOT, "configs", "Synthetic", "MTNet_XS.yaml"), "--opts",
         "DATA.PATH_TO_DATA_DIR", data_dir, "OUTPUT_DIR", out, "NUM_GPUS", "1", "TRAIN.MIXED_PRECISION", "True"]
        + TINY_OPTS,
        cwd=str(tmp_path), env=_env(), capture_output=True, text=True, timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "on cuda:0 x 1 process(es)" in log and "Mixed precision: torch." in log, log[-3000:]
    assert len(_finite_train_losses(out)) == 2
    assert sorted(os.listdir(os.path.join(out, "checkpoints")))[-1] == "checkpoint_epoch_00002.pyth"
    res = json.load(open(os.path.join(out, "test_results.json")))
    assert res["num_views"] == 30 and res["num_videos"] == 4 and res["failed_videos"] == []
    assert all(v["views"] == 30 and abs(sum(v["topk_scores"]) - 30.0) < 1e-2 for v in res["per_video"])


@pytest.mark.parametrize("device", device_params())
def test_ddp_world_size_1_with_syncbn(tmp_path, make_video, device):
    """A one-process group: NCCL + SyncBN on CUDA (gloo + plain BN on the CPU), DDP's step equal to the plain
    model's, and the trainer inside the group (its all-reduces through the backend) with mixed precision."""
    data_dir = write_class_videos(make_video)
    path, cfg = _write_cfg(tmp_path, data_dir, device, BN={"NORM_TYPE": "sync_batchnorm"},
                           TRAIN={"MIXED_PRECISION": device == "cuda"}, SOLVER={"MAX_EPOCH": 1})
    out_json = str(tmp_path / "ddp.json")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "ddp_world_size_1.py"), path, out_json],
                          cwd=str(tmp_path), env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rep = json.load(open(out_json))
    assert rep["world_size"] == 1 and rep["ddp"] is True
    assert rep["backend"] == ("nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        assert rep["sync_bn"] > 10 and rep["plain_bn"] == 0, rep  # every BatchNorm converted
    else:
        assert rep["sync_bn"] == 0 and rep["plain_bn"] > 10, rep
        assert "sync_batchnorm needs CUDA" in proc.stdout + proc.stderr
    assert rep["logits_rel"] <= 1e-5 and rep["grads_rel"] <= 1e-5, rep
    assert rep["train"]["last_checkpoint"].endswith("checkpoint_epoch_00001.pyth")
    assert len(_finite_train_losses(cfg.OUTPUT_DIR)) == 1


@pytest.fixture
def tiny_checkpoint(tmp_path, make_video_list):
    data_dir = make_video_list(split="test", num_videos=3, num_classes=3, num_frames=12, height=32, width=48)
    cfg_path, ckpt, cfg = save_tiny_checkpoint(tmp_path, data_dir)
    with open(os.path.join(data_dir, "test.csv")) as f:
        videos = [line.split(" ")[0] for line in f.read().splitlines()]
    return cfg_path, ckpt, cfg, videos


@pytest.mark.parametrize("device", device_params())
def test_predict_on_the_device_matches_the_cpu(tiny_checkpoint, device):
    cfg_path, ckpt, _, videos = tiny_checkpoint
    ref = predict(videos, cfg_path, ckpt, device="cpu", topk=3)
    with device_path(device):
        got = predict(videos, cfg_path, ckpt, device=device, topk=3)
    for r, g in zip(ref, got):
        assert "error" not in g and g["views"] == r["views"] == 6
        probs_r = {t["index"]: t["prob"] for t in r["topk"]}
        probs_g = {t["index"]: t["prob"] for t in g["topk"]}
        assert set(probs_r) == set(probs_g) == {0, 1, 2}
        for k in probs_r:
            assert abs(probs_r[k] - probs_g[k]) <= 1e-4, (r, g)
        assert abs(sum(probs_g.values()) - 1.0) < 1e-4


@pytest.mark.parametrize("device", device_params())
def test_export_of_a_model_on_the_device_matches_eager(tiny_checkpoint, tmp_path, device):
    """TorchScript, torch.export and ONNX of the model on the device, each file loaded back and run on an
    input the export never saw; the device's eager logits also agree with the CPU's."""
    _, ckpt_path, cfg, _ = tiny_checkpoint
    model = build_model(cfg)
    model.load_state_dict(read_checkpoint(ckpt_path)["model_state"])
    model.eval()
    g = torch.Generator().manual_seed(0)
    example = torch.randn(1, 3, 6, 32, 32, generator=g)
    fresh = 2.0 * torch.randn(1, 3, 6, 32, 32, generator=g)
    with torch.no_grad():
        cpu_logits = model(fresh)
    # The CPU runs TorchScript only (test_engine_export.py covers every format on the CPU, and torch.export takes
    # most of a minute of CI there); CUDA runs every format the machine can check.
    formats = ["torchscript"] if device == "cpu" else ["torchscript", "export"] + (["onnx"] if _have_onnx() else [])
    with device_path(device):
        model.to(device)
        report = export_loaded(model, str(tmp_path / "exported"), example.to(device), formats=formats,
                               checks={"random": fresh.to(device)})
        with torch.no_grad():
            dev_logits = model(fresh.to(device))
    assert set(report["formats"]) == set(formats)
    for fmt, entry in report["formats"].items():
        assert os.path.getsize(entry["path"]) > 0
        diff = entry["max_abs_diff"]["random"]
        assert diff is not None and diff <= 1e-4, (fmt, diff)
    assert rel_err(dev_logits, cpu_logits) <= 1e-4


def _have_onnx():
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnxscript"))
