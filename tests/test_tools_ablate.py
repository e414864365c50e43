"""tools/ablate.py and mtnet_plugin.benchmarks.ablation: the run plan, resuming from the results file, the table, and
one tiny real ablation (2 variants, 1 seed, a 4-video data set, 1 epoch) through tools/run_net.py."""
import json
import os
import subprocess
import sys

import pytest

from mtnet_plugin.benchmarks import ablation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABLATE = os.path.join(ROOT, "tools", "ablate.py")

TINY_OPTS = [
    "SYNTHETIC.NUM_TRAIN", "2", "SYNTHETIC.NUM_VAL", "1", "SYNTHETIC.NUM_TEST", "1", "SYNTHETIC.FRAMES", "16",
    "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "2", "X3D.WIDTH_FACTOR", "0.5", "X3D.DEPTH_FACTOR", "0.5",
    "X3D.DIM_C5", "32", "TRAIN.BATCH_SIZE", "4", "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "1",
    "SOLVER.WARMUP_EPOCHS", "0.0", "DATA_LOADER.NUM_WORKERS", "0",
]


def test_plan_shares_identical_runs_and_checks_names():
    runs = ablation.plan_runs(["pooling", "delta", "cell"], ["tempo"], [0, 1], [])
    assert len(runs) == (6 + 10 + 3) * 2
    # The default MTNet_XS is softpool + cos, full delta 7/8 and gru: one run key per seed for the three rows.
    default_keys = {r.key() for r in runs if not r.variant.opts and r.variant.config == ablation.MTNET_CFG}
    assert len(default_keys) == 2
    sym = next(r for r in runs if r.variant.name == "max symmetric")
    assert sym.variant.opts == ("MTNET.POOL", "max", "MTNET.SYMMETRIC_POOL", "True", "MTNET.SELECTION", "none")
    split_io = [r for r in runs if r.variant.name.startswith("split_io")]
    assert {r.variant.opts[1] for r in split_io} == {"0.875", "0.75", "0.5"}
    with pytest.raises(ValueError, match="unknown groups"):
        ablation.plan_runs(["nope"], ["tempo"], [0], [])
    with pytest.raises(ValueError, match="--only names no variant"):
        ablation.plan_runs(["cell"], ["tempo"], [0], [], only=["lstm", "transformer"])
    assert ablation.preset_opts("direction", "d")[-2:] == ["DATA.RANDOM_FLIP", "False"]
    assert "SYNTHETIC.PRESET" not in ablation.preset_opts("tempo", "d")
    assert ablation.epoch_opts(2) == ["SOLVER.MAX_EPOCH", "2", "TRAIN.EVAL_PERIOD", "2", "TRAIN.CHECKPOINT_PERIOD", "2"]


def test_summary_mean_std_and_rows_not_run(tmp_path):
    runs = ablation.plan_runs(["cell"], ["tempo"], [0, 1, 2], [])
    rows = [{"key": r.key(), "seed": r.seed, "top1": top1, "params": 812345, "gflops": 0.0241}
            for r, top1 in zip([r for r in runs if r.variant.name == "gru"], (90.0, 94.0, 98.0))]
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(row) + "\n" for row in rows) + '{"key": "torn')  # a crash mid-line
    table = ablation.summarize(ablation.read_results(str(results)), runs, lambda run: f"cmd {run.variant.name}")
    gru = next(line for line in table.splitlines() if "| gru |" in line)
    assert "| 0,1,2 | **94.0** ± 4.0 | 90.0 / 94.0 / 98.0 | 0.81 | 0.0241 | 83.4 |" in gru  # sample std of 90, 94, 98
    lstm = next(line for line in table.splitlines() if "| lstm |" in line)
    assert "| none | not run: `cmd lstm` |" in lstm


def test_eta_counts_parallel_jobs_and_recent_runs_only():
    # two jobs at 300 s per run: four runs left take 600 s, not the 1200 s of elapsed / done x left
    assert ablation.remaining_seconds([200.0, 400.0], 4, 2) == 600.0
    assert ablation.remaining_seconds([300.0], 3, 1) == 900.0
    assert ablation.remaining_seconds([300.0], 0, 2) == 0.0 and ablation.remaining_seconds([], 5, 2) == 0.0


@pytest.mark.slow
def test_tiny_ablation_writes_json_lines_and_table_and_resumes(tmp_path):
    results, table = str(tmp_path / "results.jsonl"), str(tmp_path / "table.md")
    args = [sys.executable, ABLATE, "--groups", "headline", "--only", "MTNet_XS", "X3D_XS", "--seeds", "3",
            "--epochs", "1", "--jobs", "2", "--results", results, "--table", table, "--out", str(tmp_path / "out"),
            "--data-root", str(tmp_path / "data"), "--opts"] + TINY_OPTS
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(args, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = ablation.read_results(results)
    assert sorted(r["variant"] for r in rows) == ["MTNet_XS", "X3D_XS"]
    text = open(table).read()
    for row in rows:
        res = json.load(open(os.path.join(row["output_dir"], "test_results.json")))
        assert row["top1"] == res["top1"] and row["num_videos"] == 4 and row["num_views"] == 2
        assert row["seed"] == 3 and row["wall_s"] > 0 and row["gflops"] > 0
        cfg = open(os.path.join(row["output_dir"], "config.yaml")).read()
        assert "RNG_SEED: 3" in cfg and "MAX_EPOCH: 1" in cfg
        line = next(line for line in text.splitlines() if f"| {row['variant']} |" in line)
        assert f"**{row['top1']:.1f}** ± n/a (1 seed)" in line and f"| {row['params'] / 1e6:.2f} |" in line
    mt, x3d = (next(r for r in rows if r["variant"] == v) for v in ("MTNet_XS", "X3D_XS"))
    assert mt["params"] > x3d["params"] > 0  # MTConv's P branch and SR add parameters to the same X3D
    again = subprocess.run(args, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "2 already in" in again.stdout and "0 to run" in again.stdout
    assert len(ablation.read_results(results)) == 2
