"""The synthetic multi-tempo dataset: real decodable files, lists that match them, determinism, atomic
generation, the config hook, and a class signal that lives in time rather than in any single frame."""
import dataclasses
import json
import logging
import os

import av
import numpy as np
import pytest

from mtnet_plugin.config import get_cfg
from mtnet_plugin.config.synthetic import add_synthetic_config
from mtnet_plugin.data.synthetic import (CLASSES, SyntheticSpec, ensure_synthetic_dataset,
                                         generate_synthetic_dataset, has_lists, render_clip)

TINY = dict(num_classes=3, num_train=3, num_val=1, num_test=2, frames=12, height=32, fps=15, seed=0)


def read_list(path):
    with open(path) as f:
        return [(p, int(label)) for p, label in (line.rstrip("\n").split(" ") for line in f)]


def decode(path):
    """All frames (T, H, W, 3) uint8 and the stream's frame rate."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, stream.average_rate


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    spec = SyntheticSpec(**TINY)
    seen = []
    root = generate_synthetic_dataset(str(tmp_path_factory.mktemp("syn") / "data"), spec,
                                      progress=lambda done, total: seen.append((done, total)))
    return root, spec, seen


def test_files_decode_with_requested_shape_and_fps(tiny_set):
    root, spec, seen = tiny_set
    assert spec.width == 42  # 4/3 of 32, rounded to even
    assert seen == [(i, 18) for i in range(1, 19)]  # 3 classes x (3 + 1 + 2)
    for split in ("train", "val", "test"):
        for path, _ in read_list(os.path.join(root, f"{split}.csv")):
            frames, rate = decode(path)
            assert frames.shape == (12, 32, 42, 3)
            assert rate == 15
            assert frames.std() > 5  # not blank: texture, objects, noise


def test_lists_match_the_files(tiny_set):
    root, spec, _ = tiny_set
    assert sorted(os.listdir(root)) == ["classes.txt", "metadata.json", "test", "test.csv", "train", "train.csv",
                                        "val", "val.csv"]
    with open(os.path.join(root, "classes.txt")) as f:
        assert f.read().split("\n") == [c.name for c in CLASSES[:3]] + [""]
    listed = []
    for split, per_class in (("train", 3), ("val", 1), ("test", 2)):
        rows = read_list(os.path.join(root, f"{split}.csv"))
        assert all(os.path.isabs(p) and os.path.isfile(p) for p, _ in rows)
        labels = [label for _, label in rows]
        assert sorted(labels) == sorted(list(range(3)) * per_class)  # in range and balanced
        assert all(f"/{split}/{CLASSES[label].name}/" in p for p, label in rows)
        listed += [p for p, _ in rows]
    on_disk = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".mp4")]
    assert sorted(listed) == sorted(on_disk) and len(set(listed)) == len(listed)  # every file listed once
    with open(os.path.join(root, "metadata.json")) as f:
        meta = json.load(f)
    assert meta["spec"] == dataclasses.asdict(spec)
    assert meta["num_videos"] == {"train": 9, "val": 3, "test": 6}
    assert not [n for n in os.listdir(os.path.dirname(root)) if ".partial-" in n]  # no temp folder left


def _decoded_set(root):
    out = {}
    for split in ("train", "val", "test"):
        for path, label in read_list(os.path.join(root, f"{split}.csv")):
            out[os.path.relpath(path, root)] = (label, decode(path)[0])
    return out


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    spec = SyntheticSpec(num_classes=2, num_train=2, num_val=1, num_test=1, frames=8, height=32, fps=10, seed=3)
    a = generate_synthetic_dataset(str(tmp_path / "a"), spec)
    b = generate_synthetic_dataset(str(tmp_path / "b"), spec)
    c = generate_synthetic_dataset(str(tmp_path / "c"), dataclasses.replace(spec, seed=4))
    for split in ("train", "val", "test"):  # same lines, in the same order, once the root is taken off
        rel = [[(os.path.relpath(p, r), y) for p, y in read_list(os.path.join(r, f"{split}.csv"))] for r in (a, b)]
        assert rel[0] == rel[1]
    da, db, dc = _decoded_set(a), _decoded_set(b), _decoded_set(c)
    assert da.keys() == db.keys() == dc.keys() and len(da) == 8
    for key in da:
        assert da[key][0] == db[key][0]
        np.testing.assert_array_equal(da[key][1], db[key][1])
        assert np.abs(da[key][1].astype(int) - dc[key][1].astype(int)).mean() > 5  # another seed, another clip


def test_relative_paths_option(tmp_path):
    spec = SyntheticSpec(num_classes=2, num_train=1, num_val=1, num_test=1, frames=8, height=32, relative_paths=True)
    root = generate_synthetic_dataset(str(tmp_path / "rel"), spec)
    moved = str(tmp_path / "moved")
    os.rename(root, moved)  # a relative folder can be moved
    for split in ("train", "val", "test"):
        for path, _ in read_list(os.path.join(moved, f"{split}.csv")):
            assert not os.path.isabs(path) and os.path.isfile(os.path.join(moved, path))


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path):
    spec = SyntheticSpec(num_classes=2, num_train=2, num_val=1, num_test=1, frames=8, height=32)
    out = str(tmp_path / "data")

    def interrupt(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_dataset(out, spec, progress=interrupt)
    assert not os.path.exists(out) and os.listdir(str(tmp_path)) == []
    os.makedirs(out)  # an empty folder may be filled
    generate_synthetic_dataset(out, spec)
    assert has_lists(out)
    with pytest.raises(FileExistsError):  # a non-empty one is never overwritten
        generate_synthetic_dataset(out, spec)


def _cfg(data_dir, **synthetic):
    cfg = add_synthetic_config(get_cfg())
    cfg.DATA.PATH_TO_DATA_DIR = data_dir
    cfg.MODEL.NUM_CLASSES = 2
    cfg.SYNTHETIC.update(dict(ENABLE=True, NUM_CLASSES=2, NUM_TRAIN=1, NUM_VAL=1, NUM_TEST=1, FRAMES=8, SIZE=32))
    cfg.SYNTHETIC.update(synthetic)
    return cfg


def test_ensure_synthetic_dataset(tmp_path, caplog):
    data_dir = str(tmp_path / "syn")
    assert ensure_synthetic_dataset(_cfg(data_dir, ENABLE=False)) is None and not os.path.exists(data_dir)
    bad = _cfg(data_dir)
    bad.MODEL.NUM_CLASSES = 5
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        ensure_synthetic_dataset(bad)
    assert ensure_synthetic_dataset(_cfg(data_dir)) == data_dir
    assert len(read_list(os.path.join(data_dir, "train.csv"))) == 2
    stamp = os.path.getmtime(os.path.join(data_dir, "train.csv"))
    with caplog.at_level(logging.WARNING, logger="mtnet_plugin.data.synthetic"):
        ensure_synthetic_dataset(_cfg(data_dir, SEED=7))  # present: kept, with a warning about the options
    assert os.path.getmtime(os.path.join(data_dir, "train.csv")) == stamp
    assert "'seed': (0, 7)" in caplog.text


def test_ensure_uses_another_kinetics_folder_as_is(tmp_path, make_video_list):
    other = make_video_list("train")
    make_video_list("val")
    make_video_list("test")
    before = sorted(os.listdir(other))
    assert ensure_synthetic_dataset(_cfg(other)) == other
    assert sorted(os.listdir(other)) == before
    with pytest.raises(FileExistsError):  # a non-empty folder without lists is not ours to fill
        ensure_synthetic_dataset(_cfg(os.path.join(other, "videos")))


def _frame_features(clip, t):
    """One frame's colour statistics: mean, std and an 8-bin histogram per channel."""
    f = clip[t].astype(np.float64)
    hist = [np.histogram(f[..., c], bins=8, range=(0, 256))[0] / f[..., c].size for c in range(3)]
    return np.concatenate([f.mean((0, 1)) / 255, f.std((0, 1)) / 255] + hist)


