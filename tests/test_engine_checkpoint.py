"""Checkpoints: PySlowFast layout, weights_only loading, atomic writes, intact-only resume, shape-matched loads."""
import logging
import os
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from mtnet_plugin.config import get_cfg
from mtnet_plugin.engine import checkpoint as ck


class Net(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1)
        self.bn = nn.BatchNorm3d(4)
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.head(self.bn(self.conv(x)).mean(dim=(2, 3, 4)))


def _trained(num_classes=3, seed=0):
    torch.manual_seed(seed)
    net = Net(num_classes)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(2, 3, 2, 2, 2)).sum().backward()
    opt.step()
    return net, opt


def test_layout_keys_and_weights_only_load(tmp_path):
    cfg = get_cfg()
    net, opt = _trained()
    path = ck.save_checkpoint(str(tmp_path), net, opt, 4, cfg, multigrid_phase=2)
    assert path == os.path.join(str(tmp_path), "checkpoints", "checkpoint_epoch_00005.pyth")
    state = ck.read_checkpoint(path)  # the runtime's reader: weights_only (test_malicious_pickle_... below)
    assert {"epoch", "model_state", "optimizer_state", "cfg", "rng_state", "multigrid_phase"} <= set(state)
    assert "scaler_state" not in state  # only with TRAIN.MIXED_PRECISION
    assert state["epoch"] == 4 and state["multigrid_phase"] == 2
    assert isinstance(state["cfg"], str) and "BASE_LR" in state["cfg"]
    torch.testing.assert_close(state["model_state"]["head.weight"], net.head.weight)
    assert [p for p in os.listdir(os.path.dirname(path)) if not p.endswith(".pyth")] == []  # no temp files left


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling calls open(marker, "w"): the marker file appears if pickled code runs
        return open, (self.marker, "w")


