"""The one integer check of the project: a leaf module every layer may import."""
from __future__ import annotations

import numbers
import re

from pysim.errors import BadInput


def is_int(value) -> bool:
    """True for Python and numpy integers; False for bools, floats and strings."""
    if type(value) is int:  # the common case, without the ABC check (~1 us per call)
        return True
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


#: The largest integer a file or an option may give (int64): every count, shape and
#: cycle figure downstream is at most 64 bits wide, and Python refuses to even convert
#: text of more than 4300 digits.
INT_TEXT_MAX = (1 << 63) - 1

_INT_TEXT = re.compile(r"[+-]?[0-9]+", re.ASCII)  # ASCII digits only: not '٣' or '４'


def shown(text: str, limit: int = 24) -> str:
    """``repr(text)``, shortened to ``limit`` characters plus its length when longer."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def parse_int_text(text: str, what: str, *, minimum: int | None = None,
                   maximum: int = INT_TEXT_MAX, error: type[Exception] = BadInput) -> int:
    """A decimal integer written in ASCII digits (surrounding spaces allowed) in
    ``minimum..maximum``, else ``error`` with "``what`` must be ..., got TEXT"."""
    if maximum == INT_TEXT_MAX:
        rng = f">= {minimum}" if minimum is not None else "below 2^63"
    else:
        rng = f"in {minimum}..{maximum}" if minimum is not None else f"<= {maximum}"
    value = text.strip() if isinstance(text, str) else None
    if value is None or not _INT_TEXT.fullmatch(value):
        raise error(f"{what} must be an integer {rng}, "
                    f"got {shown(value if value is not None else str(text))}")
    number = None
    if len(value.lstrip("+-").lstrip("0")) <= len(str(maximum)):  # never int() 10^5000
        number = int(value)
    if number is None or number > maximum:
        bound = "below 2^63" if maximum == INT_TEXT_MAX else rng
        raise error(f"{what} must be an integer {bound}, "
                    f"got {shown(value) if number is None else number}")
    if minimum is not None and number < minimum:
        raise error(f"{what} must be an integer {rng}, got {number}")
    return number
