"""engine.cli_values: the ``AxB`` parser shared by the CLIs' size options (predict --views, export/benchmark --input)."""
import pytest

from mtnet_plugin.engine.cli_values import parse_pair


def test_parse_pair_reads_two_positive_ints_and_names_the_option_in_errors():
    assert parse_pair("10x3", "views", "'10x3'") == (10, 3)
    assert parse_pair(" 16 X 256 ", "input", "'16x256'") == (16, 256)
    with pytest.raises(ValueError, match=r"input must look like '16x256' \(frames x crop\), got '16'"):
        parse_pair("16", "input", "'16x256' (frames x crop)")
    for bad in ("ax3", "1x2x3", "", "3.5x2", "x"):
        with pytest.raises(ValueError, match="views must look like"):
            parse_pair(bad, "views", "'10x3'")
    for bad in ("0x3", "3x0", "-1x2"):
        with pytest.raises(ValueError, match=f"views must be positive, got '{bad}'"):
            parse_pair(bad, "views", "'10x3'")
