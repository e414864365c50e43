#!/usr/bin/env python
"""Train the synthetic demo for a list of variants over several seeds and tabulate mean +- std (docs/ablations.md).

    python tools/ablate.py --groups headline --seeds 0 1 2                       # MTNet_XS vs X3D_XS vs FLOP-matched
    python tools/ablate.py --groups headline --seeds 0 1 2 --preset direction    # another class family
    python tools/ablate.py --groups pooling delta cell --seeds 0 1 2 --epochs 8  # Table VIa/b/c counterparts
    python tools/ablate.py --groups headline --seeds 0 1 2 --summarize-only      # only the table

Groups: headline (MTNet_XS, X3D_XS, X3D_XS with X3D.DEPTH_FACTOR 1.6), pooling (avg / max / softpool, symmetric
vs triplet cosine), delta (1, 7/8, 3/4, 1/2 for each MTNET.P_INPUT), cell (gru / lstm / rnn). Each run is
``tools/run_net.py`` on configs/Synthetic/*.yaml with the variant's --opts, RNG_SEED = the seed, and its own
OUTPUT_DIR under --out; one json line per finished run goes to --results, and a rerun skips the runs already
there (so an interrupted ablation resumes). The data set (SYNTHETIC.SEED 0) is the same for every seed; the seed
changes initialisation, sampling and augmentation. Run time: one demo run is about 3.5 min on 2 free cores;
use OMP_NUM_THREADS=1 and --jobs to run several at once.
"""
import argparse
import logging
import os
import shlex
import sys

from mtnet_plugin.data.synthetic import DEFAULT_PRESET, PRESETS
from mtnet_plugin.benchmarks.ablation import GROUPS, epoch_opts, execute, plan_runs, preset_opts, read_results, summarize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groups", nargs="+", default=["headline"], choices=list(GROUPS), help="variant groups")
    p.add_argument("--only", nargs="+", default=None, metavar="VARIANT", help="only these variants of the groups")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="RNG_SEED of each run (default 0 1 2)")
    p.add_argument("--preset", nargs="+", default=[DEFAULT_PRESET], choices=list(PRESETS),
                   help="synthetic class families (default %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="SOLVER.MAX_EPOCH for every run (default: the configs' 16)")
    p.add_argument("--results", default="output/ablate/results.jsonl",
                   help="json lines, appended (default %(default)s)")
    p.add_argument("--table", default=None, help="also write the markdown table here")
    p.add_argument("--out", default="output/ablate", help="root of the runs' OUTPUT_DIRs (default %(default)s)")
    p.add_argument("--data-root", default="data", help="where the data sets are (generated when missing)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
    p.add_argument("--summarize-only", action="store_true", help="print the table of the results file; run nothing")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE ... for every run (after --epochs)")
    return p.parse_args(argv)


def _command(args: argparse.Namespace):
    def command(run) -> str:
        parts = ["python", "tools/ablate.py", "--groups", run.group, "--only", run.variant.name, "--preset", run.preset,
                 "--seeds"] + [str(s) for s in args.seeds]
        if args.epochs:
            parts += ["--epochs", str(args.epochs)]
        parts += ["--results", args.results]
        if args.opts:
            parts += ["--opts"] + list(args.opts)
        return " ".join(shlex.quote(p) for p in parts)
    return command


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    common = (epoch_opts(args.epochs) if args.epochs else []) + list(args.opts)
    runs = []
    try:
        for preset in args.preset:
            runs += plan_runs(args.groups, [preset], args.seeds, preset_opts(preset, args.data_root) + common,
                              args.only)
        if not args.summarize_only:
            execute(runs, results=args.results, config_dir=os.path.join(ROOT, "configs"),
                    run_net=os.path.join(ROOT, "tools", "run_net.py"), out_root=args.out, jobs=args.jobs,
                    progress=lambda line: print(line, flush=True))
    except (ValueError, RuntimeError) as e:
        sys.exit(f"ablate: {e}")
    finally:
        if runs:
            table = summarize(read_results(args.results), runs, _command(args))
            print(table)
            if args.table:
                with open(args.table, "w") as f:
                    f.write(table)


if __name__ == "__main__":
    main()
