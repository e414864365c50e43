#!/usr/bin/env python
"""Initialise MTNet from an X3D checkpoint of the same size and save it as a checkpoint to fine-tune from.

    python tools/convert_x3d.py x3d_m.pyth --cfg configs/Kinetics/MTNet_M.yaml --out mtnet_m_from_x3d.pyth
    python tools/run_net.py --cfg configs/Kinetics/MTNet_M.yaml --opts TRAIN.CHECKPOINT_FILE_PATH mtnet_m_from_x3d.pyth

The same as ``--opts MTNET.INIT_FROM_X3D x3d_m.pyth`` at the start of a run, written down once: stem, shortcuts and
head copied, each X3D conv / BN into the local branch of its MTConv, the prolonged branches and Squeeze-and-
Recursion from scratch (mtnet_plugin/models/warm_start.py). Prints the counts and writes the full report beside
``--out`` (``.json``). The output holds ``model_state`` and the MTNet cfg, no epoch (training starts at epoch 1).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("x3d", help="PySlowFast-layout X3D checkpoint (.pyth with model_state)")
    p.add_argument("--cfg", nargs="+", required=True, help="the MTNet config(s) of the model to initialise")
    p.add_argument("--opts", nargs="*", default=[], help="KEY VALUE overrides")
    p.add_argument("--out", required=True, help="the MTNet checkpoint to write")
    args = p.parse_args()

    import torch

    from mtnet_plugin.config import load_config
    from mtnet_plugin.engine.checkpoint import atomic_save, open_checkpoint
    from mtnet_plugin.models import build_model
    from mtnet_plugin.models.warm_start import init_from_x3d, summarize

    cfg = load_config(args.cfg, args.opts)
    torch.manual_seed(int(cfg.RNG_SEED))  # the from-scratch parts as a run with this seed would start them
    model = build_model(cfg)
    report = init_from_x3d(model, open_checkpoint(args.x3d)["model_state"])
    atomic_save({"model_state": model.state_dict(), "cfg": cfg.dump()}, args.out)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"source": args.x3d, **report}, f, indent=1)
    print(f"{args.out}: {summarize(report)}")
    for kind in ("not_copied",):
        print(f"not copied ({len(report[kind])}): " + ", ".join(report[kind][:8]) + (" ..." if len(report[kind]) > 8 else ""))


if __name__ == "__main__":
    main()
