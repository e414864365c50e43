"""tools/gpu_check.sh on the CPU at tiny sizes: every stage runs, the json and markdown hold numbers, progress is
printed, and a failing stage is recorded while the others still run."""
import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "gpu_check.sh")
NUM = r"[0-9]+(?:\.[0-9]+)?"


def _run(out, *args, timeout=1800):
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", SCRIPT, str(out), "--device", "cpu", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    summary = json.load(open(os.path.join(out, "summary.json")))
    return proc, summary, open(os.path.join(out, "summary.md")).read()


def _tool():
    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(ROOT, "tools", "gpu_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_run_of_every_stage_writes_numbers(tmp_path):
    out = tmp_path / "check"
    proc, s, md = _run(out, "--tests-filter", "test_frame_gather")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert [st["name"] for st in s["stages"]] == ["env", "tests", "bench", "train_S", "demo"]
    assert all(st["status"] == "ok" for st in s["stages"]) and s["failed"] == [] and s["device"] == "cpu"
    assert 0 < s["total_s"] < s["budget_s"]
    by = {st["name"]: st for st in s["stages"]}
    assert by["env"]["result"]["cuda_available"] in (True, False) and by["env"]["result"]["torch"]
    tests = by["tests"]["result"]
    assert tests["passed"] >= 1 and tests["failures"] == tests["errors"] == 0
    bench = by["bench"]["result"]["fp32"]
    for label in ("MTNet_XS", "X3D_XS"):
        row = bench["models"][label]
        assert row["fwd_ms"] > 0 and row["fwd_bwd_ms"] > 0 and row["peak_mem_mb"] > 0
    pair = bench["pairs"]["MTNet_XS/X3D_XS"]
    assert pair["ratio_fwd_bwd"] == pytest.approx(bench["models"]["MTNet_XS"]["fwd_bwd_ms"]
                                                  / bench["models"]["X3D_XS"]["fwd_bwd_ms"])
    parts = by["bench"]["result"]["parts"]["MTNet_XS"]
    assert sum(parts["share"].values()) == pytest.approx(1.0, abs=0.02) and parts["share"]["SoftPool"] > 0
    train = by["train_S"]["result"]
    assert train["batch"] == 2 and train["fp32"]["models"]["MTNet_XS"]["train_clips_per_s"] > 0
    demo = by["demo"]["result"]
    assert demo["num_views"] == 30 and demo["num_videos"] == 4 and 0 <= demo["top1"] <= 100
    assert math.isfinite(demo["final_train_loss"]) and demo["epochs"] == 1 and demo["wall_s"] > 0
    # The markdown: numbers in the stage table, the latency and ratio tables, the parts, throughput and demo.
    for stage in ("env", "tests", "bench", "train_S", "demo"):
        assert re.search(rf"^\| {stage} \| ok \| {NUM} \|", md, re.M), stage
    assert re.search(rf"^\| MTNet_XS \| 4x32 \| {NUM} \| {NUM} \| {NUM} \|$", md, re.M), md
    assert re.search(rf"^\| MTNet_XS/X3D_XS \| {NUM} \| {NUM} \| {NUM} \|$", md, re.M), md
    assert re.search(rf"^\| SoftPool \| {NUM}% \|$", md, re.M), md
    assert re.search(rf"^\| X3D_XS \| 4x32 \| {NUM} \| {NUM} \| {NUM} \| - \|$", md, re.M), md
    assert re.search(rf"30-view top-1 {NUM} %", md) and f"{tests['passed']} passed" in md
    # Progress lines with the elapsed time and the budget, and each stage's log.
    assert re.search(rf"\[gpu_check +{NUM}s / 1800s\] bench: ok after {NUM} s", proc.stdout)
    for stage in ("env", "tests", "bench", "train_S", "demo"):
        assert os.path.getsize(out / f"{stage}.log") > 0


def test_a_failing_stage_is_recorded_and_the_next_one_runs(tmp_path):
    out = tmp_path / "check"
    proc, s, md = _run(out, "--stages", "tests", "env", "--tests-filter", "no_such_test_name")
    assert proc.returncode == 1
    # Stages run in their fixed order (env first), whatever the order given.
    assert [(st["name"], st["status"]) for st in s["stages"]] == [("env", "ok"), ("tests", "failed")]
    assert s["failed"] == ["tests"] and "Failed stages: tests." in md
    assert "| tests | failed |" in md and "(see tests.log)" in md


def test_budget_and_timeouts_are_reported(tmp_path):
    gc = _tool()
    r = gc.Runner(str(tmp_path), "cpu", budget=3.0, quiet=True)
    rec = r.run("sleepy", [sys.executable, "-c", "import time; time.sleep(30)"], limit=60)
    assert rec["status"] == "skipped" and "budget" in rec["reason"]  # less than 5 s left: not started
    r = gc.Runner(str(tmp_path), "cpu", budget=60.0, quiet=True)
    rec = r.run("sleepy", [sys.executable, "-c", "print('hi', flush=True); import time; time.sleep(30)"], limit=6)
    assert rec["status"] == "timeout" and rec["returncode"] is None and 5 < rec["seconds"] < 25
    assert open(tmp_path / "sleepy.log").read() == "hi\n"
    r.add(rec)
    md = open(tmp_path / "summary.md").read()
    assert "| sleepy | timeout |" in md and "Failed stages: sleepy." in md


def test_summary_of_a_cuda_run_shows_both_precisions_and_throughput():
    """format_summary on the shape of a CUDA run (fp32 + AMP latency, kernel-time parts, train stages, failures)."""
    gc = _tool()

    def report(batch, modes, parts=None):
        row = dict(fwd_ms=2.5, fwd_bwd_ms=8.0, fwd_clips_per_s=400.0, train_clips_per_s=125.0, peak_mem_mb=900.0,
                   peak_mem_fwd_mb=100.0)
        res = {m: dict(models={"MTNet_S": dict(row), "X3D_S": dict(row, fwd_bwd_ms=6.4)},
                       pairs={"MTNet_S/X3D_S": dict(ratio_fwd=1.0, ratio_fwd_bwd=1.25, ratio_peak_mem=1.2)})
               for m in modes}
        rep = dict(machine=dict(gpu="NVIDIA H100"), settings=dict(batch=batch, amp_dtype="bfloat16",
                   input={"MTNet_S": [13, 160], "X3D_S": [13, 160]}), results=res)
        if parts:
            rep["parts"] = parts
        return gc.bench_result(rep)

    parts = {"MTNet_S": dict(share={"L conv": 0.5, "SoftPool": 0.2, "rest": 0.3}, total_ms=3.0,
                             time_basis="CUDA kernel time", share_not_conv_norm=0.5)}
    s = dict(device="cuda", started="2026-12-06T12:00:00+00:00", budget_s=460, command="tools/gpu_check.py out",
             total_s=300, failed=["train_L"], stages=[
                 dict(name="env", status="ok", seconds=5, log="env.log",
                      result=dict(gpu="NVIDIA H100", gpu_memory_gb=79.2, bf16=True, torch="2.14", cuda="13.0",
                                  packages={"onnx": True, "av": False})),
                 dict(name="tests", status="failed", seconds=100, log="tests.log",
                      result=dict(tests=10, failures=1, errors=0, skipped=2, passed=7,
                                  failed_tests=["tests.test_cuda_ops::test_x[cuda]"])),
                 dict(name="bench", status="ok", seconds=60, log="bench.log", json="bench_latency.json",
                      result=report(1, ["fp32", "amp"], parts)),
                 dict(name="train_S", status="ok", seconds=30, log="train_S.log", json="bench_train_S.json",
                      result=report(16, ["amp"])),
                 dict(name="train_L", status="timeout", seconds=45, log="train_L.log"),
             ])
    md = gc.format_summary(s)
    assert md.startswith("# GPU check (cuda): NVIDIA H100, 2026-12-06")
    assert "| env | ok | 5 | NVIDIA H100, 79.2 GB, bf16 True; missing: av |" in md
    assert "| tests | failed | 100 | 7 passed, 1 failed, 2 skipped (see tests.log) |" in md
    assert "- `tests.test_cuda_ops::test_x[cuda]`" in md and "| train_L | timeout | 45 |  (see train_L.log) |" in md
    assert "## Latency, batch 1 (CUDA events, median)" in md
    assert ("| model | input | fp32 fwd ms | fwd+bwd ms | peak MB | AMP, bfloat16 autocast fwd ms | fwd+bwd ms | "
            "peak MB |") in md
    assert "| MTNet_S | 13x160 | 2.5 | 8.0 | 900 | 2.5 | 8.0 | 900 |" in md
    assert "MTNet / X3D (AMP, bfloat16 autocast):" in md and "| MTNet_S/X3D_S | 1.00 | 1.25 | 1.20 |" in md
    assert "share of CUDA kernel time" in md and "| L conv | 50.0% |" in md
    assert "## Training throughput, batch 16 (AMP, bfloat16 autocast, forward+backward)" in md
    assert "| MTNet_S | 13x160 | 125.0 | 8.0 | 900 | 1.25 |" in md and "| X3D_S | 13x160 | 125.0 | 6.4 | 900 | - |" in md
