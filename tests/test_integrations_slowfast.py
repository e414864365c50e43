"""mtnet_plugin.integrations.slowfast: config extension, registration and SlowFast's model contract.

Most tests run without PySlowFast: an fvcore ``CfgNode`` with SlowFast's keys and an fvcore ``Registry`` stand in
for SlowFast's defaults and ``MODEL_REGISTRY``. Tests that call ``_import_slowfast`` use the real package and are
skipped when it cannot be imported.
"""
import subprocess
import sys

import pytest
import torch
import yaml
from fvcore.common.config import CfgNode
from fvcore.common.registry import Registry

from mtnet_plugin import models as mt_models
from mtnet_plugin.config import get_cfg
from mtnet_plugin.config import mtnet as mtnet_config
from mtnet_plugin.integrations import slowfast as sf

OurMTNet = mt_models.MTNet

# MODEL.SINGLE_PATHWAY_ARCH of PySlowFast's defaults: "mtnet" is not in it.
SLOWFAST_SINGLE = ["2d", "c2d", "i3d", "slow", "x3d", "mvit", "maskmvit"]


def _slowfast_like_cfg() -> CfgNode:
    cfg = CfgNode()
    cfg.MODEL = CfgNode()
    cfg.MODEL.ARCH = "slowfast"
    cfg.MODEL.MODEL_NAME = "SlowFast"
    cfg.MODEL.SINGLE_PATHWAY_ARCH = list(SLOWFAST_SINGLE)
    cfg.MODEL.MULTI_PATHWAY_ARCH = ["slowfast"]
    cfg.BN = CfgNode({"NORM_TYPE": "batchnorm"})
    return cfg


# A tiny MTNet, as ``KEY value`` pairs that SlowFast's defaults and ours both accept.
TINY_OPTS = {
    "MODEL.MODEL_NAME": "MTNet",
    "MODEL.ARCH": "mtnet",
    "MODEL.NUM_CLASSES": 5,
    "MODEL.DROPOUT_RATE": 0.0,
    "X3D.WIDTH_FACTOR": 0.5,
    "X3D.DEPTH_FACTOR": 0.4,
    "X3D.DIM_C5": 32,
    "DATA.NUM_FRAMES": 4,
    "DATA.TRAIN_CROP_SIZE": 32,
    "DATA.TEST_CROP_SIZE": 32,
}


def _merge(cfg: CfgNode, opts: dict) -> CfgNode:
    cfg.merge_from_list([item for kv in opts.items() for item in kv])
    return cfg


def _tiny_cfg(**overrides) -> CfgNode:
    """Our full cfg, extended for SlowFast, at a tiny size; ``overrides`` are ``"A.B": value`` pairs."""
    return _merge(sf.add_mtnet_config(get_cfg()), {**TINY_OPTS, **overrides})


def _our_forward(model: torch.nn.Module, x) -> torch.Tensor:
    """Our model's forward (logits in any mode), also on a SlowFast-contract subclass instance."""
    return OurMTNet.forward(model, x)


