"""The Kinetics-style list dataset: one clip per video in train/val, ``NUM_ENSEMBLE_VIEWS x NUM_SPATIAL_CROPS`` views
per video in test (PySlowFast's ``Kinetics``; sample contract: docs/design.md).

Modes, as in PySlowFast:

- train and val: a random clip (``sampling.get_start_end_idx`` with ``clip_idx = -1``), short side jittered in
  ``DATA.TRAIN_JITTER_SCALES``, a random ``TRAIN_CROP_SIZE`` crop and a random flip (``DATA.RANDOM_FLIP``). Val is
  therefore a stochastic single clip per video, as in PySlowFast.
- test: view ``k`` of video ``v`` is sample ``v * V * C + k``; clip ``k // C`` of ``V`` uniform clips, crop ``k % C``.
  With ``C = 3`` the short side is resized to ``TEST_CROP_SIZE`` and three ``TEST_CROP_SIZE`` crops are taken; with
  ``C = 1`` the short side is ``TRAIN_JITTER_SCALES[0]`` and the centre ``TEST_CROP_SIZE`` crop is taken.
- train with ``MULTIGRID.SHORT_CYCLE``: an index ``(i, s)`` from ``ShortCycleBatchSampler`` crops
  ``round(TRAIN_CROP_SIZE * SHORT_CYCLE_FACTORS[s])`` for ``s`` in 0, 1 (the smallest jitter scale shrinks in
  proportion) and the full crop for ``s = 2``. With ``MULTIGRID.LONG_CYCLE_SAMPLING_RATE > 0`` the train sampling
  rate is drawn from ``[SAMPLING_RATE, LONG_CYCLE_SAMPLING_RATE]``.

A list line with a segment (``path#t=START,END``, video_list.py) samples every clip inside the segment only: the
segment's frames stand for the whole video in the rules above (``segment_frames``).

Broken videos (missing, empty, truncated, not a video, audio-only, decode errors) are tried
``1 + DATA.DECODE_RETRIES`` times (once per process: later requests for a video that failed fail at once, so a
broken test video costs one warning, not one per view). Then a train sample is replaced by another random video (up to
``DATA.MAX_REPLACEMENTS`` times, then RuntimeError), while a val/test sample comes back with ``failed=True`` and zero
inputs. Every failure is logged with the path and the error, and listed in the sample's ``failures``.
"""
import logging
import os
import random
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from fvcore.common.config import CfgNode

from .decoder import TorchCodecReader, VideoDecodeError, VideoReader, resolve_backend
from .sampling import clip_frame_indices, clip_size_frames, get_start_end_idx, segment_frames, view_from_index
from .transforms import normalize, random_spatial_sampling, uint8_to_float, uniform_spatial_sampling
from .video_list import VideoEntry, list_path, read_video_list

logger = logging.getLogger(__name__)

Index = Union[int, Tuple[int, int]]


def _segment(entry: VideoEntry, fps: float, num_frames: int) -> Tuple[int, int]:
    """``sampling.segment_frames`` of a list entry; a segment outside the video is a VideoDecodeError."""
    try:
        return segment_frames(entry.start, entry.end, fps, num_frames)
    except ValueError as e:
        raise VideoDecodeError(entry.path, str(e)) from None


