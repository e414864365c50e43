"""mtnet_plugin.data: Kinetics-style video lists, PyAV decoding with seeking, clip sampling, tensor transforms.

Engine contract (docs/design.md): ``build_dataset``, ``build_loader``, ``shuffle_loader``, ``skip_batches``,
``collate``;
``name_dead_worker(loader, error)`` names the video a dead loader worker was decoding.
Tools: ``probe_video``, ``decode_clip``, ``decode_frames``, ``VideoReader``, ``VideoDecodeError``; decoding backends
(``DATA.DECODING_BACKEND``): ``open_video``, ``resolve_backend``, ``TorchCodecReader``.
"""
from .decoder import (TorchCodecReader, VideoDecodeError, VideoInfo, VideoReader, decode_clip, decode_frames, open_video,
                      probe_video, resolve_backend)
from .kinetics import KineticsDataset
from .loader import (NamingDataLoader, build_dataset, build_loader, collate, name_dead_worker, shuffle_loader,
                     skip_batches)
from .short_cycle import ShortCycleBatchSampler
from .video_list import VideoEntry, VideoListError, read_video_list

__all__ = [
    "KineticsDataset",
    "NamingDataLoader",
    "ShortCycleBatchSampler",
    "TorchCodecReader",
    "VideoDecodeError",
    "VideoEntry",
    "VideoInfo",
    "VideoListError",
    "VideoReader",
    "build_dataset",
    "build_loader",
    "collate",
    "decode_clip",
    "decode_frames",
    "name_dead_worker",
    "open_video",
    "probe_video",
    "read_video_list",
    "resolve_backend",
    "shuffle_loader",
    "skip_batches",
]
