"""Constructor-parameter validation shared by the binary32 components."""
from __future__ import annotations

from pysim.validate import is_int


def check_int(owner: str, name: str, value, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int (not a bool) in ``minimum..maximum``, else raise."""
    bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
    if not is_int(value):
        raise TypeError(f"{owner}: {name} must be an int {bound}, not {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{owner}: {name} must be {bound}, not {value}")
    return int(value)


def check_bool(owner: str, name: str, value) -> bool:
    """Return ``value`` if it is a bool, else raise TypeError."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a bool, not {value!r}")
    return value
