"""Fault injection, config side: unknown keys, wrong types and impossible values stop ``tools/run_net.py`` with an
error naming the key, before any list or video is read and before OUTPUT_DIR is touched; an unusable checkpoint named
by ``TRAIN/TEST.CHECKPOINT_FILE_PATH`` is refused at start, naming the file and the key.

Each test is a row of docs/reliability.md.
"""
import importlib.util
import os

import pytest

import fault_files
from mtnet_plugin.config import ConfigError
from mtnet_plugin.data import kinetics, video_list
from mtnet_plugin.engine.checkpoint import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run_net():
    spec = importlib.util.spec_from_file_location("run_net_cli", os.path.join(ROOT, "tools", "run_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class DataReadTooEarly(Exception):
    """A video list was read before the config or checkpoint was rejected (not an error the tests expect)."""


@pytest.fixture
def no_data_reads(monkeypatch):
    """Any attempt to read a video list fails the test."""

    def forbidden(*args, **kwargs):
        raise DataReadTooEarly(f"a video list was read before the config was rejected: {args}")

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
    with pytest.raises(ConfigError) as err:  # not DataReadTooEarly, not a crash of another kind
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


# -- checkpoint files named by the config ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A real checkpoint of the tiny X3D, the same cut to 5000 bytes, a text file, one of another model, and a
    pickle that runs code when unpickled (its ``__reduce__`` creates the file ``paths["marker"]``)."""
    import torch

    from mtnet_plugin.config import load_config
    from mtnet_plugin.engine.checkpoint import save_checkpoint
    from mtnet_plugin.models import build_model

    folder = tmp_path_factory.mktemp("ckpts")
    cfg = load_config([fault_files.write_yaml(str(folder / "c.yaml"), fault_files.tiny_cfg_dict("", str(folder)))])
    model = build_model(cfg)
    good = save_checkpoint(str(folder), model, torch.optim.SGD(model.parameters(), lr=0.1), 0, cfg)
    paths = {"good": good, "missing": str(folder / "missing.pyth"), "truncated": str(folder / "truncated.pyth"),
             "not_a_checkpoint": str(folder / "notes.pyth")}
    with open(good, "rb") as src, open(paths["truncated"], "wb") as dst:
        dst.write(src.read()[:5000])
    with open(paths["not_a_checkpoint"], "w") as f:
        f.write("epoch 3 was the good one\n")
    other = torch.nn.Sequential(torch.nn.Conv3d(3, 5, 1), torch.nn.Linear(5, 7))  # matches none of X3D's tensors
    paths["other_model"] = save_checkpoint(str(folder / "other"), other,
                                           torch.optim.SGD(other.parameters(), lr=0.1), 0, cfg)
    paths["marker"] = str(folder / "the_pickle_ran")
    paths["malicious"] = str(folder / "malicious.pyth")
    torch.save({"epoch": 0, "model_state": _RunsCode(paths["marker"])}, paths["malicious"])
    assert not os.path.exists(paths["marker"])
    return paths


class _RunsCode:
    """Unpickling this object calls ``open(marker, "w")``: the marker file appears if the loader runs pickled code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def _start_with_checkpoint(tmp_path, split, path):
    """``train`` (TRAIN) or ``test`` (TEST) with ``{split}.CHECKPOINT_FILE_PATH = path``; returns the error raised."""
    from mtnet_plugin.config import load_config
    from mtnet_plugin.engine import run_test
    from mtnet_plugin.engine import train

    data = tmp_path / "data"
    data.mkdir()
    sections = {"TRAIN": {"AUTO_RESUME": False}, "TEST": {"ENABLE": split == "TEST"}}
    sections[split]["CHECKPOINT_FILE_PATH"] = path
    cfg = load_config([fault_files.write_yaml(str(tmp_path / "c.yaml"), fault_files.tiny_cfg_dict(
        str(data), str(tmp_path / "out"), **sections))])
    cfg.freeze()
    with pytest.raises((FileNotFoundError, CheckpointError)) as err:  # not DataReadTooEarly
        (train if split == "TRAIN" else run_test)(cfg)
    return err.value


@pytest.mark.parametrize("kind", ["missing", "truncated", "not_a_checkpoint"])
@pytest.mark.parametrize("split", ["TRAIN", "TEST"])
def test_unreadable_checkpoint_file_is_named_with_its_key_at_start(checkpoints, tmp_path, no_data_reads, split,
                                                                    kind):
    err = _start_with_checkpoint(tmp_path, split, checkpoints[kind])
    message = str(err)
    fault_files.expect_handled(checkpoints[kind] in message and f"{split}.CHECKPOINT_FILE_PATH" in message,
                               f"{type(err).__name__}: {message!r} does not name both the file and "
                               f"{split}.CHECKPOINT_FILE_PATH")


@pytest.mark.parametrize("split", ["TRAIN", "TEST"])
def test_checkpoint_of_another_model_is_refused_at_start(checkpoints, tmp_path, no_data_reads, split):
    err = _start_with_checkpoint(tmp_path, split, checkpoints["other_model"])
    fault_files.expect_handled(checkpoints["other_model"] in str(err),
                               f"no error naming the checkpoint before the data was read: {err!r}")


@pytest.mark.parametrize("split", ["TRAIN", "TEST"])
def test_checkpoint_that_is_a_malicious_pickle_is_refused_without_running_it(checkpoints, tmp_path, no_data_reads,
                                                                            split):
    err = _start_with_checkpoint(tmp_path, split, checkpoints["malicious"])
    assert not os.path.exists(checkpoints["marker"]), "unpickling the checkpoint ran the code it carries"
    message = str(err)
    assert isinstance(err, CheckpointError) and checkpoints["malicious"] in message, message
    assert f"{split}.CHECKPOINT_FILE_PATH" in message and "refused" in message and "io.open" in message, message
