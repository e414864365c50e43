"""The GPU check: one command that, on a machine with a CUDA GPU, runs the CUDA tests, the MTNet-beside-X3D
benchmark and the demo training, and writes what came out to OUTDIR as json and markdown.

    tools/gpu_check.sh OUTDIR                  # a GPU machine: under 8 minutes on one H100 (--budget)
    tools/gpu_check.sh OUTDIR --device cpu     # tiny sizes on the CPU: proves the script itself (CI runs it)
    tools/gpu_check.sh OUTDIR --stages bench demo   # rerun some stages

Stages, in order, each a subprocess with its own time limit (and all of them within ``--budget`` seconds); a stage
that fails or runs out of time is recorded as such and the next one runs:

- ``env``: torch, CUDA, the GPU's name, memory and bf16 support, the optional packages.
- ``tests``: ``pytest -m "cuda and not slow" tests/test_cuda_*.py`` (the demo test is left to the demo stage);
  on the CPU the CPU variants of tests/test_cuda_ops.py. Counts and failed tests from a junit xml.
- ``bench``: ``tools/benchmark.py`` for MTNet_S/M/L beside X3D_S/M/L at their native inputs, batch 1, fp32 and
  AMP (bf16 autocast): latency of forward and forward+backward, peak memory, MTNet/X3D ratios, and the share of
  MTNet's forward kernel time per part.
- ``train_S``, ``train_M``, ``train_L``: training throughput, one process per same-size pair: forward+backward
  with AMP at ``--train-batch`` clips (16, the paper protocol's 64 clips over 4 GPUs), clips/s and peak memory.
- ``demo``: ``tools/run_net.py --cfg configs/Synthetic/MTNet_XS.yaml`` on the GPU with ``NUM_GPUS 1`` and
  ``TRAIN.MIXED_PRECISION True`` (data generated under OUTDIR): 30-view accuracy and wall time.

OUTDIR gets ``summary.json`` and ``summary.md`` (rewritten after every stage, so an interrupted run keeps what
finished), one ``<stage>.log`` per stage, the benchmark's json files and the demo's output folder.
Exit status 0 when every stage passed, else 1.
"""
import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = ("S", "M", "L")
STAGES = ("env", "tests", "bench") + tuple(f"train_{s}" for s in SIZES) + ("demo",)
# Time limits in seconds on CUDA. They add up to more than the default budget on purpose: a stage rarely uses its
# whole limit, and the budget cuts the last stage short rather than the run going past 8 minutes.
LIMITS = {"env": 20, "tests": 170, "bench": 90, "train_S": 35, "train_M": 35, "train_L": 45, "demo": 150}
# On the CPU (tiny sizes, about 30 s of CPU time in all) the limits only catch a hang: a shared CI machine may be
# many times slower than an idle one.
CPU_LIMITS = {name: 600 for name in LIMITS}
BUDGET_S = 460  # 7 min 40 s on CUDA
CPU_BUDGET_S = 1800
CPU_CFGS = [os.path.join(ROOT, "configs", "Synthetic", f"{m}_XS.yaml") for m in ("MTNet", "X3D")]
DEMO_CFG = os.path.join(ROOT, "configs", "Synthetic", "MTNet_XS.yaml")
# The CPU demo: tests/test_demo_synthetic.py's shrunk run, one epoch.
CPU_DEMO_OPTS = [
    "SYNTHETIC.NUM_TRAIN", "2", "SYNTHETIC.NUM_VAL", "1", "SYNTHETIC.NUM_TEST", "1", "SYNTHETIC.FRAMES", "16",
    "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "2", "X3D.WIDTH_FACTOR", "0.5", "X3D.DEPTH_FACTOR", "0.5",
    "X3D.DIM_C5", "32", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "30", "SOLVER.MAX_EPOCH", "1",
    "SOLVER.WARMUP_EPOCHS", "0.0", "TRAIN.EVAL_PERIOD", "1", "TRAIN.CHECKPOINT_PERIOD", "1",
    "DATA_LOADER.NUM_WORKERS", "0", "LOG_PERIOD", "1",
]

ENV_SCRIPT = r"""
import importlib.util, json, platform, sys, torch
info = dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
            cuda_available=torch.cuda.is_available(), cpus=__import__("os").cpu_count(),
            packages={m: importlib.util.find_spec(m) is not None
                      for m in ("fvcore", "av", "onnx", "onnxruntime", "onnxscript", "pytest", "matplotlib")})
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                gpu_memory_gb=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                bf16=torch.cuda.is_bf16_supported(), cudnn=torch.backends.cudnn.version())
    x = torch.randn(256, 256, device="cuda")
    info["matmul_ok"] = bool(torch.isfinite(x @ x).all())
import mtnet_plugin
info["mtnet_plugin"] = mtnet_plugin.__file__
print("ENV " + json.dumps(info))
"""


