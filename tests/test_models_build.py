"""Registries and build_model (mtnet_plugin/models/build.py): registry-driven smoke tests at tiny sizes."""
import pytest
import torch
from fvcore.common.config import CfgNode

from mtnet_plugin.models import HEAD_REGISTRY, MODEL_REGISTRY, build_model, create_x3d, get_registered
from mtnet_plugin.models.build import model_name_from_config


def tiny_cfg(model_name="X3D", arch="x3d"):
    """A PySlowFast-schema cfg with only the keys the model contract reads (docs/design.md), tiny sizes."""
    cfg = CfgNode()
    cfg.MODEL = CfgNode(dict(MODEL_NAME=model_name, ARCH=arch, NUM_CLASSES=3, DROPOUT_RATE=0.0,
                             FC_INIT_STD=0.01, HEAD_ACT="softmax"))
    cfg.X3D = CfgNode(dict(WIDTH_FACTOR=1.0, DEPTH_FACTOR=0.5, BOTTLENECK_FACTOR=2.25, DIM_C1=8, DIM_C5=16,
                           SCALE_RES2=False, BN_LIN5=True, CHANNELWISE_3x3x3=True))
    cfg.RESNET = CfgNode(dict(ZERO_INIT_FINAL_BN=True))
    cfg.BN = CfgNode(dict(EPSILON=1e-5, MOMENTUM=0.1))
    cfg.DATA = CfgNode(dict(NUM_FRAMES=4, TRAIN_CROP_SIZE=32, INPUT_CHANNEL_NUM=[3]))
    cfg.MTNET = CfgNode(dict(DELTA=0.875, P_INPUT="full", LP_KERNEL="same", POOL="softpool",
                             SYMMETRIC_POOL=False, SELECTION="lowest", CELL="gru", SR_LAYERS=2,
                             LAST_MTCONV_ACT=True, ZERO_INIT="sr", HEAD="X3DHead"))
    return cfg


@pytest.mark.parametrize("name", sorted(n for n, _ in MODEL_REGISTRY))
def test_every_registered_model_builds_runs_and_returns_logits(name):
    torch.manual_seed(0)
    cfg = tiny_cfg(model_name=name)
    model = build_model(cfg)
    assert type(model).__name__ == name and model.training
    assert all(p.device.type == "cpu" for p in model.parameters())
    x = torch.randn(2, 3, 4, 32, 32)
    out = model([x])
    assert out.shape == (2, 3)
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    model.eval()
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, 3) and torch.isfinite(logits).all()
        assert not torch.allclose(logits.sum(1), torch.ones(2))  # logits, not probabilities
        assert model(torch.randn(1, 3, 6, 48, 48)).shape == (1, 3)  # larger test crop, other T
        assert model(torch.randn(1, 3, 4, 16, 16)).shape == (1, 3)  # multigrid's smaller crop
    # from_config maps the keys: the cfg's BN_LIN5 and widths reach the head.
    assert model.head.lin_5_bn is not None and model.head.projection.weight.shape == (3, 16)


@pytest.mark.parametrize("name", sorted(n for n, _ in HEAD_REGISTRY))
def test_every_registered_head_pools_adaptively(name):
    torch.manual_seed(0)
    head = HEAD_REGISTRY.get(name)(dim_in=6, dim_inner=8, dim_out=10, num_classes=4, dropout_rate=0.2,
                                   act="sigmoid", bn_lin5=False, norm_eps=1e-5, norm_momentum=0.1)
    assert head.act == "sigmoid"
    for shape in [(2, 6, 4, 3, 3), (2, 6, 1, 1, 1), (2, 6, 7, 5, 2)]:
        x = torch.randn(shape, requires_grad=True)
        out = head(x)
        assert out.shape == (2, 4)
        out.sum().backward()
        assert x.grad is not None


def test_x3d_from_config_matches_builder():
    cfg = tiny_cfg()
    cfg.X3D.BN_LIN5 = False
    torch.manual_seed(0)
    a = build_model(cfg)
    b = create_x3d(num_classes=3, width_factor=1.0, depth_factor=0.5,
                   dim_c1=8, dim_c5=16, dropout_rate=0.0)
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]


def test_arch_mtnet_selects_mtnet_for_backbone_families():
    assert model_name_from_config(tiny_cfg("X3D", "mtnet")) == "MTNet"
    assert model_name_from_config(tiny_cfg("SlowFast", "mtnet")) == "MTNet"
    assert model_name_from_config(tiny_cfg("X3D", "x3d")) == "X3D"
    assert model_name_from_config(tiny_cfg("MyNet", "mtnet")) == "MyNet"


def test_unknown_names_fail_listing_registered_names():
    with pytest.raises(KeyError, match="registered: .*X3D"):
        build_model(tiny_cfg("NoSuchNet"))
    with pytest.raises(KeyError, match="X3DHead"):
        get_registered(HEAD_REGISTRY, "NoSuchHead")
    cfg = tiny_cfg()
    cfg.MTNET.HEAD = "NoSuchHead"
    with pytest.raises(KeyError, match="NoSuchHead.*X3DHead"):
        build_model(cfg)


@pytest.mark.parametrize("family", ["X3D", "MTNet"])
@pytest.mark.parametrize("size", ["S", "L"])
def test_shipped_configs_build_the_preset_network(family, size):
    # The runtime's configs (configs/Kinetics) and the presets describe the same networks.
    import pathlib

    from mtnet_plugin.config import load_config
    from mtnet_plugin.models import preset

    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "Kinetics" / f"{family}_{size}.yaml"
    cfg = load_config([str(path)])
    model = build_model(cfg)
    assert type(model).__name__ == family
    reference = preset(f"{family}_{size}", num_classes=cfg.MODEL.NUM_CLASSES)
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]
