"""mtnet_plugin.ops triplet cosine frame selection (Eq. 6-7), against a slow per-sample Python loop."""
import io
import math
import warnings

import pytest
import torch

from mtnet_plugin.ops import adjacent_cosine, select_frames, triplet_cosine_select, triplet_scores


def _slow_select(x, highest=False):
    """Per-sample loop of Eq. 6-7 in float64 Python: lowest (or highest) triplets, ties to the earlier frame."""
    n, c, t = x.shape[:3]
    if t <= 2:
        return [list(range(t)) for _ in range(n)]
    result = []
    for s in range(n):
        v = [[x[s, ch, f].double().sum().item() for ch in range(c)] for f in range(t)]
        norm = [max(math.sqrt(sum(a * a for a in vec)), 1e-6) for vec in v]
        cos = [sum(a * b for a, b in zip(v[f], v[f + 1])) / (norm[f] * norm[f + 1]) for f in range(t - 1)]
        cand = [(cos[f - 1] + cos[f], f) for f in range(1, t - 1)]
        cand.sort(key=lambda p: ((-p[0] if highest else p[0]), p[1]))
        result.append(sorted(f for _, f in cand[: t // 2]))
    return result


@pytest.mark.parametrize("t", [3, 4, 5, 8, 9, 16])
@pytest.mark.parametrize("highest", [False, True])
def test_matches_slow_loop_on_random_clips(t, highest):
    x = torch.randn(4, 5, t, 3, 4, generator=torch.Generator().manual_seed(t))
    idx = triplet_cosine_select(x, highest=highest)
    assert idx.dtype == torch.long and idx.shape == (4, t // 2)
    assert idx.tolist() == _slow_select(x, highest)


@pytest.mark.parametrize("t", [1, 2])
def test_short_clips_pass_through(t):
    x = torch.randn(3, 2, t, 4, 4)
    assert triplet_cosine_select(x).tolist() == [list(range(t))] * 3
    torch.testing.assert_close(select_frames(x, triplet_cosine_select(x)), x)


def test_small_t_candidate_counts():
    assert triplet_cosine_select(torch.randn(2, 3, 3, 2, 2)).tolist() == [[1], [1]]
    assert triplet_cosine_select(torch.randn(2, 3, 4, 2, 2)).tolist() == [[1, 2], [1, 2]]
    idx = triplet_cosine_select(torch.randn(2, 3, 5, 2, 2))
    assert idx.shape == (2, 2) and ((idx >= 1) & (idx <= 3)).all() and (idx[:, 0] < idx[:, 1]).all()


def _one_hot_clip(channels_per_frame, c=4, hw=3):
    x = torch.zeros(1, c, len(channels_per_frame), hw, hw)
    for f, ch in enumerate(channels_per_frame):
        x[0, ch, f] = torch.rand(hw, hw) + 0.5
    return x


def test_motion_burst_is_kept_and_highest_drops_it():
    # Static frames use channel 0; frames 3 and 4 are a burst on channels 1 and 2 (orthogonal).
    x = _one_hot_clip([0, 0, 0, 1, 2, 0, 0, 0])
    assert triplet_cosine_select(x).tolist() == [[2, 3, 4, 5]]
    assert triplet_cosine_select(x, highest=True).tolist() == [[1, 2, 5, 6]]


def test_batched_samples_get_their_own_indices():
    a = _one_hot_clip([0, 0, 0, 1, 2, 0, 0, 0])
    b = _one_hot_clip([0, 0, 0, 0, 1, 2, 0, 0])
    idx = triplet_cosine_select(torch.cat([a, b]))
    assert idx.tolist() == [[2, 3, 4, 5], [3, 4, 5, 6]]


def test_exact_ties_go_to_the_earlier_frame():
    # One-hot frames give exact cosines 0/1, so many scores tie exactly.
    pattern = [0, 0, 1, 1, 0, 0, 1, 1, 0, 0]
    x = _one_hot_clip(pattern)
    scores = triplet_scores(x)[0].tolist()
    assert len(set(scores)) < len(scores)  # the crafted clip really has ties
    for highest in (False, True):
        assert triplet_cosine_select(x, highest).tolist() == _slow_select(x, highest)
    assert triplet_cosine_select(x).tolist() == [[1, 2, 3, 4, 5]]  # all centre scores are 1: earliest win


def test_blank_and_static_clips_are_defined():
    for x in (torch.zeros(2, 3, 8, 4, 4), torch.ones(2, 3, 8, 4, 4)):
        assert torch.isfinite(adjacent_cosine(x)).all()
        assert triplet_cosine_select(x).tolist() == [[1, 2, 3, 4]] * 2
        assert triplet_cosine_select(x, highest=True).tolist() == [[1, 2, 3, 4]] * 2
    assert adjacent_cosine(torch.zeros(1, 3, 4, 2, 2)).abs().sum() == 0


def test_cosine_is_plain_cosine_of_spatial_sums():
    x = torch.randn(2, 6, 5, 3, 3, dtype=torch.float64)
    v = x.sum(dim=(3, 4))
    ref = torch.nn.functional.cosine_similarity(v[:, :, :-1], v[:, :, 1:], dim=1)
    torch.testing.assert_close(adjacent_cosine(x), ref)


def test_select_frames_gathers_per_sample_and_passes_gradient():
    x = torch.randn(2, 3, 6, 2, 3, requires_grad=True)
    idx = torch.tensor([[1, 4], [2, 3]])
    out = select_frames(x, idx)
    for s in range(2):
        for k in range(2):
            assert torch.equal(out[s, :, k], x[s, :, idx[s, k]])
    out.sum().backward()
    assert x.grad[0, :, [1, 4]].eq(1).all() and x.grad[0, :, [0, 2, 3, 5]].eq(0).all()


def test_fp32_under_autocast_and_half_inputs():
    x = torch.randn(2, 4, 7, 3, 3)
    ref = triplet_cosine_select(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert adjacent_cosine(x).dtype == torch.float32
        assert torch.equal(triplet_cosine_select(x), ref)
    assert adjacent_cosine(x.half()).dtype == torch.float32


class _Select(torch.nn.Module):
    def forward(self, x):
        return triplet_cosine_select(x)


def test_traceable_and_exportable_without_baking_in_values():
    x1 = _one_hot_clip([0, 0, 0, 1, 2, 0, 0, 0])
    x2 = _one_hot_clip([0, 1, 2, 0, 0, 0, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_Select(), (x1,))
    exported = torch.export.export(_Select(), (x1,)).module()
    for x in (x1, x2, torch.randn(1, 4, 8, 3, 3)):
        assert torch.equal(traced(x), triplet_cosine_select(x))
        assert torch.equal(exported(x), triplet_cosine_select(x))
    assert not torch.equal(triplet_cosine_select(x1), triplet_cosine_select(x2))


def test_onnx_export_matches_eager():
    ort = pytest.importorskip("onnxruntime")
    x1 = _one_hot_clip([0, 0, 0, 1, 2, 0, 0, 0])
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Select(), (x1,), buf, dynamo=False)
    session = ort.InferenceSession(buf.getvalue())
    name = session.get_inputs()[0].name
    for x in (x1, _one_hot_clip([0, 1, 2, 0, 0, 0, 0, 0]), torch.randn(1, 4, 8, 3, 3)):
        assert session.run(None, {name: x.numpy()})[0].tolist() == triplet_cosine_select(x).tolist()


def test_select_frames_fast_single_sample_path_matches_gather():
    # N = 1 uses index_select; compare outputs and gradients with torch.gather written out here.
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 3, 7, 4, 5, dtype=torch.float64, generator=gen)
    idx = torch.tensor([[1, 2, 5]])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    fast = select_frames(a, idx)
    ref = torch.gather(b, 2, idx.view(1, 1, 3, 1, 1).expand(1, 3, 3, 4, 5))
    assert "IndexSelect" in type(fast.grad_fn).__name__
    g = torch.randn(fast.shape, dtype=torch.float64, generator=gen)
    fast.backward(g)
    ref.backward(g)
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(a.grad, b.grad)


# --- the CPU kernel (csrc/select.c) against the tensor version ------------------------------------------------


def _tensor_version(monkeypatch, x, highest):
    from mtnet_plugin.ops import native

    with monkeypatch.context() as m:
        m.setattr(native, "available", lambda: False)
        return triplet_cosine_select(x, highest=highest)


@pytest.mark.parametrize("highest", [False, True])
def test_kernel_gives_the_tensor_versions_indices(monkeypatch, highest):
    from mtnet_plugin.ops import native

    if not native.available():
        pytest.skip(f"no CPU kernels here: {native.reason()}")
    gen = torch.Generator().manual_seed(11)
    calls = []
    real = native.triplet_select
    monkeypatch.setattr(native, "triplet_select", lambda *a: calls.append(1) or real(*a))
    for n, c, t in [(1, 1, 1), (2, 3, 2), (1, 4, 3), (3, 5, 8), (2, 2, 11), (1, 6, 16)]:
        x = torch.randn(n, c, t, 3, 5, generator=gen)
        got = triplet_cosine_select(x, highest=highest)
        assert got.dtype == torch.int64 and got.shape == (n, t if t <= 2 else t // 2)
        assert torch.equal(got, _tensor_version(monkeypatch, x, highest))
    assert len(calls) == 6
    # Ties (every score equal) go to the earlier frames; all-zero frames score 0, never NaN.
    for x in (torch.ones(2, 3, 9, 2, 2), torch.zeros(1, 2, 7, 2, 2)):
        got = triplet_cosine_select(x, highest=highest)
        assert torch.equal(got, _tensor_version(monkeypatch, x, highest))
        assert got[0].tolist() == list(range(1, 1 + x.shape[2] // 2))
