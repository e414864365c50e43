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
from mtnet_plugin.data.synthetic import (CLASSES, PRESETS, SyntheticSpec, _clip_rng, ensure_synthetic_dataset,
                                         generate_synthetic_dataset, has_lists, render_clip, spec_from_cfg)

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


# --------------------------------------------------------------------------------------- the other presets
def _frame_and_layout_features(clip, t):
    """One frame: the colour statistics above plus the mean colour of a 4 x 4 grid of cells (where things are)."""
    f = clip[t].astype(np.float64) / 255
    cells = [c.mean((0, 1)) for rows in np.array_split(f, 4, axis=0) for c in np.array_split(rows, 4, axis=1)]
    return np.concatenate([_frame_features(clip, t)] + cells)


def _energy(clip):
    e = np.abs(np.diff(clip.astype(np.float64), axis=0)).mean((1, 2, 3))
    return (e - e.min()) / (e.max() - e.min() + 1e-9)


def _energy_autocorrelation(clip):
    """Autocorrelation of the frame-difference energy at lags 1..23: the period of a repeated motion."""
    e = _energy(clip)
    e = e - e.mean()
    return np.array([(e[:-k] * e[k:]).sum() for k in range(1, 24)]) / ((e * e).sum() + 1e-9)


def _time_reversal_asymmetry(clip):
    """mean(e_t e_{t+k}^2 - e_t^2 e_{t+k}) for k = 1..12: zero for a clip and its time reversal alike only if
    the energy sequence is symmetric; its sign says which of two events comes first."""
    e = _energy(clip)
    return np.array([np.mean(e[:-k] * e[k:] ** 2 - e[:-k] ** 2 * e[k:]) for k in range(1, 13)])


def _median_velocity(clip):
    """Median frame-to-frame motion of the centroid of what differs from the clip's median frame (the movers)."""
    c = clip.astype(np.float64)
    fg = np.abs(c - np.median(c, axis=0)).sum(-1)
    w = fg / (fg.sum((1, 2), keepdims=True) + 1e-9)
    cy = (w.sum(2) * np.arange(c.shape[1])).sum(1)
    cx = (w.sum(1) * np.arange(c.shape[2])).sum(1)
    vy, vx = np.diff(cy), np.diff(cx)
    return np.array([np.median(vy), np.median(vx), np.mean(vy > 0), np.mean(vx > 0)])


# preset -> the temporal feature that carries its label (the sorted energy of the default test for two of them)
TEMPORAL_FEATURES = {"direction": _median_velocity, "duration": _temporal_features, "rate": _energy_autocorrelation,
                     "order": _time_reversal_asymmetry, "pauses": _energy_autocorrelation}


def test_every_preset_has_a_temporal_feature_in_the_test():
    assert set(PRESETS) == set(TEMPORAL_FEATURES) | {"tempo"}
    assert PRESETS["tempo"] is CLASSES and SyntheticSpec().preset == "tempo"
    for name, classes in PRESETS.items():
        assert len({c.name for c in classes}) == len(classes) >= 2, name


