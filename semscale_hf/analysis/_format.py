"""Number formatting and JSON-safe values, shared by the analysis report, its plots and the model card."""

from __future__ import annotations

import math
from typing import Any


__all__ = ["finite_or_none", "format_number", "json_safe", "none_to_nan"]


def format_number(
    value: float | int | None, spec: str = ".4g", *, missing: str = "n/a", infinity: str | None = "inf"
) -> str:
    """`value` formatted with `spec`; integers as they are, `missing` for `None` and NaN.

    Args:
        value (`float`, `int` or `None`): the number.
        spec (`str`, *optional*, defaults to `".4g"`): format specification of floats.
        missing (`str`, *optional*, defaults to `"n/a"`): text for `None` and NaN.
        infinity (`str`, *optional*, defaults to `"inf"`): text for +inf (`"-" + infinity` for -inf); `None` shows
            infinities as `missing`.

    Example:

    >>> format_number(0.123456), format_number(None), format_number(float("-inf"), infinity="∞"), format_number(12)
    ('0.1235', 'n/a', '-∞', '12')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if math.isinf(value):
        if infinity is None:
            return missing
        return infinity if value > 0 else f"-{infinity}"
    return format(value, spec)


def finite_or_none(value: Any) -> float | None:
    """`float(value)`, or `None` when it is NaN or infinite."""
    value = float(value)
    return value if math.isfinite(value) else None


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float replaced by `None`, so that strict JSON (no NaN) can hold it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def none_to_nan(values: list[float | None]) -> list[float]:
    """The inverse of `json_safe` for a list of numbers: `None` back to NaN."""
    return [math.nan if v is None else v for v in values]
