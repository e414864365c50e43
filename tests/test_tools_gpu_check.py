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
