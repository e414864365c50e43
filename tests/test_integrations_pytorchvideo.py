"""MTNet through pytorchvideo's own create_x3d with MTBlock as its bottleneck, against our MTNet of the same
configuration: parameters, FLOPs, and (with our weights copied under pytorchvideo's names) the same outputs."""
import re

import pytest
import torch

from mtnet_plugin.models import create_mtnet, model_stats

pytest.importorskip("pytorchvideo")
from mtnet_plugin.integrations.pytorchvideo import create_mtblock_bottleneck, create_mtnet_pytorchvideo  # noqa: E402

CLIP, CROP, CLASSES = 4, 64, 10
SMALL = dict(depth_factor=0.5, delta=0.75)  # 1, 1, 3, 2 blocks per stage: every kind of block, fast


def _ours():
    return create_mtnet(num_classes=CLASSES, width_factor=2.0,
                        depth_factor=SMALL["depth_factor"], dim_c1=12, dim_c5=2048, delta=SMALL["delta"])


def _theirs(**kwargs):
    return create_mtnet_pytorchvideo(input_clip_length=CLIP, input_crop_size=CROP, model_num_class=CLASSES,
                                     **SMALL, **kwargs)


_RENAMES = [
    (r"^s1\.pathway0_stem\.conv_xy\.", "blocks.0.conv.conv_t."),
    (r"^s1\.pathway0_stem\.conv\.", "blocks.0.conv.conv_xy."),
    (r"^s1\.pathway0_stem\.bn\.", "blocks.0.norm."),
    (r"^s(\d)\.pathway0_res(\d+)\.branch1\.", lambda m: f"blocks.{int(m[1]) - 1}.res_blocks.{m[2]}.branch1_conv."),
    (r"^s(\d)\.pathway0_res(\d+)\.branch1_bn\.", lambda m: f"blocks.{int(m[1]) - 1}.res_blocks.{m[2]}.branch1_norm."),
    (r"^s(\d)\.pathway0_res(\d+)\.branch2\.", lambda m: f"blocks.{int(m[1]) - 1}.res_blocks.{m[2]}.branch2."),
    (r"^head\.conv_5\.", "blocks.5.pool.pre_conv."),
    (r"^head\.conv_5_bn\.", "blocks.5.pool.pre_norm."),
    (r"^head\.lin_5\.", "blocks.5.pool.post_conv."),
    (r"^head\.projection\.", "blocks.5.proj."),
]


def _rename(name):
    for pattern, repl in _RENAMES:
        new, n = re.subn(pattern, repl, name)
        if n:
            return new
    raise AssertionError(f"no pytorchvideo name for {name}")


def test_builds_through_pytorchvideo_and_trains():
    from pytorchvideo.models.net import Net
    from mtnet_plugin.layers import MTBlock

    torch.manual_seed(0)
    model = _theirs(zero_init_final_bn=False)  # else each block's first convs get no gradient at step 0
    assert isinstance(model, Net)
    blocks = [m for m in model.modules() if isinstance(m, MTBlock)]
    assert len(blocks) == 1 + 1 + 3 + 2
    assert not any(type(m).__name__ in ("SqueezeExcitation", "Swish") for m in model.modules())
    x = torch.randn(2, 3, CLIP, CROP, CROP)
    logits = model(x)
    assert logits.shape == (2, CLASSES)
    logits.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert float(blocks[0].conv_a.conv_local.weight.grad.abs().sum()) > 0


def test_same_parameters_flops_and_function_as_our_mtnet():
    torch.manual_seed(0)
    ours, theirs = _ours().eval(), _theirs().eval()
    own = ours.state_dict()
    mapped = {_rename(k): v for k, v in own.items()}
    assert set(mapped) == set(theirs.state_dict())  # one tensor for each, same layout
    for name, value in theirs.state_dict().items():
        assert value.shape == mapped[name].shape, name
    params = sum(p.numel() for p in ours.parameters())
    assert params == sum(p.numel() for p in theirs.parameters())

    for p in ours.parameters():  # away from the zero-initialised BNs, so the blocks do something
        p.data.uniform_(0.5, 1.5) if p.dim() == 1 else p.data.normal_(0, 0.1)
    theirs.load_state_dict({_rename(k): v for k, v in ours.state_dict().items()}, strict=True)
    x = torch.randn(2, 3, CLIP, CROP, CROP)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x), rtol=1e-4, atol=1e-5)

    a, b = model_stats(ours, (3, CLIP, CROP, CROP)), model_stats(theirs, (3, CLIP, CROP, CROP))
    assert a["params"] == b["params"] == params
    assert a["gflops_weighted"] == b["gflops_weighted"]
    # The one difference: pytorchvideo's head averages its (1 x 1 x 1) map of logits once more (1 FLOP a class).
    assert b["gflops"] - a["gflops"] == pytest.approx(CLASSES * 1e-9, abs=2e-9)
    assert a["unsupported_ops"] == b["unsupported_ops"] == {}


def test_pytorchvideo_shortcut_without_its_bn_is_48_parameters_smaller():
    with_bn, without = _theirs(), _theirs(pyslowfast_shortcut=False)
    diff = sum(p.numel() for p in with_bn.parameters()) - sum(p.numel() for p in without.parameters())
    assert diff == 2 * 24  # res2's first block: 24 -> 24 channels, stride 2 (weight + bias of one BN)


def test_bottleneck_refuses_what_mtblock_cannot_be():
    with pytest.raises(ValueError, match="BatchNorm3d"):
        create_mtblock_bottleneck(dim_in=8, dim_inner=16, dim_out=8, norm=torch.nn.GroupNorm)
    with pytest.raises(ValueError, match="stride"):
        create_mtblock_bottleneck(dim_in=8, dim_inner=16, dim_out=8, conv_stride=(2, 2, 2))
