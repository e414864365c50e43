#!/usr/bin/env python
"""Decoded training clips per second per loader worker, PyAV beside TorchCodec (DATA.DECODING_BACKEND).

    python tools/decoder_benchmark.py                       # MTNet_M's Kinetics clip: 16 x 224, stride 5, 30 fps
    python tools/decoder_benchmark.py --cfg configs/Kinetics/MTNet_S.yaml --rounds 5

Writes 320p (short side) H.264 videos to a temporary folder and times the train loader in the main process
(NUM_WORKERS 0: one worker's rate, decoding + scale jitter + crop + flip + normalisation), the backends
interleaved round by round; prints the median clips/s of each and their ratio.
"""
import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", default="configs/Kinetics/MTNet_M.yaml", help="config whose train clip is timed")
    p.add_argument("--videos", type=int, default=4, help="generated videos (default 4)")
    p.add_argument("--batches", type=int, default=8, help="timed batches of 1 clip per round (default 8)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per backend (default 3)")
    p.add_argument("--backends", nargs="*", default=["pyav", "torchcodec"])
    args = p.parse_args()

    import torch

    from mtnet_plugin.benchmarks.loader_benchmark import _loader_rate, write_benchmark_videos
    from mtnet_plugin.config import load_config
    from mtnet_plugin.data.decoder import resolve_backend

    cfg = load_config([args.cfg])
    cfg.NUM_GPUS, cfg.TRAIN.BATCH_SIZE = 0, 1
    for backend in args.backends:
        if resolve_backend(backend) != backend:
            sys.exit(f"{backend} cannot decode here (see the warning above)")
    rates = {b: [] for b in args.backends}
    with tempfile.TemporaryDirectory() as tmp:
        frames = int(cfg.DATA.NUM_FRAMES) * int(cfg.DATA.SAMPLING_RATE) + 16
        write_benchmark_videos(tmp, num_videos=args.videos, num_frames=frames, fps=int(cfg.DATA.TARGET_FPS),
                               list_length=(args.batches + 2))
        cfg.DATA.PATH_TO_DATA_DIR = tmp
        for r in range(args.rounds):
            for backend in args.backends:
                cfg.DATA.DECODING_BACKEND = backend
                rate = _loader_rate(cfg, 0, args.batches)["clips_per_s"]
                rates[backend].append(rate)
                print(f"round {r + 1}/{args.rounds} {backend}: {rate:.2f} clips/s", flush=True)
    clip = f"{cfg.DATA.NUM_FRAMES} x {cfg.DATA.TRAIN_CROP_SIZE}, stride {cfg.DATA.SAMPLING_RATE}"
    print(f"\ntrain clips ({clip}) per second, one worker, torch threads {torch.get_num_threads()}:")
    for backend, values in rates.items():
        print(f"  {backend:11s} median {statistics.median(values):.2f}  (rounds: "
              f"{', '.join(f'{v:.2f}' for v in values)})")
    if len(rates) == 2:
        a, b = (statistics.median(v) for v in rates.values())
        print(f"  {args.backends[1]} / {args.backends[0]} = {b / a:.2f}")


if __name__ == "__main__":
    main()
