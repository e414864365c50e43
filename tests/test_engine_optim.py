"""Parameter groups (BN group, zero-wd 1-D params, conv-weight LR multiplier) and optimizer methods."""
import pytest
import torch
from torch import nn

from mtnet_plugin.config import get_cfg
from mtnet_plugin.engine.optim import construct_optimizer, param_groups, set_lr


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean(dim=(2, 3, 4)))


def _ids(params):
    return {id(p) for p in params}


def _groups(model, cfg):
    return {g["name"]: g for g in param_groups(model, cfg)}


def test_bn_params_go_to_the_bn_group_with_bn_weight_decay():
    cfg = get_cfg()
    cfg.BN.WEIGHT_DECAY, cfg.SOLVER.WEIGHT_DECAY = 0.0, 5e-5
    model = Tiny()
    groups = _groups(model, cfg)
    assert _ids(groups["bn"]["params"]) == _ids([model.bn.weight, model.bn.bias])
    assert groups["bn"]["weight_decay"] == 0.0
    assert _ids(groups["non_bn"]["params"]) == _ids([model.conv.weight, model.conv.bias, model.fc.weight, model.fc.bias])
    assert groups["non_bn"]["weight_decay"] == 5e-5
    assert set(groups) == {"bn", "non_bn"}  # empty groups dropped


def test_zero_wd_1d_params_and_frozen_params():
    cfg = get_cfg()
    cfg.SOLVER.ZERO_WD_1D_PARAM = True
    model = Tiny()
    model.fc.weight.requires_grad_(False)
    groups = _groups(model, cfg)
    assert _ids(groups["zero_wd"]["params"]) == _ids([model.conv.bias, model.fc.bias])
    assert groups["zero_wd"]["weight_decay"] == 0.0
    assert _ids(groups["non_bn"]["params"]) == _ids([model.conv.weight])


def test_conv_weight_lr_multiplier_scales_the_sgd_update():
    cfg = get_cfg()
    cfg.SOLVER.CONV_WEIGHT_LR_MULT = 0.1
    cfg.SOLVER.MOMENTUM, cfg.SOLVER.NESTEROV, cfg.SOLVER.WEIGHT_DECAY = 0.0, False, 0.0
    torch.manual_seed(0)
    model = Tiny()
    opt = construct_optimizer(model, cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    assert _ids(groups["conv"]["params"]) == _ids([model.conv.weight])
    set_lr(opt, 0.5)
    assert groups["conv"]["lr"] == pytest.approx(0.05) and groups["non_bn"]["lr"] == pytest.approx(0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randn(2, 3, 2, 4, 4)).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    for name, p in model.named_parameters():
        lr = 0.05 if name == "conv.weight" else 0.5
        torch.testing.assert_close(p.detach(), before[name] - lr * grads[name])


@pytest.mark.parametrize("method, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                         ("adamw", torch.optim.AdamW)])
def test_methods(method, cls):
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZING_METHOD = method
    opt = construct_optimizer(Tiny(), cfg)
    assert type(opt) is cls
    if method == "sgd":
        assert opt.defaults["momentum"] == cfg.SOLVER.MOMENTUM and opt.defaults["nesterov"] == cfg.SOLVER.NESTEROV
    else:
        assert tuple(opt.defaults["betas"]) == tuple(cfg.SOLVER.BETAS)
    cfg.SOLVER.OPTIMIZING_METHOD = "lamb"
    with pytest.raises(ValueError, match="OPTIMIZING_METHOD"):
        construct_optimizer(Tiny(), cfg)
