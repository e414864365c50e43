"""Tensor transforms: short-side sizes, crop offsets (landscape/portrait), resize, flip, normalisation."""
import torch

from mtnet_plugin.data.transforms import (crop, normalize, random_spatial_sampling, resize_short_side,
                                          short_side_size, uint8_to_float, uniform_crop_offsets,
                                          uniform_spatial_sampling)


def test_short_side_size():
    assert short_side_size(240, 320, 256) == (256, 341)  # PySlowFast: 320x240 -> 341x256
    assert short_side_size(320, 240, 256) == (341, 256)
    assert short_side_size(100, 100, 64) == (64, 64)


def test_uniform_crop_offsets_landscape_and_portrait():
    # Facts §5.3: a 341x256 frame, crop 256 -> x = 0 / 43 / 85 (centre = ceil(85 / 2)).
    assert [uniform_crop_offsets(256, 341, 256, i) for i in range(3)] == [(0, 0), (0, 43), (0, 85)]
    assert [uniform_crop_offsets(341, 256, 256, i) for i in range(3)] == [(0, 0), (43, 0), (85, 0)]
    # 40x56 frame, crop 32: y centred at ceil(8 / 2) = 4, x = 0 / 12 / 24.
    assert [uniform_crop_offsets(40, 56, 32, i) for i in range(3)] == [(4, 0), (4, 12), (4, 24)]
    assert [uniform_crop_offsets(56, 40, 32, i) for i in range(3)] == [(0, 4), (12, 4), (24, 4)]
    assert uniform_crop_offsets(32, 32, 32, 2) == (0, 0)


def test_crop_takes_the_window():
    clip = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7)
    out = crop(clip, 1, 2, 3)
    assert out.shape == (2, 3, 3, 3)
    assert out[1, 2, 0, 0] == clip[1, 2, 1, 2] and out[0, 0, 2, 2] == clip[0, 0, 3, 4]


def test_resize_halving_averages_two_by_two_blocks():
    # Bilinear, align_corners=False, exact 2x down-scale samples at 2i + 0.5: the mean of each 2x2 block.
    clip = torch.rand(3, 2, 8, 12)
    out = resize_short_side(clip, 4)
    assert out.shape == (3, 2, 4, 6)
    blocks = clip.view(3, 2, 4, 2, 6, 2).mean(dim=(3, 5))
    assert torch.allclose(out, blocks, atol=1e-6)
    assert resize_short_side(clip, 8) is clip


def test_uint8_to_float_and_normalize():
    frames = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    frames[..., 0] = 255
    clip = normalize(uint8_to_float(frames), [0.45, 0.45, 0.45], [0.225, 0.225, 0.225])
    assert clip.shape == (3, 2, 4, 4)
    assert torch.allclose(clip[0], torch.full((2, 4, 4), (1 - 0.45) / 0.225))
    assert torch.allclose(clip[1], torch.full((2, 4, 4), -0.45 / 0.225))


class _Lowest:
    """A random source that picks the lowest option and always flips."""

    def uniform(self, a, b):
        return a

    def randint(self, a, b):
        return a

    def random(self):
        return 0.0


def test_random_spatial_sampling_with_a_fixed_source():
    clip = torch.rand(3, 2, 20, 30)
    out = random_spatial_sampling(clip, 10, 14, 8, random_flip=True, rng=_Lowest())
    expected = resize_short_side(clip, 10)[..., 0:8, 0:8].flip(-1)
    assert torch.equal(out, expected)
    no_flip = random_spatial_sampling(clip, 10, 14, 8, random_flip=False, rng=_Lowest())
    assert torch.equal(no_flip, resize_short_side(clip, 10)[..., 0:8, 0:8])


def test_random_spatial_sampling_shapes_and_flip_rate():
    import random

    rng = random.Random(0)
    clip = torch.rand(3, 1, 20, 30)
    for _ in range(50):
        assert random_spatial_sampling(clip, 12, 16, 10, rng=rng).shape == (3, 1, 10, 10)
    square = torch.rand(3, 1, 10, 10)  # scale 10 and crop 10: the output is the clip or its mirror image
    outs = [random_spatial_sampling(square, 10, 10, 10, rng=rng) for _ in range(200)]
    flips = sum(torch.equal(o, square.flip(-1)) for o in outs)
    assert all(torch.equal(o, square) or torch.equal(o, square.flip(-1)) for o in outs)
    assert 70 < flips < 130


def test_uniform_spatial_sampling_right_crop():
    clip = torch.rand(3, 2, 16, 24)
    out = uniform_spatial_sampling(clip, 16, 16, 2)
    assert torch.equal(out, clip[..., :, 8:24])


def test_jitter_scale_uniform_and_inverse_uniform():
    from mtnet_plugin.data.transforms import jitter_scale

    class Fixed:
        def __init__(self, pick):
            self.pick = pick

        def uniform(self, a, b):
            return a if self.pick == "low" else b

    assert jitter_scale(256, 320, rng=Fixed("low")) == 256 and jitter_scale(256, 320, rng=Fixed("high")) == 320
    # Inverse: 1 / U[1/320, 1/256]; the low end of the draw is 1/320 -> scale 320.
    assert jitter_scale(256, 320, True, rng=Fixed("low")) == 320
    assert jitter_scale(256, 320, True, rng=Fixed("high")) == 256
