#!/usr/bin/env python
"""Train and/or test with a PySlowFast-style config (PySlowFast's ``tools/run_net.py`` CLI).

    python tools/run_net.py --cfg configs/HACS/MTNet_M.yaml --opts NUM_GPUS 1 OUTPUT_DIR out/
    torchrun --nproc_per_node 2 tools/run_net.py --cfg my.yaml --opts NUM_GPUS 0 DATA_LOADER.NUM_WORKERS 2
    python tools/run_net.py --cfg my.yaml --init_method tcp://host0:9999 --num_shards 2 --shard_id 0
    srun --ntasks 8 --gpus-per-task 1 python tools/run_net.py --cfg my.yaml --opts NUM_GPUS 1   # tools/slurm_train.sh

Each ``--cfg`` file is run in turn: its synthetic data generated first when ``SYNTHETIC.ENABLE`` asks and the lists
are missing (not under torchrun: there run ``tools/make_synthetic.py --cfg`` first), then training when
``TRAIN.ENABLE`` and testing when ``TEST.ENABLE``. A run stopped by SIGTERM (``TRAIN.PREEMPT_SIGNALS``) writes a
mid-epoch checkpoint and exits with status 128 + the signal's number (143 for SIGTERM); rerunning the same command
continues from there.
"""
import argparse
import logging
import sys

from mtnet_plugin.engine import Preempted, build_run_cfg, prepare_synthetic_data, run


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shard_id", type=int, default=0, help="index of this machine (NUM_SHARDS machines)")
    parser.add_argument("--num_shards", type=int, default=1, help="number of machines")
    parser.add_argument("--init_method", default=None,
                        help="process-group rendezvous for multi-machine runs without torchrun, e.g. "
                             "tcp://host0:9999 (default: a free local port on one machine; with several shards "
                             "MASTER_ADDR:MASTER_PORT if set, else tcp://localhost:9999)")
    parser.add_argument("--cfg", dest="cfg_files", nargs="+", required=True, help="config YAML file(s)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE ... overrides")
    if argv is None and len(sys.argv) == 1:
        parser.print_help()
        sys.exit(1)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    for path in args.cfg_files:
        try:
            cfg = build_run_cfg(path, args.opts, args.num_shards, args.shard_id)
            prepare_synthetic_data(cfg)  # before any process starts; never inside a distributed run
            run(cfg, init_method=args.init_method)
        except Preempted as stopped:
            logging.getLogger("run_net").error("%s", stopped)
            sys.exit(stopped.exit_code)


if __name__ == "__main__":
    main()
