"""Fault injection, config side: unknown keys, wrong types and impossible values stop ``tools/run_net.py`` with an
error naming the key, before any list or video is read and before OUTPUT_DIR is touched.

Each test is a row of docs/reliability.md.
"""
import importlib.util
import os

import pytest

import fault_files
from mtnet_plugin.data import kinetics, video_list

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run_net():
    spec = importlib.util.spec_from_file_location("run_net_cli", os.path.join(ROOT, "tools", "run_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_data_reads(monkeypatch):
    """Any attempt to read a video list fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError(f"a video list was read before the config was rejected: {args}")

    monkeypatch.setattr(video_list, "read_video_list", forbidden)
    monkeypatch.setattr(kinetics, "read_video_list", forbidden)


def _start(run_net, tmp_path, opts=(), **sections):
    """Run ``tools/run_net.py --cfg <tiny yaml with sections> --opts <opts>``; return (error, cfg path, out dir)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    fault_files.write_list(str(data / "train.csv"), [("never_read.mp4", 0)])
    out = str(tmp_path / "out")
    cfg_dict = fault_files.tiny_cfg_dict(str(data), out)
    for node, values in sections.items():
        if isinstance(values, dict):
            cfg_dict.setdefault(node, {}).update(values)
        else:
            cfg_dict[node] = values
    path = fault_files.write_yaml(str(tmp_path / "bad.yaml"), cfg_dict)
    with pytest.raises(Exception) as err:
        run_net.main(["--cfg", path] + (["--opts", *opts] if opts else []))
    assert not os.path.exists(out), "OUTPUT_DIR was created before the config was rejected"
    return err.value, path, out


@pytest.mark.parametrize("sections, opts, key", [
    ({"DATA": {"NUM_FRAME": 4}}, (), "DATA.NUM_FRAME"),
    ({"SOLVER": {"BASE_LRR": 0.1}}, (), "SOLVER.BASE_LRR"),
    ({"MTNET": {"DELTAA": 0.5}}, (), "MTNET.DELTAA"),
    ({"NOT_A_NODE": {"X": 1}}, (), "NOT_A_NODE"),
    ({}, ("TRAIN.BATCHSIZE", "8"), "TRAIN.BATCHSIZE"),
], ids=["file-data", "file-solver", "file-mtnet", "file-node", "opts"])
def test_unknown_key_is_named_before_any_data_is_read(run_net, tmp_path, no_data_reads, sections, opts, key):
    err, path, _ = _start(run_net, tmp_path, opts, **sections)
    assert key in str(err)
    if not opts:
        assert path in str(err)  # the file that holds it


@pytest.mark.parametrize("sections, opts, key", [
    ({"SOLVER": {"BASE_LR": "fast"}}, (), "SOLVER.BASE_LR"),
    ({"DATA": {"TRAIN_JITTER_SCALES": 32}}, (), "DATA.TRAIN_JITTER_SCALES"),
    ({"TRAIN": {"ENABLE": "yes please"}}, (), "TRAIN.ENABLE"),
    ({}, ("DATA.NUM_FRAMES", "four"), "DATA.NUM_FRAMES"),
], ids=["str-for-float", "int-for-list", "str-for-bool", "opts-str-for-int"])
def test_wrong_type_is_named_before_any_data_is_read(run_net, tmp_path, no_data_reads, sections, opts, key):
    err, _, _ = _start(run_net, tmp_path, opts, **sections)
    assert key in str(err)


IMPOSSIBLE = [
    ("DATA.NUM_FRAMES", 0),
    ("TRAIN.BATCH_SIZE", 0),
    ("SOLVER.MAX_EPOCH", 0),
    ("SOLVER.BASE_LR", -0.1),
    ("TEST.NUM_SPATIAL_CROPS", 2),
    ("DATA.TRAIN_CROP_SIZE", 64),  # above TRAIN_JITTER_SCALES[0] = 32
    ("MODEL.NUM_CLASSES", 0),
    ("MODEL.DROPOUT_RATE", 1.5),
    ("DATA_LOADER.NUM_WORKERS", -1),
    ("SOLVER.LR_POLICY", "sometimes"),
]


@pytest.mark.parametrize("key, value", IMPOSSIBLE, ids=[k for k, _ in IMPOSSIBLE])
def test_impossible_value_is_named_before_any_data_is_read(run_net, tmp_path, no_data_reads, key, value):
    node, name = key.split(".")
    err, _, _ = _start(run_net, tmp_path, **{node: {name: value}})
    assert key in str(err) and repr(value) in str(err)


MTNET_IMPOSSIBLE = [
    ("MTNET.DELTA", 1.5),
    ("MTNET.DELTA", 0.0),
    ("MTNET.CELL", "transformer"),
    ("MTNET.POOL", "median"),
    ("MTNET.SR_LAYERS", 0),
]


@pytest.mark.parametrize("key, value", MTNET_IMPOSSIBLE, ids=[f"{k}={v}" for k, v in MTNET_IMPOSSIBLE])
def test_impossible_mtnet_value_is_named_before_any_data_is_read(run_net, tmp_path, no_data_reads, key, value):
    node, name = key.split(".")
    err, _, _ = _start(run_net, tmp_path, MODEL={"ARCH": "mtnet"}, **{node: {name: value}})
    assert key in str(err)