def _clip(cfg: CfgNode, n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = cfg.DATA.TRAIN_CROP_SIZE
    return torch.randn(n, 3, cfg.DATA.NUM_FRAMES, s, s, generator=g)


@pytest.fixture(scope="module")
def cfg():
    return _tiny_cfg()


@pytest.fixture(scope="module")
def pair(cfg):
    """(SlowFast-contract model, our model) holding the same weights, with non-trivial BN statistics."""
    torch.manual_seed(0)
    wrapped = sf.MTNet(cfg)
    with torch.no_grad():  # move BN running stats and affine terms off their init values
        for m in wrapped.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    ours = mt_models.build_model(cfg)
    ours.load_state_dict(wrapped.state_dict(), strict=True)
    return wrapped, ours


# ----------------------------------------------------------------------------------------------- config
def test_add_mtnet_config_appends_arch_and_node():
    cfg = sf.add_mtnet_config(_slowfast_like_cfg())
    assert cfg.MODEL.SINGLE_PATHWAY_ARCH == SLOWFAST_SINGLE + ["mtnet"]
    assert cfg.MODEL.MULTI_PATHWAY_ARCH == ["slowfast"]
    expected = mtnet_config.add_mtnet_config(CfgNode()).MTNET
    assert cfg.MTNET == expected and len(cfg.MTNET) > 0
    # BN keys our model reads, at the values SlowFast's X3D hard-codes; existing BN keys untouched
    assert (cfg.BN.EPSILON, cfg.BN.MOMENTUM, cfg.BN.NORM_TYPE) == (1e-5, 0.1, "batchnorm")


def test_add_mtnet_config_lets_a_mtnet_yaml_merge(tmp_path):
    path = tmp_path / "mtnet.yaml"
    path.write_text(yaml.safe_dump({"MODEL": {"ARCH": "mtnet"}, "MTNET": {"DELTA": 0.5}}))
    plain = _slowfast_like_cfg()
    with pytest.raises(KeyError, match="MTNET"):  # what a SlowFast cfg does without the extension
        plain.merge_from_file(str(path))
    cfg = sf.add_mtnet_config(_slowfast_like_cfg())
    cfg.merge_from_file(str(path))
    assert cfg.MTNET.DELTA == 0.5
    assert cfg.MODEL.ARCH in cfg.MODEL.SINGLE_PATHWAY_ARCH  # SlowFast packs the input as [frames]


def test_add_mtnet_config_is_idempotent_and_keeps_user_values():
    cfg = sf.add_mtnet_config(_slowfast_like_cfg())
    cfg.MTNET.DELTA, cfg.BN.EPSILON = 0.5, 1e-3
    once = cfg.dump()
    sf.add_mtnet_config(cfg)
    assert cfg.dump() == once
    assert cfg.MODEL.SINGLE_PATHWAY_ARCH.count("mtnet") == 1
    ours = get_cfg()  # already lists "mtnet": nothing is added
    n = len(ours.MODEL.SINGLE_PATHWAY_ARCH)
    assert len(sf.add_mtnet_config(ours).MODEL.SINGLE_PATHWAY_ARCH) == n


def test_add_mtnet_config_rejects_a_non_slowfast_cfg():
    with pytest.raises(KeyError, match="SINGLE_PATHWAY_ARCH"):
        sf.add_mtnet_config(CfgNode({"MODEL": {"ARCH": "x3d"}}))


# ------------------------------------------------------------------------------------------- registry
def test_register_mtnet_into_a_registry_twice():
    registry = Registry("MODEL")
    assert sf.register_mtnet(registry) is registry
    assert sf.register_mtnet(registry) is registry  # no AssertionError on the second call
    assert registry.get("MTNet") is sf.MTNet
    assert [name for name, _ in registry] == ["MTNet"]


def test_register_mtnet_refuses_to_shadow_another_mtnet():
    registry = Registry("MODEL")

    class MTNet(torch.nn.Module):  # someone else's model with the same name
        pass

    registry.register(MTNet)
    with pytest.raises(ValueError, match="another MTNet"):
        sf.register_mtnet(registry)


def test_registered_class_builds_from_cfg(cfg):
    registry = sf.register_mtnet(Registry("MODEL"))
    model = registry.get(cfg.MODEL.MODEL_NAME)(cfg)  # what SlowFast's build_model does
    assert isinstance(model, sf.MTNet) and isinstance(model, OurMTNet)


def test_importing_the_integration_does_not_import_slowfast():
    code = "import sys, mtnet_plugin.integrations.slowfast; assert 'slowfast' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_register_mtnet_without_slowfast_says_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "slowfast.models.build", None)  # makes that import fail, as if absent
    with pytest.raises(ImportError, match="docs/pyslowfast.md"):
        sf.register_mtnet()


# ----------------------------------------------------------------------------------- model contract
def test_state_dict_keys_and_shapes_equal_ours(pair):
    wrapped, ours = pair
    a, b = wrapped.state_dict(), ours.state_dict()
    assert list(a) == list(b) and len(a) > 0
    assert all(a[k].shape == b[k].shape for k in a)


def test_eval_returns_softmax_of_our_logits(cfg, pair):
    wrapped, ours = pair
    x = _clip(cfg)
    wrapped.eval(), ours.eval()
    with torch.no_grad():
        probs = wrapped([x])
        logits = ours(x)
    e = torch.exp(logits.double() - logits.double().max(dim=1, keepdim=True).values)
    expected = (e / e.sum(dim=1, keepdim=True)).float()
    assert probs.shape == (2, cfg.MODEL.NUM_CLASSES)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
    assert (logits.max(1).values - logits.min(1).values > 1e-4).all()  # the softmax is not of a constant


def test_train_returns_our_logits_for_list_and_tensor(cfg, pair):
    wrapped, ours = pair
    x = _clip(cfg, seed=1)
    wrapped.train(), ours.train()
    with torch.no_grad():
        from_list, from_tensor, reference = wrapped([x]), wrapped(x), ours(x)
    torch.testing.assert_close(from_list, reference)
    torch.testing.assert_close(from_tensor, reference)
    assert not torch.allclose(from_list.sum(dim=1), torch.ones(2))  # logits, not probabilities


@pytest.mark.parametrize("act", ["sigmoid", "none"])
def test_eval_applies_head_act(act):
    cfg = _tiny_cfg(**{"MODEL.HEAD_ACT": act})
    model = sf.MTNet(cfg).eval()
    x = _clip(cfg, seed=2)
    with torch.no_grad():
        out = model([x])
        logits = _our_forward(model, x)
    torch.testing.assert_close(out, torch.sigmoid(logits) if act == "sigmoid" else logits)


def test_rejects_what_slowfast_could_ask_but_mtnet_lacks(cfg, pair):
    wrapped, _ = pair
    x = _clip(cfg)
    with pytest.raises(ValueError, match="single-pathway"):
        wrapped([x, x])
    with pytest.raises(NotImplementedError, match="bboxes"):
        wrapped([x], bboxes=torch.zeros(1, 5))
    with pytest.raises(ValueError, match="activation"):
        sf.MTNet(_tiny_cfg(**{"MODEL.HEAD_ACT": "tanh"}))
    det = _tiny_cfg()
    det.DETECTION = CfgNode({"ENABLE": True})
    with pytest.raises(NotImplementedError, match="DETECTION"):
        sf.MTNet(det)


@pytest.mark.parametrize("direction", ["ours_to_slowfast", "slowfast_to_ours"])
def test_checkpoint_round_trip(cfg, pair, tmp_path, direction):
    wrapped, ours = pair
    src, dst = (ours, sf.MTNet(cfg)) if direction == "ours_to_slowfast" else (wrapped, mt_models.build_model(cfg))
    path = tmp_path / "checkpoint_epoch_00001.pyth"
    torch.save({"epoch": 0, "model_state": src.state_dict()}, path)
    dst.load_state_dict(torch.load(path, map_location="cpu")["model_state"], strict=True)
    for key, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[key], value), key
    x = _clip(cfg, seed=3)
    src.eval(), dst.eval()
    with torch.no_grad():
        a, b = _our_forward(src, x), _our_forward(dst, x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# ------------------------------------------------------------------------------- real PySlowFast
def _import_slowfast():
    return pytest.importorskip(
        "slowfast.models.build",
        reason="PySlowFast is not importable here (needs the SlowFast checkout on PYTHONPATH, pytorchvideo from "
        "GitHub and detectron2.layers; see docs/pyslowfast.md)",
        exc_type=ImportError,
    )


def test_real_slowfast_builds_mtnet_from_its_defaults():
    build = _import_slowfast()
    from slowfast.config.defaults import get_cfg as slowfast_get_cfg

    cfg = slowfast_get_cfg()
    sf.add_custom_config(cfg)
    sf.add_custom_config(cfg)  # twice: no duplicate registration, no duplicate arch
    assert cfg.MODEL.SINGLE_PATHWAY_ARCH.count("mtnet") == 1
    _merge(cfg, {**TINY_OPTS, "NUM_GPUS": 0, "MTNET.CELL": "lstm"})
    model = build.build_model(cfg)
    assert isinstance(model, sf.MTNet)
    reference = mt_models.build_model(_tiny_cfg(**{"MTNET.CELL": "lstm"}))
    assert list(model.state_dict()) == list(reference.state_dict())  # SlowFast's cfg, our keys
    model.eval()
    with torch.no_grad():
        probs = model([_clip(cfg)])
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))
