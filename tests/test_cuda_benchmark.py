"""tools/benchmark.py's measurement on the device (tests/cuda_helpers.py): CUDA events, AMP in bf16 and fp16,
peak memory through the CUDA allocator, and the per-part profile from kernel times; on the CPU the same calls on
tiny models (fp32, CPU time)."""
import json

import pytest
import torch

from mtnet_plugin.benchmarks import benchmark as bm
from mtnet_plugin.models import create_mtnet, create_x3d

from cuda_helpers import device_params

TINY = dict(num_classes=3, width_factor=0.5, depth_factor=0.4, bottleneck_factor=1.0, dim_c1=8, dim_c5=16)


CASES = [pytest.param("cpu", "bfloat16", id="cpu")]  # the CPU measures fp32 only: one case
CASES += [pytest.param(p.values[0], dtype, marks=p.marks, id=f"cuda-{dtype}")
          for p in device_params(cpu=False) for dtype in ("bfloat16", "float16")]


@pytest.mark.parametrize("device,amp_dtype", CASES)
def test_benchmark_on_the_device_reports_numbers_for_every_mode(device, amp_dtype):
    torch.manual_seed(0)
    models = {"MTNet_T": (create_mtnet(**TINY), (6, 32)), "X3D_T": (create_x3d(**TINY), (6, 32))}
    report = bm.run_benchmark(models, batch=2, repeats=2, warmup=1, device=device, amp_dtype=amp_dtype)
    json.dumps(report)
    modes = ["fp32", "amp"] if device == "cuda" else ["fp32"]  # AMP is measured on CUDA only
    assert list(report["results"]) == modes and report["settings"]["amp_dtype"] == amp_dtype
    assert report["settings"]["timing"] == ("CUDA events" if device == "cuda" else "time.perf_counter")
    for mode in modes:
        for label, row in report["results"][mode]["models"].items():
            assert row["fwd_ms"] > 0 and row["fwd_bwd_ms"] > 0 and row["peak_mem_mb"] > 0, (mode, label, row)
            assert row["train_clips_per_s"] == pytest.approx(2e3 / row["fwd_bwd_ms"])
        assert report["results"][mode]["pairs"]["MTNet_T/X3D_T"]["ratio_fwd_bwd"] > 0
    parts = report["parts"]["MTNet_T"]
    assert parts["time_basis"] == ("CUDA kernel time" if device == "cuda" else "CPU time")
    assert parts["total_ms"] > 0 and parts["ms"]["L conv"] > 0 and parts["ms"]["SoftPool"] > 0
    assert sum(parts["share"].values()) == pytest.approx(1.0, abs=0.02)
    text = bm.format_report(report)
    assert "| MTNet_T/X3D_T |" in text and ("### amp (" + amp_dtype in text) == (device == "cuda")
    if device == "cuda":
        assert report["machine"]["gpu"] == torch.cuda.get_device_name(0)


def test_amp_options_are_checked():
    with pytest.raises(ValueError, match="amp_dtype"):
        bm.run_benchmark({}, amp_dtype="float8")
    with pytest.raises(ValueError, match="--amp-only needs --device cuda"):
        bm.benchmark(models=["X3D_XS"], device="cpu", amp_only=True, quiet=True)
