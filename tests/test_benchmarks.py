"""mtnet_plugin.benchmarks.benchmark: timing report and json keys on tiny models, memory accounting against a
known allocation, part attribution and the CLI; mtnet_plugin.benchmarks.loader_benchmark: the loader-vs-model
report and its videos."""
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from mtnet_plugin.config import get_cfg
from mtnet_plugin.benchmarks import benchmark as bm
from mtnet_plugin.benchmarks import loader_benchmark as lb
from mtnet_plugin.layers import MTConv
from mtnet_plugin.models import create_mtnet, create_x3d

TINY = dict(num_classes=3, width_factor=0.5, depth_factor=0.4,
            bottleneck_factor=1.0, dim_c1=8, dim_c5=16)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    return {"MTNet_T": (create_mtnet(**TINY), (4, 32)), "X3D_T": (create_x3d(**TINY), (4, 32))}


def test_report_has_the_documented_keys_and_consistent_ratios(tiny_models):
    lines = []
    report = bm.run_benchmark(tiny_models, input_size=(2, 16), repeats=2, warmup=0, progress=lines.append)
    json.dumps(report)  # json-ready
    res = report["results"]["fp32"]
    for label in tiny_models:
        row = res["models"][label]
        assert len(row["fwd_samples"]) == len(row["fwd_bwd_samples"]) == 2
        assert row["fwd_ms"] > 0 and row["fwd_bwd_ms"] > 0 and row["peak_mem_mb"] > 0
        assert row["fwd_ms_min"] <= row["fwd_ms"]
        assert row["train_clips_per_s"] == pytest.approx(1e3 / row["fwd_bwd_ms"])
    pair = res["pairs"]["MTNet_T/X3D_T"]
    m, x = res["models"]["MTNet_T"], res["models"]["X3D_T"]
    assert pair["ratio_fwd_bwd"] == pytest.approx(m["fwd_bwd_ms"] / x["fwd_bwd_ms"])
    assert pair["ratio_fwd"] == pytest.approx(m["fwd_ms"] / x["fwd_ms"])
    # The public layout: top-level models / pairs are the primary (fp32) run's.
    assert set(report["models"]) == set(tiny_models) and set(report["pairs"]) == {"MTNet_T/X3D_T"}
    assert {"fwd_ms", "fwd_bwd_ms", "peak_mem_mb"} <= set(report["models"]["MTNet_T"])
    assert report["models"] == res["models"] and report["pairs"] == res["pairs"]
    assert json.loads(json.dumps(report))["models"]["MTNet_T"]["fwd_ms"] == m["fwd_ms"]
    # Interleaved: the measured (non warm-up) steps alternate between the models.
    order = [line.split()[3] for line in lines if " rep " in line and "warm-up" not in line and "fwd:" in line]
    assert order == ["MTNet_T", "X3D_T", "MTNet_T", "X3D_T"]
    assert report["settings"]["input"]["MTNet_T"] == [2, 16] and report["machine"]["threads"] >= 1
    parts = report["parts"]["MTNet_T"]
    assert "X3D_T" not in report["parts"]  # no MTConv: nothing to split
    assert set(parts["ms"]) <= set(bm.PARTS) and parts["ms"]["L conv"] > 0 and parts["ms"]["SoftPool"] > 0
    assert sum(parts["share"].values()) == pytest.approx(1.0, abs=0.02)
    text = bm.format_report(report)
    assert "| MTNet_T/X3D_T |" in text and "| SoftPool |" in text
    # Whether the C kernels ran is part of the record: they change MTNet's CPU timings.
    from mtnet_plugin.ops import native

    assert report["machine"]["cpu_kernels"] == native.reason() and f"C kernels: {native.reason()}" in text


def test_peak_memory_sees_a_known_allocation():
    def step():
        a = torch.ones(2_500_000)  # 10 MB
        b = torch.ones(1_250_000)  # + 5 MB while a is alive
        del a, b
        c = torch.ones(250_000)  # 1 MB after both are freed
        del c

    assert bm.peak_memory_mb(step, torch.device("cpu")) == pytest.approx(15.0, rel=0.02)


