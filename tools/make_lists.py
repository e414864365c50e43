#!/usr/bin/env python
"""Write train.csv / val.csv / test.csv and classes.txt for the runtime from a data set's official annotations.

    python tools/make_lists.py ucf101 --annotations ucfTrainTestlist --videos /data/UCF-101 --split 1 --out lists/ucf1
    python tools/make_lists.py kinetics --csv k400/train.csv k400/validate.csv k400/test.csv \\
        --videos /data/k400 --out lists/k400
    python tools/make_lists.py hacs --clips HACS_clips_v1.1.1.csv --videos /data/hacs --out lists/hacs
    python tools/make_lists.py mit --csv trainingSet.csv validationSet.csv --classes moments_categories.txt \\
        --videos /data/Moments_in_Time_Raw --out lists/mit
    python tools/make_lists.py folder --videos /data/myset --out lists/myset

Then train with ``--opts DATA.PATH_TO_DATA_DIR lists/ucf1 MODEL.NUM_CLASSES <classes>`` (paths in the lists are the
video root joined to each file; classes.txt gives prediction and test reports their names). Annotated videos that
are not on disk are left out of the lists, counted and written to missing.txt. docs/data.md describes each layout.
Exit status: 0 written (even with missing videos), 2 a malformed annotation line (named file:line) or bad arguments.
"""
import argparse
import sys

from mtnet_plugin.data.lists import (AnnotationError, read_class_file, read_folder, read_hacs, read_kinetics,
                                     read_mit, read_ucf101, summary, write_lists)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="format", required=True, metavar="FORMAT")

    def common(q):
        q.add_argument("--videos", required=True, help="root folder of the video files")
        q.add_argument("--out", required=True, help="folder for train.csv, val.csv, test.csv, classes.txt")
        q.add_argument("--sep", default=" ", help="DATA.PATH_LABEL_SEPARATOR of the lists (default one space)")

    q = sub.add_parser("ucf101", help="UCF-101: classInd.txt, trainlist0N.txt, testlist0N.txt")
    common(q)
    q.add_argument("--annotations", required=True, help="the ucfTrainTestlist folder")
    q.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="official split (default 1)")
    q = sub.add_parser("kinetics", help="Kinetics-400/600/700: label,youtube_id,time_start,time_end,split csv files")
    common(q)
    q.add_argument("--csv", nargs="+", required=True, help="the official csv files")
    q.add_argument("--classes", help="fix the label order: one name per line or json {name: id} (default: sorted)")
    q = sub.add_parser("hacs", help="HACS Clips csv and/or HACS Segments json")
    common(q)
    q.add_argument("--clips", help="HACS_clips_v1.1.1.csv (positive clips are used)")
    q.add_argument("--segments", help="HACS_segments_v1.1.1.json")
    q.add_argument("--classes", help="fix the label order (default: sorted class names)")
    q = sub.add_parser("mit", help="Moments in Time: trainingSet.csv, validationSet.csv")
    common(q)
    q.add_argument("--csv", nargs="+", required=True, help="trainingSet.csv and/or validationSet.csv")
    q.add_argument("--classes", help="moments_categories.txt (default: sorted class names)")
    q = sub.add_parser("folder", help="one sub-folder per class (optionally under train/ val/ test/)")
    common(q)
    q.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of each class for val.csv when there are no split folders (default 0.2)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        classes = read_class_file(args.classes) if getattr(args, "classes", None) else None
        if args.format == "ucf101":
            lists = read_ucf101(args.annotations, args.videos, args.split)
        elif args.format == "kinetics":
            lists = read_kinetics(args.csv, args.videos, classes)
        elif args.format == "hacs":
            lists = read_hacs(args.clips, args.segments, args.videos, classes)
        elif args.format == "mit":
            lists = read_mit(args.csv, args.videos, classes)
        else:
            lists = read_folder(args.videos, args.val_fraction)
        written = write_lists(lists, args.out, args.sep)
    except (AnnotationError, ValueError, FileNotFoundError) as e:
        print(f"make_lists: error: {e}", file=sys.stderr)
        return 2
    print(summary(lists, written))
    sep = "" if args.sep == " " else f" DATA.PATH_LABEL_SEPARATOR '{args.sep}'"
    print(f"train with: --opts DATA.PATH_TO_DATA_DIR {args.out} MODEL.NUM_CLASSES {len(lists.classes)}{sep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
