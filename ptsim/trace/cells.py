"""Parsing of single table cells (CSV text or Parquet/JSON values) with messages for users: the
one set of cell parsers for trace files, converters and ptexec's job files."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd


class CellError(ValueError):
    """A cell that does not hold what its column needs; the message says what is wrong."""


def is_empty(value: Any) -> bool:
    """True for a missing value: None, NaN/NA, or blank text."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def to_float(value: Any) -> float:
    """A finite float."""
    if is_empty(value):
        raise CellError("empty value")
    if isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            raise CellError(f"{value!r} is not a number") from None
    elif isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        x = float(value)
    else:
        raise CellError(f"{value!r} is not a number")
    if not math.isfinite(x):
        raise CellError(f"{value!r} is not a finite number")
    return x


INT_LIMIT = 2**63
"""Integers must lie in [-2^63, 2^63): tables hold them as int64."""


def to_int(value: Any) -> int:
    """An integer in int64 range; an integral float such as ``4.0`` is accepted."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        out = int(value)
    else:
        out = None
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                out = int(value.strip())
        if out is None:
            x = to_float(value)
            if not x.is_integer():
                raise CellError(f"{value!r} is not an integer")
            out = int(x)
    if not -INT_LIMIT <= out < INT_LIMIT:
        raise CellError(f"{value!r} is out of range (integers must be below 2^63)")
    return out


def to_str(value: Any) -> str:
    """Non-blank text, stripped; integers are accepted as their decimal text."""
    if is_empty(value):
        raise CellError("empty value")
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return str(int(value))
    raise CellError(f"{value!r} is not text")


PARSERS: Mapping[str, Callable[[Any], str | float | int]] = MappingProxyType(
    {"str": to_str, "float": to_float, "int": to_int}
)
