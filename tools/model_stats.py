#!/usr/bin/env python
"""Print params and GFLOPs per view of MTNet_S/M/L and X3D_S/M/L beside the published figures.

    python tools/model_stats.py                      # all sections (a few minutes on CPU)
    python tools/model_stats.py --sections main      # presets only: native input and 16x256x256

Sections: ``main`` (presets), ``delta`` (Table VIa sweep, MTNet_M/L, P input full and split) and ``cell``
(Table VIb, MTNet_S/M). Convention: fvcore, one multiply-add = one FLOP, batch 1, one view
(``mtnet_plugin.models.flops``). The output is markdown; docs/model_zoo.md holds a measured copy.
"""
import argparse
import logging
import sys
import time

from mtnet_plugin.benchmarks.zoo import SECTIONS, zoo_report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS,
                        help="tables to print (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no per-model progress lines on stderr")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    start = time.time()
    print(zoo_report(args.sections, progress=progress))
    print(f"measured in {time.time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
