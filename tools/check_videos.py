#!/usr/bin/env python
"""Find the videos of Kinetics-style lists that the runtime cannot use, before training on them.

    python tools/check_videos.py data/train.csv data/val.csv --prefix /datasets/k400 --workers 8 \\
        --num-frames 16 --sampling-rate 5 --target-fps 30 --json report.json --write-clean clean/
    python tools/check_videos.py data/train.csv --cfg configs/Kinetics/MTNet_M.yaml --write-clean train_clean.csv

Each file is opened with the runtime's own decoder and reported when it is missing, empty, undecodable
(truncated, not a video), audio-only, shorter than one clip at the configured sampling, or (with --expect-size /
--min-short-side) of an unexpected resolution; a line's segment (``path#t=START,END``, docs/data.md) that is not
inside its video is reported as ``segment``; malformed list lines are reported too. The exit status is 1 when
anything is bad, 2 when a list cannot be read. --write-clean writes the list(s) without the bad lines (a file for one list, a folder for several).
"""
import argparse
import logging
import os
import sys

from mtnet_plugin.data.check import CheckSpec, check_args_from_cfg, format_report, run_check


def _size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 240x320, got {text!r}") from None
    return h, w


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lists", nargs="+", help="video list(s): 'path<sep>label' per line")
    p.add_argument("--prefix", default=None, help="DATA.PATH_PREFIX joined to relative paths (default: none)")
    p.add_argument("--sep", default=None, help="DATA.PATH_LABEL_SEPARATOR (default: one space)")
    p.add_argument("--json", dest="json_file", help="write the report as JSON here")
    p.add_argument("--write-clean", help="write the list(s) without the bad lines (file, or folder for several)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes (default: all CPUs)")
    p.add_argument("--cfg", help="take sampling, separator, prefix and class count from this run config")
    p.add_argument("--num-frames", type=int, help="DATA.NUM_FRAMES (enables the too-short check)")
    p.add_argument("--sampling-rate", type=int, help="DATA.SAMPLING_RATE (default 1, or the --cfg value)")
    p.add_argument("--target-fps", type=float, help="DATA.TARGET_FPS (default 30, or the --cfg value)")
    p.add_argument("--num-classes", type=int, help="MODEL.NUM_CLASSES: labels at or above it are malformed")
    p.add_argument("--expect-size", type=_size, help="required HxW of every video")
    p.add_argument("--min-short-side", type=int, help="required minimum of min(H, W)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    kwargs = {"spec": CheckSpec(), "separator": " ", "prefix": "", "num_classes": None}
    if args.cfg:
        from mtnet_plugin.config import load_config

        kwargs = check_args_from_cfg(load_config([args.cfg]))
    spec = kwargs["spec"]
    kwargs["spec"] = CheckSpec(
        num_frames=args.num_frames if args.num_frames is not None else spec.num_frames,
        sampling_rate=args.sampling_rate if args.sampling_rate is not None else spec.sampling_rate,
        target_fps=args.target_fps if args.target_fps is not None else spec.target_fps,
        expect_size=args.expect_size,
        min_short_side=args.min_short_side,
    )
    for key, value in (("separator", args.sep), ("prefix", args.prefix), ("num_classes", args.num_classes)):
        if value is not None:
            kwargs[key] = value
    try:
        report = run_check(args.lists, json_file=args.json_file, write_clean=args.write_clean, workers=args.workers,
                           progress=not args.no_progress and sys.stderr.isatty(), **kwargs)
    except (FileNotFoundError, ValueError) as e:  # a missing list, clashing --write-clean names
        print(f"check_videos: error: {e}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 1 if report["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
