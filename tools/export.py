#!/usr/bin/env python
"""Export a trained MTNet / X3D checkpoint to TorchScript, ONNX and torch.export, checking each against eager.

    python tools/export.py --cfg configs/Kinetics/MTNet_M.yaml --checkpoint ckpt.pyth --out exported/
    python tools/export.py --checkpoint ckpt.pyth --out exported/ --formats onnx --input 16x256 --video a.mp4

Writes ``model.torchscript.pt`` (torch.jit.trace), ``model.pt2`` (torch.export) and ``model.onnx`` (input
``video`` (B, 3, T, S, S), output ``logits``) for one fixed input shape (default ``DATA.NUM_FRAMES x
DATA.TEST_CROP_SIZE``, batch 1), on CPU, in eval mode. Each file is loaded back and compared with the eager model
on a random input and, with ``--video``, on a real clip; the largest absolute difference is printed, and the exit
status is 1 when one exceeds ``--atol`` (2 for bad arguments, config or checkpoint).
"""
import argparse
import json
import logging
import sys

from mtnet_plugin.data import VideoDecodeError
from mtnet_plugin.engine.export import FORMATS, ONNX_EXPORTERS, export_model


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", default=None, help="config YAML (default: the one stored in the checkpoint)")
    parser.add_argument("--checkpoint", default=None, help="trained .pyth checkpoint")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS, help="what to write")
    parser.add_argument("--input", default=None, help="TxS, frames x crop side (default: one test view)")
    parser.add_argument("--batch", type=int, default=1, help="batch size of the fixed input shape")
    parser.add_argument("--video", default=None, help="also check on this video's first test clip")
    parser.add_argument("--onnx-exporter", default="dynamo", choices=ONNX_EXPORTERS,
                        help="dynamo: torch.onnx.export(dynamo=True) (default); legacy: the TorchScript exporter")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest accepted |exported - eager|")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE ... config overrides")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # Our progress at INFO; other libraries (the ONNX exporter logs thousands of INFO lines) at WARNING.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="[%(levelname)s] %(name)s: %(message)s")
    logging.getLogger("mtnet_plugin").setLevel(logging.INFO)
    try:
        report = export_model(args.cfg, args.checkpoint, args.out, formats=args.formats, input_size=args.input,
                              batch_size=args.batch, video=args.video, opts=args.opts,
                              onnx_exporter=args.onnx_exporter)
    except (ValueError, FileNotFoundError, VideoDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    worst = 0.0
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"input {tuple(report['input_shape'])}, checkpoint {report['checkpoint']}")
    for fmt, entry in report["formats"].items():
        diffs = entry["max_abs_diff"]
        if diffs is not None:
            worst = max([worst, *diffs.values()])
        if not args.json:
            text = ("not checked (onnxruntime not installed)" if diffs is None
                    else ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))
            print(f"{fmt:<12} {entry['path']}  max |exported - eager|: {text}")
    if worst > args.atol:
        print(f"error: an exported model differs from eager by {worst:.3g} > --atol {args.atol}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
