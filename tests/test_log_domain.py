"""pysim.log_domain: E5M2 codes of 2^t computed from t must be the exact RNE of 2^t.

References: the plain E5M2 encoder applied to exp2(t) (agrees except within a libm ulp of
a midpoint), and exact decimal arithmetic at the thresholds themselves.
"""
from decimal import Decimal, getcontext

import numpy as np
import pytest

from pysim.fp8 import E5M2_VALUES, magnitude_codes_e5m2
from pysim.formats import E5M2
from pysim.log_domain import magnitude_codes_of_power


def test_agrees_with_exp2_then_round_on_random_exponents():
    rng = np.random.default_rng(3)
    t = np.concatenate([rng.uniform(-20, 18, 1_000_000), rng.normal(0, 8, 200_000)])
    ours = magnitude_codes_of_power(t)
    reference = magnitude_codes_e5m2(np.exp2(t))
    bad = np.flatnonzero(ours != reference)
    assert bad.size == 0, f"t={t[bad[0]]!r}: ours {ours[bad[0]]}, exp2+round {reference[bad[0]]}"


def _exact_code(t: float) -> int:
    """RNE_E5M2(2^t) by exact comparison with every midpoint, 60-digit decimals."""
    getcontext().prec = 60
    value = Decimal(2) ** Decimal(t)
    grid = [Decimal(float(v)) for v in E5M2_VALUES[:E5M2.max_finite_bits + 1]]
    if value >= grid[-1]:
        return E5M2.max_finite_bits
    for code in range(len(grid) - 1):
        low, high = grid[code], grid[code + 1]
        if value < high:
            middle = (low + high) / 2
            if value != middle:
                return code if value < middle else code + 1
            return code if code % 2 == 0 else code + 1
    raise AssertionError("unreachable")


def test_exact_at_every_threshold_and_its_neighbours():
    """At each midpoint's log2 and one float64 ulp either side: the exact answer."""
    exponents = []
    for code in range(E5M2.max_finite_bits):
        low, high = float(E5M2_VALUES[code]), float(E5M2_VALUES[code + 1])
        t = np.log2((low + high) / 2)
        exponents += [np.nextafter(t, -np.inf), t, np.nextafter(t, np.inf)]
    exponents += [-np.inf, -17.0, 15.807354922057604, 16.0, np.inf]
    t = np.array(exponents)
    ours = magnitude_codes_of_power(t)
    for value, code in zip(t, ours):
        if np.isinf(value):
            assert code == (0 if value < 0 else E5M2.max_finite_bits)
            continue
        assert code == _exact_code(float(value)), f"t={value!r}"


def test_half_smallest_subnormal_is_a_tie_to_zero():
    assert magnitude_codes_of_power(np.array([-17.0]))[0] == 0
    assert magnitude_codes_of_power(np.array([np.nextafter(-17.0, 0)]))[0] == 1


@pytest.mark.parametrize("t, code", [(-14.0, 4), (0.0, 60), (15.0, 120), (40.0, 0x7B), (1e300, 0x7B)])
def test_landmarks(t, code):
    assert magnitude_codes_of_power(np.array([t]))[0] == code