# ------------------------------------------------------------------------------------------------ running
class Runner:
    """Runs the stages as subprocesses within the budget; keeps ``summary`` and rewrites the summary files."""

    def __init__(self, out: str, device: str, budget: float, quiet: bool = False):
        self.out, self.device, self.budget, self.quiet = out, device, budget, quiet
        self.t0 = time.monotonic()
        self.summary: Dict[str, Any] = dict(
            device=device, started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            budget_s=budget, command=" ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]), stages=[])

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[gpu_check {self.elapsed():5.0f}s / {self.budget:.0f}s] {text}", flush=True)

    def run(self, name: str, cmd: List[str], limit: float, env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        """Run ``cmd`` (output to ``<name>.log`` and, prefixed, to stdout) for at most ``limit`` seconds or what is
        left of the budget; returns the stage record (status ok / failed / timeout / skipped)."""
        left = self.budget - self.elapsed()
        timeout = min(limit, left)
        log_path = os.path.join(self.out, f"{name}.log")
        record = dict(name=name, command=" ".join(cmd), limit_s=limit, log=os.path.basename(log_path))
        if timeout < 5:
            record.update(status="skipped", seconds=0.0, reason=f"budget of {self.budget:.0f} s used up")
            self.say(f"{name}: skipped, the budget is used up")
            return record
        self.say(f"{name}: start (limit {timeout:.0f} s): {' '.join(cmd)}")
        start = time.monotonic()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", start_new_session=True)

            def pump():
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    if not self.quiet:
                        print(f"  {name} | {line}", end="", flush=True)

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            try:
                rc = proc.wait(timeout=timeout)
                status = "ok" if rc == 0 else "failed"
            except subprocess.TimeoutExpired:
                self._stop(proc)
                rc, status = None, "timeout"
            reader.join(timeout=10)
        record.update(status=status, returncode=rc, seconds=round(time.monotonic() - start, 1))
        self.say(f"{name}: {status} after {record['seconds']:.0f} s")
        return record

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        """SIGTERM to the stage's process group (its own children included), SIGKILL after 10 s."""
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def add(self, record: Dict[str, Any]) -> None:
        self.summary["stages"] = [s for s in self.summary["stages"] if s["name"] != record["name"]] + [record]
        self.summary["failed"] = [s["name"] for s in self.summary["stages"] if s["status"] != "ok"]
        self.summary["total_s"] = round(self.elapsed(), 1)
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump(self.summary, f, indent=1)
        with open(os.path.join(self.out, "summary.md"), "w") as f:
            f.write(format_summary(self.summary))


def child_env(device: str) -> Dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    if device == "cpu":
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


# ---------------------------------------------------------------------------------------------- the stages
def stage_env(r: Runner, args) -> Dict[str, Any]:
    rec = r.run("env", [sys.executable, "-c", ENV_SCRIPT], r_limit(args, "env"), child_env(args.device))
    info = _marked_json(os.path.join(r.out, "env.log"), "ENV ")
    if info is not None:
        rec["result"] = info
        if args.device == "cuda" and not info.get("cuda_available"):
            rec.update(status="failed", reason="torch sees no CUDA GPU")
    return rec


def stage_tests(r: Runner, args) -> Dict[str, Any]:
    xml = os.path.join(r.out, "cuda_tests.xml")
    if args.device == "cuda":
        files = [os.path.join("tests", f) for f in sorted(os.listdir(os.path.join(ROOT, "tests")))
                 if f.startswith("test_cuda_") and f.endswith(".py")]
        select = ["-m", "cuda and not slow"]
    else:
        files, select = [os.path.join("tests", "test_cuda_ops.py")], ["-m", "not cuda"]
    if args.tests_filter:
        select += ["-k", args.tests_filter]
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "--junitxml", xml, *select,
           *files]
    rec = r.run("tests", cmd, r_limit(args, "tests"), child_env(args.device))
    counts = junit_counts(xml)
    if counts is not None:
        rec["result"] = counts
        if counts["tests"] - counts["skipped"] == 0:
            rec.update(status="failed", reason="no test ran")
    return rec


def bench_cmd(args, json_path: str, train: bool, size: Optional[str] = None) -> List[str]:
    cmd = [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"), "--device", args.device, "--json", json_path]
    if args.device == "cuda":
        models = [f"{f}_{size}" for f in ("MTNet", "X3D")] if train else [f"{f}_{s}" for s in SIZES
                                                                           for f in ("MTNet", "X3D")]
        cmd += ["--models", *models, "--amp-dtype", "bfloat16"]
        if train:
            cmd += ["--batch", str(args.train_batch), "--amp-only", "--no-parts", "--repeats", "3", "--warmup", "2"]
        else:
            cmd += ["--batch", "1", "--repeats", "5", "--warmup", "2"]
    else:
        cmd += ["--cfg", *CPU_CFGS, "--input", "4x32", "--threads", "1", "--repeats", "2", "--warmup", "1"]
        if train:
            cmd += ["--batch", "2", "--no-parts", "--no-amp"]
    return cmd


def stage_bench(r: Runner, args) -> Dict[str, Any]:
    path = os.path.join(r.out, "bench_latency.json")
    rec = r.run("bench", bench_cmd(args, path, train=False), r_limit(args, "bench"), child_env(args.device))
    return _with_json(rec, path, "bench_latency.json")


def stage_train(r: Runner, args, size: str) -> Dict[str, Any]:
    name = f"train_{size}"
    path = os.path.join(r.out, f"bench_{name}.json")
    rec = r.run(name, bench_cmd(args, path, train=True, size=size), r_limit(args, name), child_env(args.device))
    return _with_json(rec, path, os.path.basename(path))


def stage_demo(r: Runner, args) -> Dict[str, Any]:
    out, data = os.path.join(r.out, "demo"), os.path.join(r.out, "demo_data")
    opts = ["OUTPUT_DIR", out, "DATA.PATH_TO_DATA_DIR", data, "TRAIN.MIXED_PRECISION", "True"]
    if args.device == "cuda":
        opts += ["NUM_GPUS", "1", "DATA_LOADER.NUM_WORKERS", "6", "DATA_LOADER.PIN_MEMORY", "True"]
    else:
        opts += ["NUM_GPUS", "0"] + CPU_DEMO_OPTS
    cmd = [sys.executable, os.path.join(ROOT, "tools", "run_net.py"), "--cfg", DEMO_CFG, "--opts", *opts]
    rec = r.run("demo", cmd, r_limit(args, "demo"), child_env(args.device))
    result = demo_result(out)
    if result is not None:
        result["wall_s"] = rec["seconds"]
        rec["result"] = result
    elif rec["status"] == "ok":
        rec.update(status="failed", reason="no test_results.json")
    return rec


def r_limit(args, name: str) -> float:
    return (LIMITS if args.device == "cuda" else CPU_LIMITS)[name]


# ------------------------------------------------------------------------------------------------ results
def _marked_json(log_path: str, marker: str) -> Optional[Dict[str, Any]]:
    try:
        with open(log_path) as f:
            for line in f:
                if line.startswith(marker):
                    return json.loads(line[len(marker):])
    except (OSError, ValueError):
        pass
    return None


def _with_json(rec: Dict[str, Any], path: str, name: str) -> Dict[str, Any]:
    if os.path.isfile(path):
        rec["json"] = name
        with open(path) as f:
            rec["result"] = bench_result(json.load(f))
    elif rec["status"] == "ok":
        rec.update(status="failed", reason=f"no {name}")
    return rec


def junit_counts(path: str) -> Optional[Dict[str, Any]]:
    """tests / failures / errors / skipped / passed and the failed tests' ids from a pytest junit xml."""
    if not os.path.isfile(path):
        return None
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["failed_tests"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                              if c.find("failure") is not None or c.find("error") is not None]
    return counts


def bench_result(report: Dict[str, Any]) -> Dict[str, Any]:
    """The numbers the summary shows from a tools/benchmark.py json: per precision, model and pair."""
    out: Dict[str, Any] = dict(gpu=report["machine"].get("gpu"), batch=report["settings"]["batch"],
                               input=report["settings"]["input"], amp_dtype=report["settings"].get("amp_dtype"))
    keys = ("fwd_ms", "fwd_bwd_ms", "fwd_clips_per_s", "train_clips_per_s", "peak_mem_mb", "peak_mem_fwd_mb")
    for mode, res in report["results"].items():
        out[mode] = dict(models={m: {k: row.get(k) for k in keys} for m, row in res["models"].items()},
                         pairs=res["pairs"])
    if report.get("parts"):
        out["parts"] = {m: dict(share=p["share"], total_ms=p["total_ms"], time_basis=p.get("time_basis"),
                                share_not_conv_norm=p["share_not_conv_norm"]) for m, p in report["parts"].items()}
    return out


def demo_result(out: str) -> Optional[Dict[str, Any]]:
    """30-view test metrics and the last epoch's training loss / validation error of a run_net output folder."""
    path = os.path.join(out, "test_results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        res = json.load(f)
    result = {k: res.get(k) for k in ("top1", "top5", "mean_class_acc", "num_videos", "num_views")}
    stats_path = os.path.join(out, "json_stats.log")
    if os.path.isfile(stats_path):
        with open(stats_path) as f:
            stats = [json.loads(line.split("json_stats:", 1)[-1]) for line in f if line.strip()]
        train = [s for s in stats if s.get("_type") == "train_epoch"]
        val = [s for s in stats if s.get("_type") == "val_epoch"]
        if train:
            result.update(epochs=len(train), final_train_loss=float(train[-1]["loss"]))
        if val:
            result["final_val_top1_err"] = float(val[-1]["top1_err"])
    return result


# ------------------------------------------------------------------------------------------------ markdown
def _f(v, fmt=".1f") -> str:
    return "-" if v is None else format(v, fmt)


def format_summary(s: Dict[str, Any]) -> str:
    env = next((st.get("result") for st in s["stages"] if st["name"] == "env"), None) or {}
    lines = [f"# GPU check ({s['device']}): {env.get('gpu', 'no GPU')}, {s['started']}", "",
             f"`{s['command']}`; torch {env.get('torch', '?')}, CUDA {env.get('cuda', '-')}, "
             f"{s.get('total_s', 0):.0f} s of a {s['budget_s']:.0f} s budget. "
             f"Failed stages: {', '.join(s.get('failed', [])) or 'none'}.", "",
             "| stage | status | seconds | result |", "|---|---|---|---|"]
    for st in s["stages"]:
        lines.append(f"| {st['name']} | {st['status']} | {st.get('seconds', 0):.0f} | {_stage_note(st)} |")
    tests = _result(s, "tests")
    if tests and tests.get("failed_tests"):
        lines += ["", "Failed tests:", ""] + [f"- `{t}`" for t in tests["failed_tests"]]
    bench = _result(s, "bench")
    if bench:
        lines += ["", f"## Latency, batch {bench['batch']} (CUDA events, median)" if s["device"] == "cuda"
                  else f"## Latency, batch {bench['batch']} (CPU)", ""]
        lines += _latency_table(bench)
        for mode in ("fp32", "amp"):
            if mode in bench and bench[mode]["pairs"]:
                lines += ["", f"MTNet / X3D ({_mode(mode, bench)}):", "", "| pair | fwd | fwd+bwd | peak mem |",
                          "|---|---|---|---|"]
                for name, p in bench[mode]["pairs"].items():
                    lines.append(f"| {name} | {_f(p['ratio_fwd'], '.2f')} | {_f(p['ratio_fwd_bwd'], '.2f')} | "
                                 f"{_f(p.get('ratio_peak_mem'), '.2f')} |")
        if bench.get("parts"):
            labels = list(bench["parts"])
            basis = bench["parts"][labels[0]].get("time_basis") or "time"
            lines += ["", f"MTNet's forward by part (fp32 eval forward, share of {basis}):", "",
                      "| part | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
            parts = sorted({k for p in bench["parts"].values() for k in p["share"]},
                           key=lambda k: -max(p["share"].get(k, 0) for p in bench["parts"].values()))
            for part in parts:
                lines.append(f"| {part} | " + " | ".join(
                    f"{100 * bench['parts'][m]['share'].get(part, 0):.1f}%" for m in labels) + " |")
            lines.append("| not conv / norm | " + " | ".join(
                f"{100 * bench['parts'][m]['share_not_conv_norm']:.1f}%" for m in labels) + " |")
    trains = [(st["name"], st["result"]) for st in s["stages"] if st["name"].startswith("train_") and st.get("result")]
    if trains:
        first = trains[0][1]
        mode = "amp" if "amp" in first else "fp32"
        lines += ["", f"## Training throughput, batch {first['batch']} ({_mode(mode, first)}, forward+backward)", "",
                  "| model | input | train clips/s | fwd+bwd ms | peak MB | MTNet / X3D time |", "|---|---|---|---|---|---|"]
        for _, res in trains:
            part = res.get(mode, {})
            ratio = {a: p["ratio_fwd_bwd"] for name, p in part.get("pairs", {}).items() for a in name.split("/")[:1]}
            for m, row in part.get("models", {}).items():
                t, sz = res["input"][m]
                lines.append(f"| {m} | {t}x{sz} | {_f(row['train_clips_per_s'])} | {_f(row['fwd_bwd_ms'])} | "
                             f"{_f(row['peak_mem_mb'], '.0f')} | {_f(ratio.get(m), '.2f')} |")
    demo = _result(s, "demo")
    if demo:
        lines += ["", "## Demo training (configs/Synthetic/MTNet_XS.yaml, TRAIN.MIXED_PRECISION True)", "",
                  f"30-view top-1 {_f(demo.get('top1'))} %, top-5 {_f(demo.get('top5'))} %, mean class accuracy "
                  f"{_f(demo.get('mean_class_acc'))} % over {demo.get('num_videos')} videos; {demo.get('epochs')} "
                  f"epochs, final train loss {_f(demo.get('final_train_loss'), '.4f')}, final val top-1 error "
                  f"{_f(demo.get('final_val_top1_err'))} %; wall time {_f(demo.get('wall_s'), '.0f')} s "
                  "(data generation included)."]
    return "\n".join(lines) + "\n"


def _result(s: Dict[str, Any], name: str) -> Optional[Dict[str, Any]]:
    return next((st.get("result") for st in s["stages"] if st["name"] == name), None)


def _mode(mode: str, res: Dict[str, Any]) -> str:
    return f"AMP, {res.get('amp_dtype') or 'float16'} autocast" if mode == "amp" else "fp32"


def _latency_table(bench: Dict[str, Any]) -> List[str]:
    modes = [m for m in ("fp32", "amp") if m in bench]
    head = "| model | input | " + " | ".join(f"{_mode(m, bench)} fwd ms | fwd+bwd ms | peak MB" for m in modes) + " |"
    lines = [head, "|---|---|" + "---|---|---|" * len(modes)]
    for m in bench[modes[0]]["models"]:
        t, sz = bench["input"][m]
        cells = []
        for mode in modes:
            row = bench[mode]["models"][m]
            cells += [_f(row["fwd_ms"]), _f(row["fwd_bwd_ms"]), _f(row.get("peak_mem_mb"), ".0f")]
        lines.append(f"| {m} | {t}x{sz} | " + " | ".join(cells) + " |")
    return lines


def _stage_note(st: Dict[str, Any]) -> str:
    res, note = st.get("result") or {}, st.get("reason", "")
    if st["name"] == "env" and res:
        note = (f"{res.get('gpu', 'no GPU')}, {res.get('gpu_memory_gb', '-')} GB, bf16 {res.get('bf16', '-')}; "
                f"missing: {', '.join(k for k, v in res.get('packages', {}).items() if not v) or 'none'}")
    elif st["name"] == "tests" and res:
        note = (f"{res['passed']} passed, {res['failures'] + res['errors']} failed, {res['skipped']} skipped "
                f"({st.get('reason', '')})" if st.get("reason") else
                f"{res['passed']} passed, {res['failures'] + res['errors']} failed, {res['skipped']} skipped")
    elif st["name"] == "demo" and res:
        note = f"30-view top-1 {_f(res.get('top1'))} %, {_f(res.get('wall_s'), '.0f')} s"
    elif res and st.get("json"):
        note = st["json"]
    return note + (f" (see {st['log']})" if st["status"] != "ok" else "")


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", help="folder for the results (created)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda (default): the check; cpu: tiny sizes, to test this script")
    p.add_argument("--stages", nargs="*", default=list(STAGES), choices=STAGES, help="stages to run (default all)")
    p.add_argument("--budget", type=float, default=None,
                   help=f"seconds for all stages (default {BUDGET_S} on CUDA, {CPU_BUDGET_S} on the CPU)")
    p.add_argument("--train-batch", dest="train_batch", type=int, default=16,
                   help="clips per step of the train_* stages on CUDA (default 16)")
    p.add_argument("--tests-filter", dest="tests_filter", default=None, help="pytest -k expression for tests")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.outdir, exist_ok=True)
    budget = args.budget or (BUDGET_S if args.device == "cuda" else CPU_BUDGET_S)
    r = Runner(os.path.abspath(args.outdir), args.device, budget, args.quiet)
    r.say(f"device {args.device}, stages {' '.join(args.stages)}, results in {r.out}")
    for name in STAGES:
        if name not in args.stages:
            continue
        if name.startswith("train_"):
            if args.device == "cpu" and name != "train_S":  # one tiny pair stands for the three on the CPU
                continue
            rec = stage_train(r, args, name.split("_", 1)[1])
        else:
            rec = {"env": stage_env, "tests": stage_tests, "bench": stage_bench, "demo": stage_demo}[name](r, args)
        r.add(rec)
    r.say(f"done: failed stages {r.summary['failed'] or 'none'}; {os.path.join(r.out, 'summary.md')}")
    if not args.quiet:
        print(format_summary(r.summary), flush=True)
    return 1 if r.summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
