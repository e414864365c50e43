"""Wall-clock benchmark of MTNet beside X3D, and of the data loader beside the model.

Examples::

    python tools/benchmark.py --models MTNet_M X3D_M                 # native 16x224, CPU, table + ratios
    python tools/benchmark.py --models MTNet_S X3D_S --input 8x112 --repeats 5 --json out.json
    python tools/benchmark.py --models MTNet_M --loader --batch 2      # loader clips/s vs train steps/s
    python tools/benchmark.py --cfg configs/Kinetics/MTNet_M.yaml configs/Kinetics/X3D_M.yaml
    python tools/benchmark.py --device cuda --models MTNet_M X3D_M --batch 16 --amp-only --amp-dtype bfloat16

Method and json keys: ``mtnet_plugin/benchmarks/benchmark.py`` and ``docs/benchmarks.md``.
"""
import argparse
import sys

from mtnet_plugin.benchmarks.benchmark import benchmark


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=[], help="preset names: MTNet_S/M/L, X3D_S/M/L, *_XS")
    p.add_argument("--cfg", nargs="*", default=[], help="YAML configs; each adds build_model(cfg)")
    p.add_argument("--opts", nargs="*", default=[], help="KEY VALUE overrides for every --cfg")
    p.add_argument("--input", default=None, help="TxS for every model (default: each model's native input)")
    p.add_argument("--batch", type=int, default=1, help="clips per step (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=3, help="measured repetitions (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="discarded repetitions (default 1)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--no-amp", dest="no_amp", action="store_true", help="CUDA: skip the AMP run")
    p.add_argument("--amp-only", dest="amp_only", action="store_true", help="CUDA: only the AMP run")
    p.add_argument("--amp-dtype", dest="amp_dtype", default="float16", choices=("float16", "bfloat16"),
                   help="autocast dtype of the AMP run (default float16; the trainer uses bfloat16 where supported)")
    p.add_argument("--no-parts", dest="parts", action="store_false", help="skip the per-part profile")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip peak memory")
    p.add_argument("--json", default=None, help="write the report as json to this file")
    p.add_argument("--loader", action="store_true", help="also benchmark the train loader vs the first model")
    p.add_argument("--loader-batches", dest="loader_batches", type=int, default=8,
                   help="timed batches per loader setting (default 8)")
    p.add_argument("--videos", type=int, default=4, help="generated 320p H.264 videos for --loader")
    p.add_argument("--data-dir", dest="data_dir", default=None, help="use this train.csv instead")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (eager is the default)")
    p.add_argument("--loader-only", dest="loader_only", action="store_true",
                   help="with --loader: skip the model latency table")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p.parse_args(argv)


if __name__ == "__main__":
    benchmark(**vars(parse_args(sys.argv[1:])))