def test_malicious_pickle_is_never_executed_by_the_readers(tmp_path, caplog):
    marker = str(tmp_path / "the_pickle_ran")
    path = ck.checkpoint_path(str(tmp_path), 0)
    os.makedirs(os.path.dirname(path))
    torch.save({"epoch": 0, "model_state": {"w": torch.zeros(1)}, "extra": _RunsCode(marker)}, path)
    assert not os.path.exists(marker)
    with pytest.raises(Exception):
        ck.read_checkpoint(path)
    with pytest.raises(ck.CheckpointError, match="refused: .*io.open"):
        ck.open_checkpoint(path)
    with caplog.at_level(logging.WARNING):  # auto-resume / testing skip it with a warning
        assert ck.last_intact_checkpoint(str(tmp_path)) == (None, None)
    assert "Skipping unreadable checkpoint" in caplog.text
    assert not os.path.exists(marker), "a checkpoint reader ran the code in the pickle"
    with open(path, "rb") as f:  # the control: an unrestricted load does run it
        torch.load(f, weights_only=False)
    assert os.path.exists(marker)


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    target = os.path.join(str(tmp_path), "checkpoints", "checkpoint_epoch_00001.pyth")

    def broken_save(obj, f):
        f.write(b"partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        ck.atomic_save({"a": 1}, target)
    assert os.listdir(os.path.dirname(target)) == []


def test_auto_resume_skips_a_truncated_checkpoint(tmp_path, caplog):
    cfg = get_cfg()
    net, opt = _trained()
    for epoch in range(3):
        ck.save_checkpoint(str(tmp_path), net, opt, epoch, cfg)
    newest = ck.checkpoint_path(str(tmp_path), 2)
    size = os.path.getsize(newest)
    with open(newest, "r+b") as f:
        f.truncate(size // 2)
    with caplog.at_level(logging.WARNING):
        path, state = ck.last_intact_checkpoint(str(tmp_path))
    assert path == ck.checkpoint_path(str(tmp_path), 1) and state["epoch"] == 1
    assert any("checkpoint_epoch_00003.pyth" in r.getMessage() for r in caplog.records)
    assert ck.last_intact_checkpoint(str(tmp_path / "nothing")) == (None, None)


def test_resume_restores_model_optimizer_and_rng(tmp_path):
    cfg = get_cfg()
    net, opt = _trained()
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    path = ck.save_checkpoint(str(tmp_path), net, opt, 0, cfg)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    other, other_opt = _trained(seed=1)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    wrapped = nn.parallel.DistributedDataParallel.__new__(nn.parallel.DistributedDataParallel)
    nn.Module.__init__(wrapped)
    wrapped.module = other  # a DDP-shaped wrapper: loading goes through .module
    epoch = ck.load_checkpoint(path, wrapped, other_opt, restore_rng=True)
    assert epoch == 0
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    for key, value in net.state_dict().items():
        torch.testing.assert_close(other.state_dict()[key], value)
    buf = opt.state_dict()["state"][0]["momentum_buffer"]
    torch.testing.assert_close(other_opt.state_dict()["state"][0]["momentum_buffer"], buf)


def test_shape_matched_loading_reports_what_did_not_load(tmp_path, caplog):
    cfg = get_cfg()
    net, opt = _trained(num_classes=5)
    state = {"module." + k: v for k, v in net.state_dict().items()}  # saved from a DDP-wrapped model
    state["extra.weight"] = torch.zeros(1)
    path = os.path.join(str(tmp_path), "pretrained.pyth")
    torch.save({"epoch": 7, "model_state": state, "cfg": cfg.dump()}, path)
    target = Net(num_classes=2)
    head_before = target.head.weight.detach().clone()
    with caplog.at_level(logging.WARNING):
        report = ck.load_model_state(target, torch.load(path, weights_only=True)["model_state"])
    assert sorted(m.split(":")[0] for m in report["shape_mismatch"]) == ["head.bias", "head.weight"]
    assert report["unexpected"] == ["extra.weight"]
    assert sorted(report["missing"]) == ["head.bias", "head.weight"]
    torch.testing.assert_close(target.conv.weight, net.conv.weight)
    torch.testing.assert_close(target.head.weight, head_before)
    assert any("head.weight" in r.getMessage() for r in caplog.records)
    assert ck.load_checkpoint(path, Net(2)) == 7
    assert ck.load_checkpoint(path, Net(2), epoch_reset=True) == -1


def test_file_mode_partial_write_cleanup_and_disk_room(tmp_path, monkeypatch):
    cfg = get_cfg()
    net, opt = _trained()
    path = ck.save_checkpoint(str(tmp_path), net, opt, 0, cfg)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # as a plain torch.save, not mkstemp's 0600
    torn = os.path.join(os.path.dirname(path), ".tmp_123_abc.pyth.partial")
    open(torn, "wb").write(b"half a checkpoint")
    assert ck.remove_partial_writes(str(tmp_path)) == [".tmp_123_abc.pyth.partial"]
    assert os.listdir(os.path.dirname(path)) == ["checkpoint_epoch_00001.pyth"]
    needed = ck.ensure_room_for_checkpoints(str(tmp_path), net, cfg)
    assert needed > os.path.getsize(path)  # the estimate covers a real checkpoint of this model
    monkeypatch.setattr(ck.shutil, "disk_usage", lambda p: SimpleNamespace(total=10**6, used=10**6 - 1000, free=1000))
    with pytest.raises(OSError, match=str(tmp_path)):
        ck.ensure_room_for_checkpoints(str(tmp_path), net, cfg)



class Other(nn.Module):
    """Shares no tensor name with :class:`Net`."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv3d(3, 2, 1)


def _unchanged(model, before):
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_unusable_checkpoint_files_are_named_with_their_key(tmp_path):
    cfg = get_cfg()
    net, opt = _trained()
    good = ck.save_checkpoint(str(tmp_path), net, opt, 0, cfg)
    files = {"truncated": tmp_path / "cut.pyth", "text": tmp_path / "notes.pyth", "list": tmp_path / "list.pyth"}
    files["truncated"].write_bytes(open(good, "rb").read()[:3000])
    files["text"].write_text("epoch 3 was the good one\n")
    torch.save([torch.zeros(2)], str(files["list"]))  # loads, but is no checkpoint dict
    key = "TRAIN.CHECKPOINT_FILE_PATH"
    target = Net()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    missing = str(tmp_path / "missing.pyth")
    with pytest.raises(FileNotFoundError) as err:
        ck.load_checkpoint(missing, target, key=key)
    assert key in str(err.value) and missing in str(err.value)
    for path in map(str, files.values()):
        with pytest.raises(ck.CheckpointError) as err:
            ck.load_checkpoint(path, target, key=key)
        assert f"{key} = {path}" in str(err.value)
    with pytest.raises(ck.CheckpointError, match="not a checkpoint"):  # an already-read dict is checked as well
        ck.load_checkpoint("given.pyth", target, ckpt={"state_dict": {}})
    assert _unchanged(target, before)


def test_checkpoint_matching_no_tensor_is_refused_partial_matches_load(tmp_path, caplog):
    cfg = get_cfg()
    other = Other()
    path = ck.save_checkpoint(str(tmp_path / "other"), other, torch.optim.SGD(other.parameters(), lr=0.1), 0, cfg)
    target = Net()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ck.CheckpointError) as err:
        ck.load_checkpoint(path, target, key="TEST.CHECKPOINT_FILE_PATH")
    assert f"TEST.CHECKPOINT_FILE_PATH = {path}" in str(err.value) and "stem.weight" in str(err.value)
    # same names, every shape different: nothing would load either
    wide = {k: torch.zeros(*(s + 1 for s in v.shape)) for k, v in target.state_dict().items() if v.dim()}
    with pytest.raises(ck.CheckpointError, match="another model"):
        ck.load_checkpoint("wide.pyth", target, ckpt={"model_state": wide})
    assert _unchanged(target, before)
    # one tensor that fits (conv.weight) is a partial load: warnings, no error
    net, _ = _trained()
    with caplog.at_level(logging.WARNING):
        assert ck.load_checkpoint("one.pyth", target, ckpt={"model_state": {"conv.weight": net.conv.weight}}) == -1
    torch.testing.assert_close(target.conv.weight, net.conv.weight)
    assert any("missing" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   RuntimeError("[enforce fail at inline_container.cc:672] .\nunexpected pos 52544")])
def test_failed_checkpoint_write_names_the_file_and_leaves_nothing(tmp_path, monkeypatch, error):
    cfg = get_cfg()
    net, opt = _trained()

    def failing_save(obj, f):
        f.write(b"the first bytes")
        raise error

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError) as err:
        ck.save_checkpoint(str(tmp_path), net, opt, 0, cfg)
    message = str(err.value)
    assert err.value.filename == ck.checkpoint_path(str(tmp_path), 0) and err.value.filename in message
    assert err.value.errno == (28 if isinstance(error, OSError) else 5)  # ENOSPC kept, else EIO
    assert "\n" not in message and "bytes free in" in message and "TRAIN.AUTO_RESUME" in message
    assert err.value.__cause__ is error
    assert os.listdir(ck.checkpoint_dir(str(tmp_path))) == []


def test_loaded_share_is_logged_and_a_small_share_is_refused_unless_asked(tmp_path, caplog):
    """A checkpoint filling less than min_loaded_share of the parameters stops the run naming the file and the
    share; 0 (TRAIN.CHECKPOINT_MIN_LOADED_SHARE 0) loads it partially; a new head for another class count is
    fine-tuning and loads, saying the head was re-initialised."""

    class Big(Net):
        def __init__(self, num_classes=3):
            super().__init__(num_classes)
            self.body = nn.Conv3d(4, 4, 3)  # 432 + 4 of the 475 parameters (with 3 classes)

    net, _ = _trained()  # conv, bn, head only: 16 + 8 + 15 of Big's 475 elements = 8.2 %
    target = Big()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    key = "TRAIN.CHECKPOINT_FILE_PATH"
    with pytest.raises(ck.CheckpointError) as err:
        ck.load_checkpoint("small.pyth", target, ckpt={"model_state": net.state_dict()}, key=key,
                           min_loaded_share=0.5)
    msg = str(err.value)
    assert f"{key} = small.pyth" in msg and "8.2%" in msg and "TRAIN.CHECKPOINT_MIN_LOADED_SHARE" in msg
    assert _unchanged(target, before)
    with caplog.at_level(logging.INFO):
        ck.load_checkpoint("small.pyth", target, ckpt={"model_state": net.state_dict()}, key=key,
                           min_loaded_share=0.0)
    assert any("8.2% of its parameters" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(target.conv.weight, net.conv.weight)
    # another class count: 3 -> 7 classes, everything but the head (35 of 495 elements) loads: 92.9 %
    source = Big(3)
    finetune = Big(7)
    head = finetune.head.weight.detach().clone()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        ck.load_checkpoint("hacs.pyth", finetune, ckpt={"model_state": source.state_dict()}, key=key,
                           min_loaded_share=0.5)
    torch.testing.assert_close(finetune.body.weight, source.body.weight)
    torch.testing.assert_close(finetune.head.weight, head)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "92.9% of its parameters" in text and "Re-initialised" in text and "head.weight" in text
