"""Repeated training runs of the synthetic demo for a list of variants (``tools/ablate.py``, docs/ablations.md).

A variant is a demo config plus ``--opts`` overrides; a run is (class-family preset, variant, seed). Each run is one
``tools/run_net.py`` process (train, validate, 30-view test) in its own output folder; its result is appended as
one json line to the results file, so an interrupted ablation resumes where it stopped (runs already in the file
are skipped, and a run cut off mid-training resumes from its last checkpoint through ``TRAIN.AUTO_RESUME``).
Identical runs requested by two groups (the default MTNet_XS is the SoftPool + cos row, the GRU row and the
delta 7/8 ``full`` row) are run once. ``summarize`` turns the file into a markdown table of mean +- std.
"""
import concurrent.futures
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import warnings
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from mtnet_plugin.data.synthetic import DEFAULT_PRESET, FLIP_SENSITIVE_PRESETS, PRESETS, ensure_synthetic_dataset

from mtnet_plugin.engine.evaluate import RESULTS_FILE
from mtnet_plugin.engine.runner import build_run_cfg

logger = logging.getLogger(__name__)

MTNET_CFG, X3D_CFG = "Synthetic/MTNet_XS.yaml", "Synthetic/X3D_XS.yaml"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of an ablation: ``config`` (relative to the configs folder) with ``opts`` (KEY VALUE ...)."""

    name: str
    config: str
    opts: Tuple[str, ...] = ()
    paper: str = ""  # the paper's counterpart, quoted in the table


def _pool_variants() -> List[Variant]:
    # Table VIc, top-1 on HACS for MTNet_S / M / L; the paper has no "max + cos" column.
    paper = {("avg", True): "77.8 / 79.8 / 83.8", ("max", True): "75.9 / 77.6 / 82.1",
             ("softpool", True): "77.8 / 80.7 / 84.2", ("avg", False): "80.5 / 82.6 / 85.9",
             ("max", False): "-", ("softpool", False): "80.7 / 83.4 / 86.6"}
    out = []
    for pool in ("avg", "max", "softpool"):
        out.append(Variant(f"{pool} symmetric", MTNET_CFG,
                           ("MTNET.POOL", pool, "MTNET.SYMMETRIC_POOL", "True", "MTNET.SELECTION", "none"),
                           paper[pool, True]))
        out.append(Variant(f"{pool} + cos", MTNET_CFG, () if pool == "softpool" else ("MTNET.POOL", pool),
                           paper[pool, False]))
    return out


def _delta_variants() -> List[Variant]:
    # Table VIa, MTNet_M top-1 on HACS (the paper's network, whatever its P input; docs/model_zoo.md).
    paper = {1.0: "82.2", 0.875: "83.4", 0.75: "83.1", 0.5: "79.7"}
    out = [Variant("delta 1 (no P)", MTNET_CFG, ("MTNET.DELTA", "1.0"), paper[1.0])]
    for p_input in ("full", "split", "split_io"):
        for delta in (0.875, 0.75, 0.5):
            opts = () if (p_input, delta) == ("full", 0.875) else ("MTNET.DELTA", str(delta), "MTNET.P_INPUT", p_input)
            out.append(Variant(f"{p_input}, delta {delta:g}", MTNET_CFG, opts, paper[delta]))
    return out


# name -> variants. The headline compares equal width and depth (X3D_XS) and equal FLOPs (depth factor 1.6).
GROUPS: Dict[str, List[Variant]] = {
    "headline": [
        Variant("MTNet_XS", MTNET_CFG, (), "Tab. II: MTConv 74.8 vs 3D 61.3 (K-400, ResNet-50)"),
        Variant("X3D_XS", X3D_CFG, (), "Tab. V: X3D-L 0.8 below MTNet_L (HACS)"),
        Variant("X3D_XS depth 1.6 (FLOP-matched)", X3D_CFG, ("X3D.DEPTH_FACTOR", "1.6"), "-"),
    ],
    "pooling": _pool_variants(),
    "delta": _delta_variants(),
    # Table VIb, MTNet_M top-1 on HACS.
    "cell": [Variant("gru", MTNET_CFG, (), "83.4"), Variant("lstm", MTNET_CFG, ("MTNET.CELL", "lstm"), "83.1"),
             Variant("rnn", MTNET_CFG, ("MTNET.CELL", "rnn"), "82.5")],
}


def preset_opts(preset: str, data_root: str) -> List[str]:
    """The overrides that point a demo config at ``preset``'s data: its folder, class count and (for a direction
    family) no random flips. The default preset keeps the configs' 4 classes and folder name."""
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; valid: {', '.join(PRESETS)}")
    if preset == DEFAULT_PRESET:
        return ["DATA.PATH_TO_DATA_DIR", os.path.join(data_root, "synthetic")]
    n = str(len(PRESETS[preset]))
    opts = ["SYNTHETIC.PRESET", preset, "SYNTHETIC.NUM_CLASSES", n, "MODEL.NUM_CLASSES", n,
            "DATA.PATH_TO_DATA_DIR", os.path.join(data_root, f"synthetic_{preset}")]
    if preset in FLIP_SENSITIVE_PRESETS:
        opts += ["DATA.RANDOM_FLIP", "False"]
    return opts


