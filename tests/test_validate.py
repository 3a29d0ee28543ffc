"""The one integer rule (pysim.validate.is_int) holds wherever a parameter is an integer:
numpy integers are integers, bools and floats are not, in pysim and in hw alike."""
from __future__ import annotations

import numpy as np
import pytest

from pysim.numerics.formats import check_mant_bits
from pysim.validate import check_int, is_int
from pysim.workload.models import resnet50


@pytest.mark.parametrize("value, expected", [
    (7, True), (np.int64(7), True), (np.uint8(7), True), (2 ** 80, True),
    (True, False), (np.bool_(True), False), (7.0, False), ("7", False), (None, False)])
def test_is_int(value, expected):
    assert is_int(value) is expected


def test_check_int_bounds_and_error_type():
    assert check_int(np.int32(5), "x", minimum=1, maximum=9) == 5
    assert type(check_int(np.int32(5), "x")) is int
    with pytest.raises(ValueError, match=r"^x must be <= 9, got 10$"):
        check_int(10, "x", maximum=9, error=ValueError)


def test_every_integer_parameter_follows_the_rule():
    from hw.fp32 import LeadingZeroCount
    # numpy integers are accepted everywhere and come back as Python ints
    assert type(check_mant_bits(np.int64(8))) is int
    assert LeadingZeroCount(width=np.int64(8)).width == 8
    assert len(resnet50(batch=np.int64(2))) == len(resnet50(batch=2))
    # bools are refused everywhere
    with pytest.raises(TypeError):
        check_mant_bits(True)
    with pytest.raises(TypeError):
        LeadingZeroCount(width=True)
    with pytest.raises(ValueError):
        resnet50(batch=True)
