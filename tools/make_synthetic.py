#!/usr/bin/env python
"""Generate the synthetic multi-tempo video dataset (docs/synthetic.md).

    python tools/make_synthetic.py data/synthetic
    python tools/make_synthetic.py /tmp/tiny --train 4 --val 2 --test 2 --frames 16 --size 32 --seed 1
    python tools/make_synthetic.py data/synthetic_direction --preset direction   # another class family
    python tools/make_synthetic.py --cfg configs/Synthetic/MTNet_XS.yaml [--opts KEY VALUE ...]

Counts are clips PER CLASS. OUT_DIR must not exist or be empty; it receives the videos, train.csv, val.csv,
test.csv (``path label`` lines, paths absolute unless --relative), classes.txt and metadata.json.
With --cfg, the dataset that config trains on is generated from its SYNTHETIC node into its
DATA.PATH_TO_DATA_DIR (kept when it already holds the lists): the step to run once before a torchrun of it.
"""
import argparse
import logging
import sys

from tqdm import tqdm

from mtnet_plugin.config import load_config
from mtnet_plugin.data.synthetic import (DEFAULT_PRESET, PRESETS, SyntheticSpec, ensure_synthetic_dataset,
                                         generate_synthetic_dataset)


def parse_args(argv=None) -> argparse.Namespace:
    d = SyntheticSpec()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", metavar="OUT_DIR", nargs="?", help="destination folder (must not exist or be empty)")
    p.add_argument("--cfg", default=None, help="generate what this config's SYNTHETIC node asks (other options unused)")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="with --cfg: KEY VALUE ... overrides")
    p.add_argument("--seed", type=int, default=d.seed, help="generator seed (default %(default)s)")
    p.add_argument("--train", type=int, default=d.num_train, help="train clips per class (default %(default)s)")
    p.add_argument("--val", type=int, default=d.num_val, help="val clips per class (default %(default)s)")
    p.add_argument("--test", type=int, default=d.num_test, help="test clips per class (default %(default)s)")
    p.add_argument("--frames", type=int, default=d.frames, help="frames per video (default %(default)s)")
    p.add_argument("--size", type=int, default=d.height, help="frame height in pixels (default %(default)s)")
    p.add_argument("--width", type=int, default=0, help="frame width (default: 4/3 of --size, even)")
    p.add_argument("--fps", type=int, default=d.fps, help="frame rate (default %(default)s)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                   help="class family (default %(default)s): " + "; ".join(
                       f"{k}: {', '.join(c.name for c in v)}" for k, v in PRESETS.items()))
    p.add_argument("--classes", type=int, default=None,
                   help=f"number of classes, the first of the preset's (default: {d.num_classes} for "
                        f"{DEFAULT_PRESET}, all of them for the other presets)")
    p.add_argument("--noise", type=float, default=d.noise_std, help="max per-pixel noise std (default %(default)s)")
    p.add_argument("--distractors", type=int, default=d.max_distractors,
                   help="max distractor objects per clip (default %(default)s)")
    p.add_argument("--relative", action="store_true",
                   help="write list paths relative to OUT_DIR (then set DATA.PATH_PREFIX to OUT_DIR)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cfg:
        sys.exit(_from_config(args.cfg, args.opts))
    if args.out_dir is None:
        sys.exit("make_synthetic: give OUT_DIR or --cfg FILE")
    classes = args.classes
    if classes is None:
        classes = SyntheticSpec().num_classes if args.preset == DEFAULT_PRESET else len(PRESETS[args.preset])
    try:
        spec = SyntheticSpec(preset=args.preset, num_classes=classes, num_train=args.train, num_val=args.val,
                             num_test=args.test, frames=args.frames, height=args.size, width=args.width, fps=args.fps,
                             seed=args.seed, noise_std=args.noise, max_distractors=args.distractors,
                             relative_paths=args.relative)
        with tqdm(total=spec.num_videos, unit="video", desc="synthetic") as bar:
            out = generate_synthetic_dataset(args.out_dir, spec, progress=lambda done, total: bar.update(1))
    except (FileExistsError, ValueError) as e:
        sys.exit(f"make_synthetic: {e}")
    print(f"Wrote {spec.num_videos} videos and train.csv, val.csv, test.csv, classes.txt, metadata.json to {out}")


def _from_config(path: str, opts) -> int:
    cfg = load_config([path], list(opts))
    if not cfg.SYNTHETIC.ENABLE:
        print(f"make_synthetic: {path} has SYNTHETIC.ENABLE False: it reads DATA.PATH_TO_DATA_DIR as it is",
              file=sys.stderr)
        return 2
    try:
        out = ensure_synthetic_dataset(cfg)
    except (FileExistsError, ValueError) as e:
        print(f"make_synthetic: {e}", file=sys.stderr)
        return 2
    print(f"Dataset of {path} ready in {out}")
    return 0


if __name__ == "__main__":
    main()