def epoch_opts(epochs: int) -> List[str]:
    """A shorter (or longer) schedule: MAX_EPOCH, with validation and checkpoints at most every ``epochs``."""
    if epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    period = str(min(4, epochs))
    return ["SOLVER.MAX_EPOCH", str(epochs), "TRAIN.EVAL_PERIOD", period, "TRAIN.CHECKPOINT_PERIOD", period]


@dataclasses.dataclass(frozen=True)
class Run:
    preset: str
    group: str
    variant: Variant
    seed: int
    common_opts: Tuple[str, ...]

    def key(self) -> str:
        """What makes two runs the same run: preset, config, opts, shared opts and seed (not the names)."""
        return json.dumps([self.preset, self.variant.config, list(self.variant.opts), list(self.common_opts),
                           self.seed])

    def output_dir(self, out_root: str) -> str:
        stem = os.path.splitext(os.path.basename(self.variant.config))[0].lower()
        slug = re.sub(r"[^A-Za-z0-9.]+", "-", "_".join(self.variant.opts)).strip("-") or "default"
        common = hashlib.sha1(json.dumps(list(self.common_opts)).encode()).hexdigest()[:8]
        return os.path.join(out_root, f"{self.preset}-{common}", f"{stem}__{slug}", f"seed{self.seed}")


def plan_runs(groups: Sequence[str], presets: Sequence[str], seeds: Sequence[int], common_opts: Sequence[str],
              only: Optional[Sequence[str]] = None) -> List[Run]:
    """Every (preset, seed, group, variant) asked for, in that order; ``only`` keeps the variants with those names."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown groups {unknown}; valid: {list(GROUPS)}")
    names = {v.name for g in groups for v in GROUPS[g]}
    missing = [n for n in only or () if n not in names]
    if missing:
        raise ValueError(f"--only names no variant of the groups {list(groups)}: {missing}; known: {sorted(names)}")
    # Seed-major: a partial ablation has every variant at the first seeds rather than some variants at all seeds.
    return [Run(p, g, v, s, tuple(common_opts)) for p in presets for s in seeds for g in groups for v in GROUPS[g]
            if not only or v.name in only]


def read_results(path: str) -> List[dict]:
    """The json lines of ``path`` (none when it does not exist); a torn last line (a crash mid-write) is skipped."""
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.warning("%s:%d is not a json line (an interrupted write?); ignored", path, number)
    return rows


def _append(path: str, row: dict, lock: threading.Lock) -> None:
    with lock:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())


def model_cost(config_path: str, opts: Sequence[str]) -> Tuple[int, float]:
    """(params, GFLOPs per view) of the run's model at its test input, 3 x NUM_FRAMES x crop x crop."""
    from mtnet_plugin.models import build_model, model_stats

    cfg = build_run_cfg(config_path, opts)
    model = build_model(cfg)
    crop = int(cfg.DATA.TEST_CROP_SIZE)
    with warnings.catch_warnings():  # the tracer's notes on shapes read as Python ints: expected, not news
        warnings.simplefilter("ignore")
        stats = model_stats(model, (3, int(cfg.DATA.NUM_FRAMES), crop, crop))
    return int(stats["params"]), float(stats["gflops"])


def _run_opts(run: Run, out_dir: str) -> List[str]:
    return list(run.common_opts) + list(run.variant.opts) + ["RNG_SEED", str(run.seed), "OUTPUT_DIR", out_dir]


def remaining_seconds(recent_walls: Sequence[float], runs_left: int, jobs: int) -> float:
    """ETA: the runs left (those in flight counted whole) at the recent runs' mean wall time, ``jobs`` at a time."""
    if not recent_walls or runs_left <= 0:
        return 0.0
    return statistics.mean(recent_walls) * runs_left / max(1, jobs)


