"""Values given on the command line that the library functions parse (``--views 10x3``, ``--input 16x224``)."""
from typing import Tuple


def parse_pair(text: str, what: str, example: str) -> Tuple[int, int]:
    """``"10x3"`` -> ``(10, 3)``: two positive integers joined by ``x`` or ``X`` (CLI sizes such as views, input).

    Args:
        text: the value given.
        what: its name in errors, e.g. ``"views"``.
        example: a valid value and its meaning in errors, e.g. ``"'10x3' (clips x crops)"``.

    Raises:
        ValueError: not two positive integers joined by ``x``.
    """
    try:
        first, second = (int(p) for p in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"{what} must look like {example}, got {text!r}") from None
    if first < 1 or second < 1:
        raise ValueError(f"{what} must be positive, got {text!r}")
    return first, second
