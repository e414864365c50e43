"""Run by tests/test_cuda_runtime.py in a subprocess: ``python tests/ddp_world_size_1.py CFG.yaml OUT.json``.

Opens a one-process group (NCCL when the config uses CUDA, else gloo) on a free local port, builds the model as
the trainer does (``build_model_on_device``: SyncBN conversion when ``BN.NORM_TYPE`` is sync_batchnorm on CUDA,
then DDP), checks one train step of the wrapped model against the plain model with the same weights, then runs
``launch(cfg, train)`` inside the group (the trainer's all-reduces go through the backend). Writes a json report.
"""
import json
import math
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F


def main(cfg_path: str, out_json: str) -> None:
    from mtnet_plugin.config import load_config
    from mtnet_plugin.engine import launch, train
    from mtnet_plugin.engine.process_setup import build_model_on_device
    from mtnet_plugin.engine.distributed import use_cuda
    from mtnet_plugin.models import build_model

    cfg = load_config([cfg_path])
    cfg.freeze()
    cuda = use_cuda(cfg)
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    report = {"backend": dist.get_backend(), "world_size": dist.get_world_size()}
    try:
        torch.manual_seed(0)
        wrapped, device = build_model_on_device(cfg, train=True)
        torch.manual_seed(0)
        plain = build_model(cfg).to(device)
        inner = getattr(wrapped, "module", wrapped)
        report.update(
            device=str(device),
            ddp=isinstance(wrapped, torch.nn.parallel.DistributedDataParallel),
            sync_bn=sum(isinstance(m, torch.nn.SyncBatchNorm) for m in inner.modules()),
            plain_bn=sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                         and not isinstance(m, torch.nn.SyncBatchNorm) for m in inner.modules()),
        )
        g = torch.Generator().manual_seed(1)
        t, s = int(cfg.DATA.NUM_FRAMES), int(cfg.DATA.TRAIN_CROP_SIZE)
        x = torch.randn(2, 3, t, s, s, generator=g).to(device)
        y = torch.randint(0, int(cfg.MODEL.NUM_CLASSES), (2,), generator=g).to(device)
        errs = {}
        for name, model in (("ddp", wrapped), ("plain", plain)):
            model.train()
            logits = model(x)
            F.cross_entropy(logits.float(), y).backward()
            errs[name] = (logits.detach().double().cpu(),
                          torch.cat([p.grad.detach().double().cpu().flatten() for p in
                                     getattr(model, "module", model).parameters() if p.grad is not None]))
        (la, ga), (lb, gb) = errs["ddp"], errs["plain"]
        report["logits_rel"] = float((la - lb).norm() / lb.norm())
        report["grads_rel"] = float((ga - gb).norm() / gb.norm()) if ga.shape == gb.shape else math.inf
        report["train"] = launch(cfg, train)
    finally:
        dist.destroy_process_group()
    with open(out_json, "w") as f:
        json.dump(report, f, default=str)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