def execute(runs: Sequence[Run], *, results: str, config_dir: str, run_net: str, out_root: str, jobs: int = 1,
            progress: Callable[[str], None] = print) -> List[dict]:
    """Run what ``results`` does not hold yet, ``jobs`` at a time, appending one json line per finished run.

    Returns:
        The new rows. A run that fails is reported through ``progress`` and left out (a rerun retries it).

    Raises:
        RuntimeError: after all runs, when some failed (their logs are named).
    """
    done = {row["key"] for row in read_results(results)}
    todo, seen = [], set(done)
    for run in runs:
        if run.key() not in seen:
            seen.add(run.key())
            todo.append(run)
    progress(f"{len(runs)} runs asked, {len(runs) - len(todo)} already in {results}, {len(todo)} to run")
    if not todo:
        return []
    for preset in dict.fromkeys(r.preset for r in todo):  # generate each data set once, before parallel runs
        first = next(r for r in todo if r.preset == preset)
        cfg = build_run_cfg(os.path.join(config_dir, first.variant.config), list(first.common_opts))
        progress(f"data for preset {preset}: {ensure_synthetic_dataset(cfg)}")
    costs: Dict[Tuple[str, Tuple[str, ...]], Tuple[int, float]] = {}
    lock, new, failed = threading.Lock(), [], []

    def one(run: Run) -> None:
        out_dir = run.output_dir(out_root)
        os.makedirs(out_dir, exist_ok=True)
        cfg_path = os.path.join(config_dir, run.variant.config)
        opts = _run_opts(run, out_dir)
        cost_key = (run.variant.config, tuple(run.common_opts) + tuple(run.variant.opts))
        with lock:
            cost = costs.get(cost_key)
        if cost is None:
            cost = model_cost(cfg_path, opts)
            with lock:
                costs[cost_key] = cost
        log_path = os.path.join(out_dir, "ablate_run.log")
        t0 = time.time()
        with open(log_path, "w") as log:
            proc = subprocess.run([sys.executable, run_net, "--cfg", cfg_path, "--opts"] + opts,
                                  stdout=log, stderr=subprocess.STDOUT)
        wall = time.time() - t0
        res_path = os.path.join(out_dir, RESULTS_FILE)
        if proc.returncode != 0 or not os.path.isfile(res_path):
            with lock:
                failed.append(log_path)
            progress(f"FAILED ({proc.returncode}) {run.preset} / {run.variant.name} / seed {run.seed}: see {log_path}")
            return
        with open(res_path) as f:
            res = json.load(f)
        row = {"key": run.key(), "preset": run.preset, "group": run.group, "variant": run.variant.name,
               "config": run.variant.config, "opts": list(run.variant.opts), "common_opts": list(run.common_opts),
               "seed": run.seed, "top1": res["top1"], "top5": res["top5"], "mean_class_acc": res["mean_class_acc"],
               "num_videos": res["num_videos"], "num_views": res.get("num_views"), "params": cost[0],
               "gflops": cost[1], "wall_s": round(wall, 1), "output_dir": out_dir,
               "finished_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        _append(results, row, lock)
        with lock:
            new.append(row)
            n = len(new) + len(failed)
            recent = [r["wall_s"] for r in new[-2 * max(1, jobs):]]
        eta = remaining_seconds(recent, len(todo) - n, jobs)
        progress(f"[{n}/{len(todo)}] {run.preset} / {run.variant.name} / seed {run.seed}: top-1 {res['top1']:.1f} % "
                 f"in {wall:.0f} s; ETA {eta / 60:.0f} min")

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(one, run) for run in todo]:
            future.result()
    if failed:
        raise RuntimeError(f"{len(failed)} runs failed; logs: {failed}")
    return new


def summarize(rows: Iterable[dict], runs: Sequence[Run], command: Callable[[Run], str]) -> str:
    """A markdown table, one line per (preset, group, variant) of ``runs``: 30-view top-1 as mean +- sample std
    over the seeds found in ``rows`` (matched by run key), each seed's value, params, GFLOPs per view and the paper's
    number; a variant with no result says "not run" and gives ``command(run)``."""
    by_key = {}
    for row in rows:
        by_key.setdefault(row["key"], row)
    lines = ["| preset | group | variant | seeds | 30-view top-1 (%) mean ± std | per seed | params (M) | "
             "GFLOPs / view | paper |", "|---|---|---|---|---|---|---|---|---|"]
    order: Dict[Tuple[str, str, str], List[Run]] = {}
    for run in runs:
        order.setdefault((run.preset, run.group, run.variant.name), []).append(run)
    for (preset, group, name), group_runs in order.items():
        found = [by_key[r.key()] for r in group_runs if r.key() in by_key]
        paper = group_runs[0].variant.paper or "-"
        if not found:
            hint = command(group_runs[0])
            lines.append(f"| {preset} | {group} | {name} | none | not run: `{hint}` | | | | {paper} |")
            continue
        top1 = [row["top1"] for row in found]
        mean = statistics.mean(top1)
        spread = "n/a (1 seed)" if len(top1) < 2 else f"{statistics.stdev(top1):.1f}"
        seeds = ",".join(str(row["seed"]) for row in found)
        each = " / ".join(f"{value:.1f}" for value in top1)
        lines.append(f"| {preset} | {group} | {name} | {seeds} | **{mean:.1f}** ± {spread} | {each} | "
                     f"{found[0]['params'] / 1e6:.2f} | {found[0]['gflops']:.4f} | {paper} |")
    return "\n".join(lines) + "\n"