@pytest.mark.parametrize("preset", sorted(TEMPORAL_FEATURES))
def test_preset_classes_differ_in_time_not_in_single_frames(preset):
    # The clips the generator writes (render_clip with its per-clip streams), before encoding: a nearest-centroid
    # classifier on one random frame (colours and where things are) stays near chance; one on a temporal feature
    # of the family does much better.
    spec = SyntheticSpec(preset=preset, num_classes=len(PRESETS[preset]), frames=32, height=32, seed=0)
    per_class = max(10, 40 // spec.num_classes)
    rng = np.random.default_rng(0)
    feats = {}
    for split in ("train", "test"):
        clips, labels = [], []
        for label in range(spec.num_classes):
            clips += [render_clip(_clip_rng(spec.seed, split, label, k), spec, label) for k in range(per_class)]
            labels += [label] * per_class
        feats[split] = (np.stack([_frame_and_layout_features(c, rng.integers(len(c))) for c in clips]),
                        np.stack([TEMPORAL_FEATURES[preset](c) for c in clips]), np.array(labels))
    (f_tr, e_tr, y_tr), (f_te, e_te, y_te) = feats["train"], feats["test"]
    chance = 1 / spec.num_classes
    frame_acc = _nearest_centroid_accuracy(f_tr, y_tr, f_te, y_te)
    time_acc = _nearest_centroid_accuracy(e_tr, y_tr, e_te, y_te)
    assert frame_acc < chance + 0.2, (frame_acc, chance)
    assert time_acc > chance + 0.3 and time_acc > frame_acc + 0.3, (frame_acc, time_acc, chance)


def test_presets_reach_the_files_metadata_and_the_config(tmp_path):
    spec = SyntheticSpec(preset="order", num_classes=2, num_train=1, num_val=1, num_test=1, frames=8, height=32)
    root = generate_synthetic_dataset(str(tmp_path / "order"), spec)
    with open(os.path.join(root, "classes.txt")) as f:
        assert f.read().split() == ["quick_then_slow", "slow_then_quick"]
    with open(os.path.join(root, "metadata.json")) as f:
        meta = json.load(f)
    assert meta["spec"]["preset"] == "order" and [c["pattern"] for c in meta["classes"]] == ["event_pair"] * 2
    cfg = _cfg(str(tmp_path / "dir"), PRESET="direction")
    assert spec_from_cfg(cfg).preset == "direction" and spec_from_cfg(cfg).class_names[:2] == [
        "left_to_right", "right_to_left"]
    with pytest.raises(ValueError, match="DATA.RANDOM_FLIP False"):
        ensure_synthetic_dataset(cfg)  # get_cfg() flips at random: direction would be a wrong label
    cfg.DATA.RANDOM_FLIP = False
    cfg.MODEL.NUM_CLASSES = 2
    assert ensure_synthetic_dataset(cfg) == str(tmp_path / "dir")
    with open(os.path.join(str(tmp_path / "dir"), "classes.txt")) as f:
        assert f.read().split() == ["left_to_right", "right_to_left"]
    with pytest.raises(ValueError, match="unknown synthetic preset 'spin'"):
        SyntheticSpec(preset="spin")
    with pytest.raises(ValueError, match="for preset 'order'"):
        SyntheticSpec(preset="order", num_classes=3)


def test_direction_clips_move_the_named_way():
    # Without distractors or noise the actor's centroid moves the class's way in most frames.
    spec = SyntheticSpec(preset="direction", frames=24, height=32, max_distractors=0, noise_std=0.0)
    for label, (sign_y, sign_x) in enumerate([(0, 1), (0, -1), (1, 0), (-1, 0)]):
        vy, vx, _, _ = _median_velocity(render_clip(np.random.default_rng(label), spec, label))
        main, cross = (vx, vy) if sign_x else (vy, vx)
        assert np.sign(main) == (sign_x or sign_y) and abs(main) > 2 * abs(cross), (label, vy, vx)


def test_make_synthetic_cli_preset_flag(tmp_path):
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "make_synthetic.py")
    module_spec = importlib.util.spec_from_file_location("tool_make_synthetic", path)
    make_synthetic = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(make_synthetic)
    out = str(tmp_path / "rate")
    make_synthetic.main([out, "--preset", "rate", "--train", "1", "--val", "1", "--test", "1", "--frames", "8"])
    with open(os.path.join(out, "classes.txt")) as f:
        assert f.read().split() == [c.name for c in PRESETS["rate"]]  # all of the preset's classes by default
    with pytest.raises(SystemExit, match="for preset 'rate'"):
        make_synthetic.main([str(tmp_path / "bad"), "--preset", "rate", "--classes", "5"])


def test_shipped_direction_configs_turn_flips_off():
    from mtnet_plugin.config import load_config

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "Synthetic")
    for name in ("X3D_XS.yaml", "MTNet_XS.yaml"):
        cfg = load_config([os.path.join(root, "Direction", name)])
        assert cfg.SYNTHETIC.PRESET == "direction" and cfg.DATA.RANDOM_FLIP is False
        assert cfg.MODEL.NUM_CLASSES == cfg.SYNTHETIC.NUM_CLASSES == len(PRESETS["direction"])
        assert cfg.DATA.PATH_TO_DATA_DIR != "data/synthetic"  # not the default family's folder
    assert load_config([os.path.join(root, "Direction", "MTNet_XS.yaml")]).MODEL.ARCH == "mtnet"
