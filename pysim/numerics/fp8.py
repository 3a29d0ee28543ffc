"""FP8 E5M2 (1 sign, 5 exponent, 2 fraction bits, bias 15) encode and decode, vectorized.

Encode rounds to nearest, ties to even, straight from float32 or float64 input (no
intermediate rounding), keeps subnormals, and saturates every magnitude beyond the
largest finite value (57344), Inf included, to +-57344: it never produces an Inf or NaN
code. NaN input is an error. Decode is exact; exponent code 31 decodes to Inf (fraction 0)
or the canonical quiet NaN. The rounding itself (on the float64 bit pattern) is the
compiled loop :func:`pysim.numerics.kernels.e5m2_codes`, shared with the S2FP8 encoder.
"""
from __future__ import annotations

import numpy as np

from pysim.numerics.formats import E5M2, FP32


def first_index(mask: np.ndarray) -> tuple[int, ...]:
    """The index (a tuple of ints) of the first True in ``mask``, in C order; for error
    messages that name the first bad element. ``mask`` must hold at least one True."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _check_no_nan(x: np.ndarray, what: str) -> None:
    nan = np.isnan(x)
    if nan.any():
        raise ValueError(f"{what}: {int(nan.sum())} NaN value(s); first at index {first_index(nan)}")


def _as_float64(x) -> np.ndarray:
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"expected a real numeric array, got dtype {x.dtype}")
    return x.astype(np.float64, copy=False)


def e5m2_encode(x) -> np.ndarray:
    """uint8 E5M2 codes of ``x`` (float32 or float64, any shape), RNE, saturating to +-57344."""
    x = _as_float64(x)
    _check_no_nan(x, "e5m2_encode")
    from pysim.numerics.kernels import e5m2_codes  # numba: imported on first encode

    return e5m2_codes(np.abs(x), sign_of=x)


def _e5m2_value_table() -> np.ndarray:
    codes = np.arange(1 << E5M2.width, dtype=np.int64)
    exp = (codes >> E5M2.frac_bits) & E5M2.exp_max_code
    frac = codes & E5M2.frac_mask
    subnormal = frac * 2.0 ** E5M2.subnormal_quantum_exp
    normal = (1.0 + frac * 2.0 ** -E5M2.frac_bits) * 2.0 ** (exp - E5M2.bias).astype(np.float64)
    mag = np.where(exp == 0, subnormal, normal)
    mag = np.where(exp == E5M2.exp_max_code, np.where(frac == 0, np.inf, np.nan), mag)
    values = np.where(codes & E5M2.sign_mask, -mag, mag).astype(np.float32)
    bits = values.view(np.uint32).copy()
    bits[np.isnan(values)] = FP32.canonical_nan_bits
    return bits.view(np.float32)


#: float32 value of every E5M2 code 0..255 (NaN codes hold the canonical quiet NaN).
E5M2_VALUES = _e5m2_value_table()
E5M2_VALUES.flags.writeable = False


def e5m2_decode(codes) -> np.ndarray:
    """float32 values of uint8 E5M2 codes (exact; code exponent 31 gives Inf or NaN)."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise TypeError(f"e5m2_decode expects uint8 codes, got dtype {codes.dtype}")
    return E5M2_VALUES[codes]
