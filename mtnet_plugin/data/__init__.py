"""mtnet_plugin.data: Kinetics-style video lists, PyAV decoding with seeking, clip sampling, tensor transforms.

Engine contract (docs/design.md): ``build_dataset``, ``build_loader``, ``shuffle_loader``, ``skip_batches``,
``collate``;
``name_dead_worker(loader, error)`` names the video a dead loader worker was decoding.
Tools: ``probe_video``, ``decode_clip``, ``decode_frames``, ``VideoReader``, ``VideoDecodeError``.
"""
from .decoder import VideoDecodeError, VideoInfo, VideoReader, decode_clip, decode_frames, probe_video
from .kinetics import KineticsDataset
from .loader import (NamingDataLoader, build_dataset, build_loader, collate, name_dead_worker, shuffle_loader,
                     skip_batches)
from .short_cycle import ShortCycleBatchSampler
from .video_list import VideoEntry, VideoListError, read_video_list

__all__ = [
    "KineticsDataset",
    "NamingDataLoader",
    "ShortCycleBatchSampler",
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
    "probe_video",
    "read_video_list",
    "shuffle_loader",
    "skip_batches",
]
