"""hubconf.py through torch.hub.load(source="local"): entry points, forward_features, pretrained weights from a
local file and from a hash-checked file:// URL (nothing is downloaded from the network)."""
import hashlib
import importlib
import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from mtnet_plugin.integrations import hub
from mtnet_plugin.models import preset

REPO = str(Path(__file__).resolve().parents[1])
TINY = (1, 3, 4, 32, 32)


def _load(name, **kwargs):
    return torch.hub.load(REPO, name, source="local", trust_repo=True, verbose=False, **kwargs)


def test_hubconf_lists_every_entry_point_and_its_dependencies_import():
    spec = importlib.util.spec_from_file_location("hubconf_under_test", Path(REPO) / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entries = sorted(n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_"))
    assert entries == sorted(hub.ENTRY_POINTS)
    for name in module.dependencies:
        importlib.import_module(name)


def test_mtnet_m_from_hub_runs_and_exposes_its_embedding():
    torch.manual_seed(0)
    model = _load("mtnet_m", num_classes=5).eval()
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in preset("MTNet_M", num_classes=5).parameters()) == 8_593_905 - 395 * 2049
    assert any(type(m).__name__ == "MTBlock" for m in model.modules())
    x = torch.randn(*TINY)
    with torch.no_grad():
        logits, features = model(x), model.forward_features(x)
    assert logits.shape == (1, 5) and features.shape == (1, 2048)
    assert features.abs().sum() > 0
    torch.testing.assert_close(model.head.projection(features), logits)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_pretrained_local_file_with_another_class_count_loads_all_but_the_head(tmp_path, caplog):
    torch.manual_seed(1)
    source = hub.mtnet_s(num_classes=7)
    for p in source.parameters():  # away from any initialisation, so equality means "loaded"
        p.data.normal_()
    path = tmp_path / "checkpoint_epoch_00001.pyth"
    torch.save({"epoch": 0, "model_state": source.state_dict()}, path)
    torch.manual_seed(2)
    with caplog.at_level("INFO"):
        model = _load("mtnet_s", num_classes=5, pretrained=str(path))
    theirs, ours = source.state_dict(), model.state_dict()
    head = {"head.projection.weight", "head.projection.bias"}
    equal = [k for k in ours if k not in head and torch.equal(ours[k], theirs[k])]
    assert len(equal) == len(ours) - 2
    assert ours["head.projection.weight"].shape == (5, 2048)
    assert "classifier" in caplog.text and "keeps its initialisation" in caplog.text
    same = _load("mtnet_s", num_classes=7, pretrained=str(path))
    assert all(torch.equal(v, theirs[k]) for k, v in same.state_dict().items())
    assert not same.training


def test_pretrained_of_another_network_is_refused(tmp_path):
    path = tmp_path / "x3d.pyth"
    torch.save(hub.x3d_s(num_classes=5).state_dict(), path)
    with pytest.raises(hub.PretrainedMismatch, match="do not fit"):
        hub.mtnet_s(num_classes=5, pretrained=str(path))


def test_pretrained_url_is_hash_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    source = hub.x3d_s(num_classes=3)
    plain = tmp_path / "x3d_s.pyth"
    torch.save(source.state_dict(), plain)
    digest = hashlib.sha256(plain.read_bytes()).hexdigest()
    good = tmp_path / f"x3d_s-{digest[:10]}.pyth"
    shutil.copy(plain, good)
    model = hub.x3d_s(num_classes=3, pretrained=good.as_uri())
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())
    bad = tmp_path / "x3d_s-0123456789.pyth"
    shutil.copy(plain, bad)
    with pytest.raises(RuntimeError, match="hash"):
        hub.x3d_s(num_classes=3, pretrained=bad.as_uri())
    with pytest.raises(ValueError, match="SHA-256"):
        hub.x3d_s(num_classes=3, pretrained=plain.as_uri())
