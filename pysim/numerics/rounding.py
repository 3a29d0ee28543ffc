"""Round-to-nearest-even from binary64 onto a smaller binary format, vectorized.

One rule, used for the conversions onto FP32 of the golden model (the S2FP8 decode
tables and reduced-significand FP32, :func:`float64_to_fp32_bits`; the E5M2 encoder in
:mod:`pysim.numerics.fp8` applies the same rule with its own integer arithmetic on the
float64 bit pattern): a finite float64 ``x`` in binade [2^e, 2^(e+1)) is rounded,
ties to even, to the grid of spacing 2^max(e - (p - 1), q_min), where ``p`` is the
precision (significant bits) and ``q_min`` the exponent of the smallest subnormal.
That single rounding is exactly "round to p significant bits and to the format's
subnormal grid" without double rounding. Overflow handling is left to the caller.
"""
from __future__ import annotations

import numpy as np

from pysim.numerics.formats import FP32, check_mant_bits

_F64_FRAC_BITS = 52
_F64_BIAS = 1023
_F64_ABS_MASK = np.uint64((1 << 63) - 1)


def _pow2(exps: np.ndarray) -> np.ndarray:
    """2.0**exps as float64 for integer exponents inside the float64 normal range."""
    return ((exps + _F64_BIAS).astype(np.uint64) << np.uint64(_F64_FRAC_BITS)).view(np.float64)


def round_magnitude(mag: np.ndarray, precision: int, quantum_exp_min: int) -> np.ndarray:
    """RNE of non-negative finite float64 magnitudes to ``precision`` bits, grid >= 2^quantum_exp_min."""
    mag = np.asarray(mag, dtype=np.float64)
    biased = (mag.view(np.uint64) >> np.uint64(_F64_FRAC_BITS)).astype(np.int64)
    # float64 subnormals (biased 0) are far below every grid here: treat them as binade -1022.
    quantum_exp = np.maximum(np.maximum(biased, 1) - _F64_BIAS - (precision - 1), quantum_exp_min)
    return np.rint(mag * _pow2(-quantum_exp)) * _pow2(quantum_exp)


def float64_to_fp32_bits(x, mant_bits: int = FP32.precision) -> np.ndarray:
    """RNE of float64 values to FP32 with a ``mant_bits``-bit significand; returns uint32 bits.

    Subnormals are kept (grid 2^-149). A result whose rounded magnitude reaches 2^128
    becomes Inf; a magnitude below 2^-150 (half the smallest subnormal) becomes zero,
    keeping the sign. Inf stays Inf; every NaN becomes the canonical quiet NaN.
    """
    check_mant_bits(mant_bits)
    x = np.asarray(x, dtype=np.float64)
    sign = np.signbit(x)
    mag = np.abs(x)
    finite = np.isfinite(mag)
    rounded = round_magnitude(np.where(finite, mag, 0.0), mant_bits, FP32.subnormal_quantum_exp)
    overflow = rounded >= 2.0 ** (FP32.emax + 1)
    with np.errstate(over="ignore"):
        out = np.where(overflow | ~finite, np.inf, rounded).astype(np.float32).view(np.uint32)
    out = out | np.where(sign, np.uint32(FP32.sign_mask), np.uint32(0))
    return np.where(np.isnan(x), np.uint32(FP32.canonical_nan_bits), out)


def fp32_bits(x) -> np.ndarray:
    """The uint32 bit patterns of float32 values."""
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


def fp32_from_bits(bits) -> np.ndarray:
    """float32 values from uint32 bit patterns."""
    return np.ascontiguousarray(bits, dtype=np.uint32).view(np.float32)


def canonicalize_nan(bits: np.ndarray) -> np.ndarray:
    """Replace every FP32 NaN bit pattern by the canonical quiet NaN 0x7FC00000."""
    bits = np.asarray(bits, dtype=np.uint32)
    is_nan = (bits & np.uint32(FP32.magnitude_mask)) > np.uint32(FP32.inf_bits)
    return np.where(is_nan, np.uint32(FP32.canonical_nan_bits), bits)
