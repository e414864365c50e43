"""Named variants (mtnet_plugin/models/presets.py): native inputs (spec #18) and backbone geometry."""
import pytest
import torch

from mtnet_plugin.models import PRESET_NAMES, preset, preset_input_shape


def test_native_inputs_follow_spec_18():
    assert preset_input_shape("X3D_S") == (3, 13, 160, 160)
    assert preset_input_shape("X3D_S", test=True) == (3, 13, 182, 182)
    assert preset_input_shape("X3D_M") == (3, 16, 224, 224)
    assert preset_input_shape("X3D_M", test=True) == (3, 16, 256, 256)
    assert preset_input_shape("X3D_L") == (3, 16, 312, 312)
    assert preset_input_shape("X3D_L", test=True) == (3, 16, 356, 356)
    for name in PRESET_NAMES:
        if name.startswith("MTNet"):
            assert preset_input_shape(name) == preset_input_shape(name.replace("MTNet", "X3D"))


def test_x3d_presets_parameter_counts_and_overrides():
    # X3D-S and X3D-M are one network; num_classes and overrides reach the builder.
    s, m = preset("X3D_S"), preset("X3D_M")
    assert sum(p.numel() for p in s.parameters()) == sum(p.numel() for p in m.parameters()) == 3_794_322
    small = preset("X3D_M", num_classes=7, dim_c5=64)
    assert small.head.projection.weight.shape == (7, 64)


def test_unknown_preset_fails_listing_names():
    with pytest.raises(KeyError, match="X3D_M"):
        preset("X3D_XXL")
    with pytest.raises(KeyError, match="X3D_M"):
        preset_input_shape("nope")


def test_s_and_m_are_one_network():
    from mtnet_plugin.models.presets import same_network

    assert same_network("MTNet_S", "MTNet_M") and same_network("X3D_S", "X3D_M")
    assert not same_network("MTNet_M", "MTNet_L") and not same_network("MTNet_M", "X3D_M")
    s, m = preset("MTNet_S"), preset("MTNet_M")
    assert [(k, v.shape) for k, v in s.state_dict().items()] == [(k, v.shape) for k, v in m.state_dict().items()]


# One preset per distinct network: XS, S and M share theirs (test above).
@pytest.mark.parametrize("name", ["X3D_M", "X3D_L", "MTNet_M", "MTNet_L"])
def test_every_preset_runs_forward_and_backward_on_a_tiny_clip(name):
    torch.manual_seed(0)
    model = preset(name, num_classes=3, dim_c5=32)
    out = model(torch.randn(1, 3, 4, 32, 32))
    assert out.shape == (1, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert model.s2.pathway0_res0.branch1.weight.grad is not None
