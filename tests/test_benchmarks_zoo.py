"""The zoo report (mtnet_plugin/benchmarks/zoo.py): sections, de-duplicated measurements, table layout."""
import pytest

from mtnet_plugin.benchmarks import zoo


@pytest.fixture
def fake_measure(monkeypatch):
    """Replace model building and counting by records of the calls (the real ones take minutes)."""
    calls = []

    def fake_preset(name, num_classes=400, **overrides):
        return (name, tuple(sorted(overrides.items())))

    def fake_stats(model, input_shape, reuse_repeated_blocks=False):
        calls.append((model, tuple(input_shape)))
        return {"params": 1_000_000 * (len(calls)), "gflops": 1.0, "gflops_weighted": 0.5, "unsupported_ops": {}}

    monkeypatch.setattr(zoo, "preset", fake_preset)
    monkeypatch.setattr(zoo, "model_stats", fake_stats)
    return calls


def test_main_section_measures_each_network_and_input_once(fake_measure):
    report = zoo.zoo_report(["main"])
    # S and M are one network: their 16x256 rows share one measurement; 6 presets x 2 inputs - 2 shared.
    assert len(fake_measure) == 10
    rows = [line for line in report.splitlines() if line.startswith("| MTNet") or line.startswith("| X3D")]
    assert len(rows) == 12
    assert "| MTNet_L | 16x312x312 |" in report and "| 50.1 | 17.6 |" in report


def test_delta_section_skips_duplicate_delta_one_and_defaults(fake_measure):
    report = zoo.zoo_report(["delta"])
    # 7 deltas x 3 P-input modes x 2 models, minus delta = 1 split and split_io (no P branch) for each model.
    assert len(fake_measure) == 38
    assert "| MTNet_L | 5/8 |" in report and report.count("| - | - |") == 1  # no paper row for L at 5/8
    assert "split_io: params (M)" in report
    fits = [line for line in report.splitlines() if line.startswith("| MTNet_M | split_io |")]
    assert len(fits) == 1


def test_affine_fit_recovers_an_exact_line_and_reports_the_largest_residual():
    a, b, worst = zoo.affine_fit([1.0, 2.0, 3.0], [5.0, 7.0, 9.0])
    assert (a, b, worst) == pytest.approx((3.0, 2.0, 0.0))
    # y = x plus a bump of 1 in the middle: the fit is 1/3 + x, residuals -1/3, 2/3, -1/3.
    a, b, worst = zoo.affine_fit([0.0, 1.0, 2.0], [0.0, 2.0, 2.0])
    assert (a, b, worst) == pytest.approx((1 / 3, 1.0, 2 / 3))


def test_unknown_section_is_an_error():
    with pytest.raises(ValueError, match="main"):
        zoo.zoo_report(["nope"])
