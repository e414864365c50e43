"""build_loader / collate / shuffle_loader and the short-cycle batch sampler."""
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, SequentialSampler

from mtnet_plugin.config import get_cfg
from mtnet_plugin.data import ShortCycleBatchSampler, build_loader, collate, shuffle_loader


def _cfg(data_dir):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.DATA_LOADER.NUM_WORKERS = 0
    cfg.DATA.PATH_TO_DATA_DIR = data_dir
    cfg.MODEL.NUM_CLASSES = 2
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 2, 2, 10
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [32, 32], 16, 32
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 1, 3
    cfg.TRAIN.BATCH_SIZE, cfg.TEST.BATCH_SIZE = 2, 4
    return cfg


def test_collate():
    samples = [
        {"inputs": torch.zeros(3, 2, 4, 4), "label": 1, "index": 5, "video_idx": 1, "path": "a", "failed": False,
         "failures": []},
        {"inputs": torch.ones(3, 2, 4, 4), "label": 0, "index": 6, "video_idx": 2, "path": "b", "failed": True,
         "failures": [{"path": "b", "error": "x"}]},
    ]
    batch = collate(samples)
    assert batch["inputs"].shape == (2, 3, 2, 4, 4) and batch["inputs"][1].sum() == 3 * 2 * 16
    assert batch["label"].tolist() == [1, 0] and batch["label"].dtype == torch.long
    assert batch["index"].tolist() == [5, 6] and batch["video_idx"].tolist() == [1, 2]
    assert batch["failed"].dtype == torch.bool and batch["failed"].tolist() == [False, True]
    assert batch["path"] == ["a", "b"] and batch["failures"] == [{"path": "b", "error": "x"}]


def test_train_and_test_loaders(make_video_list):
    data_dir = make_video_list("train", num_videos=5, num_frames=12, fps=10)
    make_video_list("test", num_videos=2, num_frames=12, fps=10)
    cfg = _cfg(data_dir)
    train = build_loader(cfg, "train")
    batches = list(train)
    assert len(train) == len(batches) == 2  # 5 videos, batch 2, last incomplete batch dropped
    assert batches[0]["inputs"].shape == (2, 3, 2, 16, 16)
    test = build_loader(cfg, "test")
    assert isinstance(test.sampler, SequentialSampler)
    assert test.pin_memory == torch.cuda.is_available()  # DATA_LOADER.PIN_MEMORY is True by default
    indices = torch.cat([b["index"] for b in test]).tolist()
    assert indices == list(range(6))  # in order, nothing dropped: 2 videos x 1 clip x 3 crops


def test_short_cycle_batch_sizes_and_positions():
    # Per-process batch 2 at crop 224, factors (0.5, 0.707): crops 112 / 158 -> (224/112)^2 = 4, (224/158)^2 = 2.
    sampler = SequentialSampler(range(31))
    bs = ShortCycleBatchSampler(sampler, 2, False, 224, [0.5, 0.5 ** 0.5])
    assert bs.batch_sizes == [8, 4, 2]
    batches = list(bs)
    assert [len(b) for b in batches] == [8, 4, 2, 8, 4, 2, 3]
    assert [b[0][1] for b in batches] == [0, 1, 2, 0, 1, 2, 0]
    assert [i for b in batches for i, _ in b] == list(range(31))
    assert len(bs) == 7
    dropped = ShortCycleBatchSampler(sampler, 2, True, 224, [0.5, 0.5 ** 0.5])
    assert [len(b) for b in dropped] == [8, 4, 2, 8, 4, 2] and len(dropped) == 6
    with pytest.raises(ValueError):
        ShortCycleBatchSampler(sampler, 0, True, 224, [0.5, 0.5])


def test_short_cycle_loader_cycles_crops(make_video_list):
    data_dir = make_video_list("train", num_videos=8, num_frames=12, fps=10)
    cfg = _cfg(data_dir)
    cfg.MULTIGRID.SHORT_CYCLE = True
    cfg.TRAIN.BATCH_SIZE = 1
    shapes = [tuple(b["inputs"].shape) for b in build_loader(cfg, "train")]
    # crops round(16 * 0.5) = 8 and round(16 * 0.707) = 11 with batches 1 * (16/8)^2 = 4 and 1 * (16/11)^2 -> 2.
    assert shapes == [(4, 3, 2, 8, 8), (2, 3, 2, 11, 11), (1, 3, 2, 16, 16)]
    precise = build_loader(cfg, "train", is_precise_bn=True)  # precise BN never uses the short cycle
    assert {tuple(b["inputs"].shape) for b in precise} == {(1, 3, 2, 16, 16)}


def test_distributed_sampler_when_a_process_group_is_up(make_video_list, monkeypatch):
    data_dir = make_video_list("train", num_videos=4, num_frames=12, fps=10)
    make_video_list("val", num_videos=4, num_frames=12, fps=10)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    cfg = _cfg(data_dir)
    train, val = build_loader(cfg, "train"), build_loader(cfg, "val")
    assert isinstance(train.sampler, DistributedSampler) and train.sampler.shuffle
    assert isinstance(val.sampler, DistributedSampler) and not val.sampler.shuffle
    assert len(train.sampler) == 2 and train.sampler.rank == 1
    shuffle_loader(train, 3)
    assert train.sampler.epoch == 3


def test_a_dead_worker_is_reported_with_the_video_it_was_loading(make_video_list, monkeypatch):
    import os

    import mtnet_plugin.data.kinetics as kinetics

    data_dir = make_video_list("test", num_videos=2, num_frames=12, fps=10)
    poison = open(os.path.join(data_dir, "test.csv")).read().split()[2]  # the second video's path

    class DyingReader(kinetics.VideoReader):  # as an FFmpeg segfault would, on one file
        def __init__(self, path, **kw):
            if path == poison:
                os._exit(3)
            super().__init__(path, **kw)

    monkeypatch.setattr(kinetics, "VideoReader", DyingReader)  # inherited by the forked worker
    cfg = _cfg(data_dir)
    cfg.DATA_LOADER.NUM_WORKERS = 1
    loader = build_loader(cfg, "test")
    with pytest.raises(RuntimeError) as e:
        list(loader)  # the death is noticed while waiting for a batch
    assert "exited unexpectedly" in str(e.value) and poison in str(e.value)
    # A death noticed elsewhere (PyTorch's SIGCHLD handler fires during a forward pass) is named by the helper.
    from mtnet_plugin.data import name_dead_worker

    plain = RuntimeError(str(e.value.__cause__))
    assert poison in str(name_dead_worker(loader, plain)) and poison not in str(plain)
    other = RuntimeError("CUDA out of memory")
    assert name_dead_worker(loader, other) is other
    crumbs = loader.breadcrumb_dir
    del loader, e
    import gc

    gc.collect()
    assert not os.path.exists(crumbs)  # the breadcrumb folder goes with the loader