class KineticsDataset(torch.utils.data.Dataset):
    """Videos listed in ``{DATA.PATH_TO_DATA_DIR}/{split}.csv``; items are sample dicts (docs/design.md).

    Args:
        cfg: the run's config (read at construction; a long-cycle phase passes its own cfg).
        split: ``train`` | ``val`` | ``test``.
        entries: use these videos instead of reading ``{split}.csv`` (e.g. a prediction tool:
            ``KineticsDataset(cfg, "test", entries=[VideoEntry(path, 0, "cli")])`` gives the video's V x C views).

    Raises:
        FileNotFoundError / VideoListError: the list is missing or malformed (``file:line``).
    """

    def __init__(self, cfg: CfgNode, split: str, entries: Optional[Sequence[VideoEntry]] = None):
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        self.split = split
        if entries is not None:
            self.videos: List[VideoEntry] = list(entries)
        else:
            self.videos = read_video_list(
                list_path(cfg.DATA.PATH_TO_DATA_DIR, split),
                separator=cfg.DATA.PATH_LABEL_SEPARATOR,
                prefix=cfg.DATA.PATH_PREFIX,
                num_classes=cfg.MODEL.NUM_CLASSES,
            )
        d = cfg.DATA
        self.num_frames = int(d.NUM_FRAMES)
        self.sampling_rate = int(d.SAMPLING_RATE)
        self.long_cycle_rate = int(cfg.MULTIGRID.LONG_CYCLE_SAMPLING_RATE)
        self.target_fps = float(d.TARGET_FPS)
        self.jitter_fps = float(d.TRAIN_JITTER_FPS)
        self.use_offset = bool(d.USE_OFFSET_SAMPLING)
        self.mean, self.std = list(d.MEAN), list(d.STD)
        self.jitter_scales = (int(d.TRAIN_JITTER_SCALES[0]), int(d.TRAIN_JITTER_SCALES[1]))
        self.train_crop = int(d.TRAIN_CROP_SIZE)
        self.test_crop = int(d.TEST_CROP_SIZE)
        self.random_flip = bool(d.RANDOM_FLIP)
        self.inverse_uniform = bool(d.INV_UNIFORM_SAMPLE)
        self.short_cycle_factors = list(cfg.MULTIGRID.SHORT_CYCLE_FACTORS)
        self.num_views = int(cfg.TEST.NUM_ENSEMBLE_VIEWS)
        self.num_crops = int(cfg.TEST.NUM_SPATIAL_CROPS)
        self.decode_retries = int(d.DECODE_RETRIES)
        self.max_replacements = int(d.MAX_REPLACEMENTS)
        self.threads = bool(cfg.DATA_LOADER.ENABLE_MULTI_THREAD_DECODE)
        self.backend = resolve_backend(cfg.DATA.DECODING_BACKEND)  # "pyav" | "torchcodec" (data/decoder.py)
        # Test: the decoded uint8 frames of the last (video_idx, temporal_idx), reused by its other spatial crops.
        self._last_clip: Optional[Tuple[Tuple[int, int], torch.Tensor]] = None
        # Videos that failed every attempt in this process (worker), with the error: later requests fail at once.
        self._known_bad: Dict[int, str] = {}
        # Folder where each loader worker writes the path it is loading (set by build_loader; None = off).
        self.breadcrumb_dir: Optional[str] = None

    @property
    def views_per_video(self) -> int:
        """Samples per video: ``V * C`` in test, 1 otherwise."""
        return self.num_views * self.num_crops if self.split == "test" else 1

    def __len__(self) -> int:
        return len(self.videos) * self.views_per_video

    # -- sampling -------------------------------------------------------------------------------------------------

    def _crop_and_scales(self, short_cycle_idx: Optional[int]) -> Tuple[int, int, int]:
        """Train/val ``(crop, min_scale, max_scale)``, shrunk for short-cycle positions 0 and 1."""
        crop, (lo, hi) = self.train_crop, self.jitter_scales
        if short_cycle_idx is not None and short_cycle_idx < len(self.short_cycle_factors):
            small = int(round(self.train_crop * self.short_cycle_factors[short_cycle_idx]))
            lo = int(round(lo * small / self.train_crop))
            crop = small
        return crop, lo, hi

    def output_size(self, short_cycle_idx: Optional[int] = None) -> int:
        """Side of the square inputs this split produces."""
        return self.test_crop if self.split == "test" else self._crop_and_scales(short_cycle_idx)[0]

    def _load(self, video_idx: int, temporal: int, spatial: int, short_cycle_idx: Optional[int]) -> torch.Tensor:
        """Decode and transform one clip: ``(3, T, S, S)`` normalised. Raises VideoDecodeError."""
        path = self.videos[video_idx].path
        train_like = self.split != "test"
        rate, fps = self.sampling_rate, self.target_fps
        if train_like:
            if self.split == "train" and self.long_cycle_rate > self.sampling_rate:
                rate = random.randint(self.sampling_rate, self.long_cycle_rate)
            if self.split == "train" and self.jitter_fps > 0:
                fps += random.uniform(0, self.jitter_fps)
        key = (video_idx, temporal)
        if not train_like and self._last_clip is not None and self._last_clip[0] == key:
            frames = self._last_clip[1]  # the C spatial crops of one temporal clip are consecutive samples
        else:
            reader_class = TorchCodecReader if self.backend == "torchcodec" else VideoReader
            with reader_class(path, threads=self.threads) as reader:
                info = reader.info
                if not info.has_video:
                    raise VideoDecodeError(path, "no video stream (audio-only or data file)")
                first, count = _segment(self.videos[video_idx], info.fps, info.num_frames)
                size = clip_size_frames(self.num_frames, rate, fps, info.fps)
                start, end = get_start_end_idx(count, size, temporal if not train_like else -1,
                                               self.num_views, use_offset=self.use_offset)
                index = clip_frame_indices(start, end, self.num_frames, count)
                frames = reader.frames([first + i for i in index])
            if not train_like:
                self._last_clip = (key, frames)
        clip = uint8_to_float(frames)
        if train_like:
            crop, lo, hi = self._crop_and_scales(short_cycle_idx if self.split == "train" else None)
            clip = random_spatial_sampling(clip, lo, hi, crop, random_flip=self.random_flip,
                                           inverse_uniform=self.inverse_uniform)
        else:
            scale = self.test_crop if self.num_crops > 1 else self.jitter_scales[0]
            clip = uniform_spatial_sampling(clip, scale, self.test_crop, spatial)
        return normalize(clip, self.mean, self.std).contiguous()

    def _try_load(self, video_idx: int, temporal: int, spatial: int, short_cycle_idx: Optional[int],
                  failures: List[Dict[str, str]]) -> Optional[torch.Tensor]:
        """``_load`` with ``1 + decode_retries`` attempts; on failure log, append to ``failures``, return None."""
        path = self.videos[video_idx].path
        if self.breadcrumb_dir:
            # Leave the path where the main process finds it should this worker die while decoding (loader.py).
            with open(os.path.join(self.breadcrumb_dir, str(os.getpid())), "w") as f:
                f.write(path)
        if video_idx in self._known_bad:  # e.g. the other 29 views of a broken test video: no new attempts
            logger.debug("skipping %s, which failed before: %s", path, self._known_bad[video_idx])
            failures.append({"path": path, "error": self._known_bad[video_idx]})
            return None
        error = ""
        for attempt in range(1 + self.decode_retries):
            try:
                return self._load(video_idx, temporal, spatial, short_cycle_idx)
            except VideoDecodeError as e:
                error = e.reason
            except Exception as e:  # any decoder/library error on bad input must not stop the run
                error = f"{type(e).__name__}: {e}"
            logger.debug("%s: attempt %d failed: %s", path, attempt + 1, error)
        logger.warning("failed to load %s (%s split, %d attempts): %s", path, self.split, 1 + self.decode_retries,
                       error)
        failures.append({"path": path, "error": error})
        self._known_bad[video_idx] = error
        return None

    def __getitem__(self, index: Index) -> Dict[str, Any]:
        short_cycle_idx = None
        if isinstance(index, (tuple, list)):
            index, short_cycle_idx = int(index[0]), int(index[1])
        if self.split == "test":
            video_idx, temporal, spatial = view_from_index(index, self.num_views, self.num_crops)
        else:
            video_idx, temporal, spatial = index, -1, -1
        failures: List[Dict[str, str]] = []
        clip = self._try_load(video_idx, temporal, spatial, short_cycle_idx, failures)
        if self.split == "train":
            tried = 0
            while clip is None:
                if tried >= self.max_replacements:
                    raise RuntimeError(f"{1 + tried} videos in a row failed to load (DATA.MAX_REPLACEMENTS = "
                                       f"{self.max_replacements}); failures: {failures}")
                tried += 1
                video_idx = random.randrange(len(self.videos))
                index = video_idx
                logger.info("replacing a broken training video with %s", self.videos[video_idx].path)
                clip = self._try_load(video_idx, temporal, spatial, short_cycle_idx, failures)
        failed = clip is None
        if failed:
            side = self.output_size(short_cycle_idx)
            clip = torch.zeros(3, self.num_frames, side, side)
        entry = self.videos[video_idx]
        return {
            "inputs": clip,
            "label": entry.label,
            "index": index,
            "video_idx": video_idx,
            "path": entry.path,
            "failed": failed,
            "failures": failures,
        }

