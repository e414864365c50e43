"""json_stats lines: PySlowFast's format, and non-finite numbers written as text instead of crashing the logger."""
import math

import numpy as np
import simplejson

from mtnet_plugin.engine.logs import format_json_stats, log_json_stats, read_json_stats


def test_finite_floats_keep_five_decimals_and_sorted_keys():
    assert format_json_stats({"b": 0.123456789, "a": 2, "c": [1.5, np.float32(0.25)]}) == \
        '{"a": 2, "b": 0.12346, "c": [1.50000, 0.25000]}'


def test_nan_and_inf_are_written_as_text_and_read_back(tmp_path):
    stats = {"_type": "train_iter_", "grad_norm": float("nan"), "loss": float("inf"),
             "lr": [float("-inf"), np.float64("nan")], "top1_err": 12.5}
    text = log_json_stats(stats, str(tmp_path))
    parsed = simplejson.loads(text)  # strict JSON: no bare NaN / Infinity tokens
    assert parsed["grad_norm"] == "nan" and parsed["loss"] == "inf" and parsed["lr"] == ["-inf", "nan"]
    assert "NaN" not in text and "Infinity" not in text
    (back,) = read_json_stats(str(tmp_path / "json_stats.log"))
    assert math.isnan(float(back["grad_norm"])) and float(back["loss"]) == math.inf
    assert float(back["top1_err"]) == 12.5
