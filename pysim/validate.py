"""The one integer check of the project: a leaf module every layer may import."""
from __future__ import annotations

import numbers

from pysim.errors import BadInput


def is_int(value) -> bool:
    """True for Python and numpy integers; False for bools, floats and strings."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value, what: str, *, minimum: int | None = None, maximum: int | None = None,
              error: type[Exception] = BadInput) -> int:
    """``value`` as a Python int if it is an integer (not a bool) in ``minimum..maximum``;
    otherwise raise ``error`` with "``what`` must be ..., got VALUE"."""
    if not is_int(value):
        raise error(f"{what} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise error(f"{what} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise error(f"{what} must be <= {maximum}, got {value!r}")
    return int(value)