def test_parts_are_assigned_by_module_role():
    m = MTConv(4, 8, 3, padding=1, delta=0.5)
    net = nn.Sequential(nn.Conv3d(3, 4, 1), m)
    modules = dict(net.named_modules())
    got = {name: bm.part_of(name, mod, modules) for name, mod in modules.items()}
    assert got["0"] == "other conv" and got["1.conv_local"] == "L conv"
    assert got["1.conv_lp"] == got["1.conv_p"] == "P conv"
    assert got["1.bn_lp"] == "normalisation" and got["1.act"] == "activation"
    assert got["1.downsample.spatial_pool"] == "SoftPool"
    assert got["1.downsample.frame_select"] == "frame selection" and got["1.upsample"] == "interpolation"
    assert got["1"] is None and got["1.downsample"] is None  # containers: their leaves are labelled


def test_helpers():
    assert bm.parse_input("16x224") == (16, 224) and bm.parse_input(" 8 X 112 ") == (8, 112)
    for bad in ("224", "16x224x3", "axb"):
        with pytest.raises(ValueError, match="TxS"):
            bm.parse_input(bad)
    with pytest.raises(ValueError, match="positive"):  # parse_pair's check: no empty clip
        bm.parse_input("0x224")
    assert bm.pairs_of(["X3D_M", "MTNet_M", "MTNet_S", "X3D_L"]) == [("MTNet_M", "X3D_M")]


def test_loader_report_compares_clip_rates(make_video_list):
    data_dir = make_video_list("train", num_videos=3, num_frames=12, fps=10, height=40, width=48)
    cfg = get_cfg()
    cfg.NUM_GPUS, cfg.DATA_LOADER.NUM_WORKERS, cfg.TRAIN.BATCH_SIZE = 0, 1, 2
    cfg.DATA.PATH_TO_DATA_DIR, cfg.MODEL.NUM_CLASSES = data_dir, 2
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 4, 2, 10
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE = [32, 40], 32
    torch.manual_seed(0)
    res = lb.run_loader_benchmark(cfg, create_x3d(**TINY), batches=2, steps=1)
    json.dumps(res)
    assert res["per_worker"]["workers"] == 0 and res["configured"]["workers"] == 1
    assert res["per_worker"]["clips"] == res["configured"]["clips"] == 4  # 2 batches of 2 after the first
    assert res["ratio"] == pytest.approx(res["configured"]["clips_per_s"] / res["model"]["clips_per_s"])
    assert res["bottleneck"] == ("loader" if res["ratio"] < 1 else "model")
    assert "loader, 1 worker" in "\n".join(lb.format_loader(res))


def test_write_benchmark_videos_has_the_short_side(tmp_path):
    from mtnet_plugin.data import probe_video

    lb.write_benchmark_videos(str(tmp_path), num_videos=1, short_side=64, num_frames=3, list_length=3)
    with open(tmp_path / "train.csv") as f:
        lines = f.read().splitlines()
    assert len(lines) == 3 and len(set(lines)) == 1  # one video listed three times: one long epoch
    path, label = lines[0].split()
    info = probe_video(path)
    assert (min(info.height, info.width), max(info.height, info.width)) == (64, 86) and label == "0"


def test_cli_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"), "--models", "MTNet_XS", "X3D_XS",
           "--input", "2x16", "--repeats", "1", "--warmup", "0", "--threads", "1", "--no-parts", "--no-memory",
           "--json", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    models = report["results"]["fp32"]["models"]
    assert set(models) == {"MTNet_XS", "X3D_XS"} and all(models[k]["fwd_bwd_ms"] > 0 for k in models)
    assert report["results"]["fp32"]["pairs"]["MTNet_XS/X3D_XS"]["ratio_fwd_bwd"] > 0
    assert "| MTNet_XS/X3D_XS |" in proc.stdout
    # The public API: per model fwd_ms / fwd_bwd_ms / peak_mem_mb and per pair ratio_fwd_bwd at top level.
    assert report["models"] == models and report["pairs"] == report["results"]["fp32"]["pairs"]
    assert {"fwd_ms", "fwd_bwd_ms"} <= set(report["models"]["MTNet_XS"])
    pair, m, x = report["pairs"]["MTNet_XS/X3D_XS"], report["models"]["MTNet_XS"], report["models"]["X3D_XS"]
    assert pair["ratio_fwd_bwd"] == pytest.approx(m["fwd_bwd_ms"] / x["fwd_bwd_ms"])
