"""E5M2 codes of 2^t straight from the exponent t (float64), rounded exactly, vectorized.

S2FP8 stores Y = RNE_E5M2(2^t) with t = alpha * log2|x| + beta. Rounding 2^t to E5M2
only needs to know where 2^t lies against the E5M2 midpoints, and for a midpoint m that
is ``t >= log2(m)``: with e = floor(t) and f = t - e, ``2^t >= m * 2^e <=> f >= log2(m)``.
So the code is found by comparing with a few constants, without computing 2^t: faster
than exp2 + rounding, and exact for the float64 t (exp2 is a libm function with its own
rounding error). f = t - e is exact in float64 for every binade but one (Sterbenz: e >= 1,
e = 0 trivially, e <= -2); for e = -1 and |t| < 1/2, 1 + t would round, so that binade
compares t itself with log2(m) - 1.

The constants are float64 roundings of irrational numbers (log2 of a midpoint that is
not a power of two): f can equal the rounded constant but never the true value, so each
comparison is made strict or not according to the side the true value lies on, found
once at import with 60-digit decimal arithmetic. The one rational threshold, log2 of half
the smallest subnormal (-17), is an exact tie and goes to the even code 0.
"""
from __future__ import annotations

from decimal import Decimal, getcontext

import numpy as np

from .formats import E5M2


def _threshold(midpoint: float, offset: int = 0) -> tuple[float, bool]:
    """(float64 nearest to log2(midpoint) + offset, strict), where ``strict`` means
    "compare with >": the true value lies above the float64 one, so a float64 equal to it
    is below the midpoint. 60-digit decimal logarithms decide the side."""
    getcontext().prec = 60
    exact = Decimal(midpoint).ln() / Decimal(2).ln() + offset
    value = float(exact)
    if Decimal(value) == exact:
        raise AssertionError(f"log2({midpoint}) + {offset} is exact: not an irrational threshold")
    return value, exact > Decimal(value)


#: Significand midpoints of a binade (1 + (2j+1)/2^(frac_bits+1)), as log2 thresholds of f.
_FRACTION_THRESHOLDS = [_threshold(1 + (2 * j + 1) / 2 ** (E5M2.frac_bits + 1))
                        for j in range(1 << E5M2.frac_bits)]
#: The same midpoints as thresholds of t itself in the binade e = -1 (log2(m) - 1).
_MINUS_ONE_THRESHOLDS = [_threshold(1 + (2 * j + 1) / 2 ** (E5M2.frac_bits + 1), offset=-1)
                         for j in range(1 << E5M2.frac_bits)]
#: Subnormal midpoints (j + 1/2) * 2^q_min for j = 1.. (j = 0 is the exact tie -17 below).
_SUBNORMAL_THRESHOLDS = [_threshold((j + 0.5) * 2.0 ** E5M2.subnormal_quantum_exp)
                         for j in range(1, 1 << E5M2.frac_bits)]
_HALF_SMALLEST_SUBNORMAL = float(E5M2.subnormal_quantum_exp - 1)   # log2 = -17: a tie


def _count_above(values: np.ndarray, thresholds) -> np.ndarray:
    count = np.zeros(values.shape, np.int8)
    for value, strict in thresholds:
        count += (values > value) if strict else (values >= value)
    return count


def magnitude_codes_of_power(t: np.ndarray) -> np.ndarray:
    """E5M2 magnitude codes (0..0x7B) of 2^t for float64 exponents t (-inf gives 0, large
    t saturates to 0x7B), rounded to nearest even exactly."""
    t = np.asarray(t, dtype=np.float64)
    normal = t >= E5M2.emin
    with np.errstate(invalid="ignore"):
        exponent = np.floor(t)
        fraction = t - exponent
    exponent = np.clip(exponent, E5M2.emin, E5M2.emax + 1)   # beyond: saturated below
    codes = ((exponent + E5M2.bias) * (1 << E5M2.frac_bits)).astype(np.int16)
    above = _count_above(fraction, _FRACTION_THRESHOLDS)
    minus_one = exponent == -1
    if minus_one.any():
        above = np.where(minus_one, _count_above(t, _MINUS_ONE_THRESHOLDS), above)
    codes += above
    if not normal.all():
        subnormal = (t > _HALF_SMALLEST_SUBNORMAL).astype(np.int8)
        subnormal += _count_above(t, _SUBNORMAL_THRESHOLDS)
        codes = np.where(normal, codes, subnormal)
    np.minimum(codes, E5M2.max_finite_bits, out=codes)
    return codes.astype(np.uint8)