def _temporal_features(clip):
    """The clip's frame-difference energy over time, normalised to [0, 1] and sorted (phase-free)."""
    energy = np.abs(np.diff(clip.astype(np.float64), axis=0)).mean((1, 2, 3))
    energy -= energy.min()
    return np.sort(energy / (energy.max() + 1e-9))


def _nearest_centroid_accuracy(train_x, train_y, test_x, test_y):
    centroids = np.stack([train_x[train_y == c].mean(0) for c in np.unique(train_y)])
    scale = train_x.std(0) + 1e-9
    dist = (((test_x[:, None] - centroids[None]) / scale) ** 2).sum(-1)
    return float((dist.argmin(1) == test_y).mean())


def test_class_signal_is_temporal_not_in_single_frames(tmp_path):
    spec = SyntheticSpec(num_classes=4, num_train=12, num_val=0, num_test=12, frames=32, height=32, seed=0)
    root = generate_synthetic_dataset(str(tmp_path / "data"), spec)
    rng = np.random.default_rng(0)
    feats = {}
    for split in ("train", "test"):
        rows = read_list(os.path.join(root, f"{split}.csv"))
        clips = [decode(p)[0] for p, _ in rows]
        feats[split] = (np.stack([_frame_features(c, rng.integers(len(c))) for c in clips]),
                        np.stack([_temporal_features(c) for c in clips]), np.array([y for _, y in rows]))
    (f_tr, e_tr, y_tr), (f_te, e_te, y_te) = feats["train"], feats["test"]
    frame_acc = _nearest_centroid_accuracy(f_tr, y_tr, f_te, y_te)
    time_acc = _nearest_centroid_accuracy(e_tr, y_tr, e_te, y_te)
    assert frame_acc < 0.45, frame_acc  # chance is 0.25
    assert time_acc > 0.6 and time_acc > frame_acc + 0.3, (frame_acc, time_acc)


def test_classes_share_appearance():
    """Same clip seed, different class: identical first-frame background, actor and distractors up to motion."""
    spec = SyntheticSpec(num_classes=4, frames=16, height=32, max_distractors=0, noise_std=0.0)
    clips = [render_clip(np.random.default_rng(11), spec, label) for label in range(4)]
    still = [np.median(c.astype(float), axis=0) for c in clips]  # mostly the background
    for c in still[1:]:
        assert np.abs(c - still[0]).mean() < 6
    assert all(np.abs(np.diff(c.astype(int), axis=0)).sum() > 0 for c in clips)  # each one moves
