#!/usr/bin/env python
"""Predict the action classes of video files with a trained MTNet / X3D checkpoint.

    python tools/predict.py a.mp4 b.mp4 --cfg configs/Kinetics/MTNet_M.yaml --checkpoint ckpt.pyth --topk 5
    python tools/predict.py clips/*.mp4 --checkpoint out/checkpoints/checkpoint_epoch_00300.pyth --views 1x1 --json
    python tools/predict.py long.mp4 --checkpoint ckpt.pyth --window 2 --stride 1 --json --out-video labelled.mp4

Each video is decoded with the test pipeline, every view (``--views CLIPSxCROPS``, default the config's
``TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS``) goes through the model, and the views' softmax are combined
(``DATA.ENSEMBLE_METHOD``). Without ``--cfg`` the config stored in the checkpoint is used. ``--json`` prints one
JSON object per video on stdout, ``{"video", "topk": [{"label", "index", "prob"}...], "views"}`` or
``{"video", "error"}``; logs go to stderr. Exit status: 0 when every video was predicted, 1 when any could not be
decoded (the others are still printed), 2 for bad arguments, config or checkpoint.

With ``--window SEC`` (one video) the video is cut into windows of SEC seconds starting every ``--stride`` seconds
(default: SEC); each window's clips (``--views``, default 1x1 per window) are sampled inside it and one line per
window is printed, in JSON ``{"video", "window", "start_s", "end_s", "topk", "views"}``. ``--out-video FILE``
writes the video with the top-1 label and probability of the window centred nearest to each frame drawn on it.
"""
import argparse
import json
import logging
import sys

from mtnet_plugin.engine.overlay import write_labelled_video
from mtnet_plugin.engine.predict import predict, predict_windows


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+", help="video files")
    parser.add_argument("--cfg", default=None, help="config YAML (default: the one stored in the checkpoint)")
    parser.add_argument("--checkpoint", default=None, help="trained .pyth checkpoint")
    parser.add_argument("--topk", type=int, default=5, help="classes to report per video")
    parser.add_argument("--views", default=None, help="CLIPSxCROPS, e.g. 10x3 or 1x1 (default: the config's)")
    parser.add_argument("--json", action="store_true", help="one JSON object per video on stdout")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    parser.add_argument("--class-names", default=None, help="names file: json {name: id} or one name per line")
    parser.add_argument("--batch-size", type=int, default=None, help="views per forward (default TEST.BATCH_SIZE)")
    parser.add_argument("--num-workers", type=int, default=0, help="decoding processes")
    parser.add_argument("--window", type=float, default=None, help="seconds per window: labels over time (one video)")
    parser.add_argument("--stride", type=float, default=None, help="seconds between window starts (default --window)")
    parser.add_argument("--out-video", default=None, help="with --window: write the video with the labels drawn")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE ... config overrides")
    return parser.parse_args(argv)


def format_text(result: dict) -> str:
    if "error" in result:
        return f"{result['video']}: ERROR {result['error']}"
    lines = [f"{result['video']} ({result['views']} views)"]
    width = max(len(t["label"]) for t in result["topk"])
    for rank, t in enumerate(result["topk"], start=1):
        lines.append(f"  {rank}. {t['label']:<{width}}  {t['prob']:.4f}  [{t['index']}]")
    return "\n".join(lines)


def format_window(result: dict) -> str:
    span = f"{result['start_s']:8.2f} - {result['end_s']:8.2f} s"
    if "error" in result:
        return f"{span}  ERROR {result['error']}"
    return f"{span}  " + "  ".join(f"{t['label']} {t['prob']:.3f}" for t in result["topk"])


def main_windows(args) -> int:
    try:
        results = predict_windows(args.videos[0], args.cfg, args.checkpoint, window=args.window,
                                  stride=args.stride or args.window, topk=args.topk,
                                  views=args.views or "1x1", device=args.device, opts=args.opts,
                                  class_names=args.class_names, batch_size=args.batch_size,
                                  num_workers=args.num_workers)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # RuntimeError: the video cannot be decoded
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.json:
        print(args.videos[0])
    for result in results:
        print(json.dumps(result) if args.json else format_window(result), flush=True)
    if args.out_video:
        write_labelled_video(args.videos[0], results, args.out_video)
        print(f"labelled video: {args.out_video}", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    # Our progress at INFO; other libraries (the ONNX exporter logs thousands of INFO lines) at WARNING.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="[%(levelname)s] %(name)s: %(message)s")
    logging.getLogger("mtnet_plugin").setLevel(logging.INFO)
    if args.window is not None or args.out_video or args.stride is not None:
        if args.window is None or len(args.videos) != 1:
            print("error: --stride / --out-video need --window, and --window takes one video", file=sys.stderr)
            return 2
        return main_windows(args)
    try:
        results = predict(args.videos, args.cfg, args.checkpoint, topk=args.topk, views=args.views,
                          device=args.device, opts=args.opts, class_names=args.class_names,
                          batch_size=args.batch_size, num_workers=args.num_workers)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for result in results:
        print(json.dumps(result) if args.json else format_text(result), flush=True)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
