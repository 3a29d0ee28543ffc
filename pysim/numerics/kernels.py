"""Compiled inner loops of the golden model (numba): the GEMM accumulation and the E5M2
rounding of the FP8 and S2FP8 encoders.

Imported on first use (by :func:`pysim.numerics.golden.gemm` and the encoders), so that
commands which never compute a value do not pay numba's 0.5 s import.

numpy cannot express the golden GEMM's ordered FP32 accumulation without one broadcast
multiply and one add per k: at 512^3 that is 0.6 ns per MAC on this machine's cores
(1.6e9 MAC/s), the broadcast multiply alone paying ~180 ns per 512-element row of
ufunc set-up. The loop below does the same two IEEE binary32 operations per MAC in the
same order, vectorized by LLVM across n: 0.075 ns per MAC (1.3e10 MAC/s per core).

Bit-exactness: numba compiles with fastmath off, so LLVM neither contracts
``acc + x * b`` into a fused multiply-add (one rounding instead of two) nor reorders the
sum over k, and it keeps subnormals (no FTZ/DAZ). With fastmath on, 13 of 279 reference
GEMMs change. tests/test_golden_gemm.py checks results against Berkeley SoftFloat, Inf,
NaN, signed zeros and subnormals included.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from pysim.numerics.formats import E5M2

#: Output rows one kernel pass updates together: each b[k] row loaded once serves 4
#: accumulator rows (1.3e10 MAC/s per core against 1.1e10 for one row at a time).
ROWS_PER_PASS = 4
#: Below this many MACs a GEMM runs on the calling thread (thread hand-off costs ~50 us).
PARALLEL_MIN_MACS = 1 << 22

_pool: ThreadPoolExecutor | None = None


# Compiled code is cached on disk (cache=True), keyed by this file's mtime and size.
@njit(nogil=True, cache=True, fastmath=False, error_model="numpy")
def _gemm_rows(a, b, acc, row_start, row_stop):  # pragma: no cover - compiled
    """acc[m] += a[m, k] * b[k] for k in order, rows row_start..row_stop-1, 4 rows per pass."""
    k_dim, n_dim = b.shape
    m = row_start
    while m + ROWS_PER_PASS <= row_stop:
        out0, out1, out2, out3 = acc[m], acc[m + 1], acc[m + 2], acc[m + 3]
        for k in range(k_dim):
            x0, x1, x2, x3 = a[m, k], a[m + 1, k], a[m + 2, k], a[m + 3, k]
            b_row = b[k]
            for j in range(n_dim):
                y = b_row[j]
                out0[j] = out0[j] + x0 * y
                out1[j] = out1[j] + x1 * y
                out2[j] = out2[j] + x2 * y
                out3[j] = out3[j] + x3 * y
        m += ROWS_PER_PASS
    while m < row_stop:
        out = acc[m]
        for k in range(k_dim):
            x = a[m, k]
            b_row = b[k]
            for j in range(n_dim):
                out[j] = out[j] + x * b_row[j]
        m += 1


def gemm_accumulate(a: np.ndarray, b: np.ndarray, acc: np.ndarray) -> None:
    """acc[m, n] = FP32(acc[m, n] + FP32(a[m, k] * b[k, n])) for k = 0..K-1 in order, in place.

    ``a`` (M, K), ``b`` (K, N), ``acc`` (M, N) float32, ``acc`` C-contiguous. Rows are
    split over the cores (the kernel releases the GIL); each output depends on its own
    row alone, so the result does not depend on the number of threads.
    """
    global _pool
    a, b = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    # The compiled loops do not check bounds: shapes are checked here.
    if not (acc.dtype == np.float32 and acc.flags.c_contiguous and acc.ndim == a.ndim == b.ndim == 2
            and a.shape[1] == b.shape[0] and acc.shape == (a.shape[0], b.shape[1])):
        raise ValueError(f"gemm_accumulate needs a (M, K), b (K, N), C-contiguous float32 acc "
                         f"(M, N), got {a.shape}, {b.shape}, {acc.dtype}{acc.shape}")
    rows = acc.shape[0]
    workers = min(os.cpu_count() or 1, 8)
    if workers == 1 or a.size * b.shape[1] < PARALLEL_MIN_MACS:
        _gemm_rows(a, b, acc, 0, rows)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="golden-gemm")
    # Several chunks per worker balance the load when other processes share the cores.
    chunk = max(ROWS_PER_PASS, -(-rows // (4 * workers) // ROWS_PER_PASS) * ROWS_PER_PASS)
    starts = range(0, rows, chunk)
    list(_pool.map(lambda start: _gemm_rows(a, b, acc, start, min(start + chunk, rows)), starts))


# --- E5M2 rounding -------------------------------------------------------------------------
# numpy needed 12 passes over a block for this rule (saturate, 6 integer steps on the
# float64 bits, narrow, re-bias, subnormal mask and fix-up, sign): 2.1 ns per value on a
# 32K-value block; this one compiled pass takes 0.6 ns.
_F64_FRAC_BITS = 52
_F64_BIAS = 1023
_DROP = _F64_FRAC_BITS - E5M2.frac_bits
#: The E5M2 rule as numbers, passed to the compiled loop as an argument: numba's disk
#: cache is keyed by this file alone, so constants read from pysim.numerics.formats as
#: globals would be frozen into a cached binary and survive a change of formats.py.
_E5M2_RULE = (
    np.uint64(_DROP),
    np.uint64((1 << (_DROP - 1)) - 1),                                # half an ulp - 1
    np.uint8(((_F64_BIAS - E5M2.bias) << E5M2.frac_bits) & 0xFF),     # re-bias, mod 256
    E5M2.max_finite,
    np.uint8(((E5M2.emax + E5M2.bias) << E5M2.frac_bits) | E5M2.frac_mask),  # its code
    2.0 ** E5M2.emin,                                                 # smallest normal
    2.0 ** -E5M2.subnormal_quantum_exp,                               # 1 / smallest subnormal
    np.uint8(E5M2.width - 1),                                         # sign bit position
)


@njit(nogil=True, cache=True, fastmath=False)
def _e5m2_codes(mag, mag_bits, sign_bits, sign_shift, rule, out):  # pragma: no cover
    """out[i] = E5M2 code of mag[i] (>= 0 or +Inf), RNE, saturating, with the sign bit
    (sign_bits[i] >> sign_shift) in bit 7; ``rule`` is :data:`_E5M2_RULE`.

    Normal results round on the float64 bit pattern: adding (half an E5M2 ulp - 1) plus
    the lowest kept bit, then dropping the low bits, is RNE, and a carry out of the
    fraction correctly bumps the exponent. Subnormal results are the nearest-even multiple
    of the smallest subnormal. All three candidates are computed and one is selected
    (no branch in the loop).
    """
    drop, half_ulp_minus_one, rebias, max_finite, max_code, min_normal, sub_scale, sign_pos = rule
    for i in range(mag.size):
        value = mag[i]
        bits = mag_bits[i]
        normal = np.uint8(((bits + ((bits >> drop) & 1) + half_ulp_minus_one) >> drop) & 0xFF)
        normal = np.uint8(normal - np.uint8(rebias))
        subnormal = np.uint8(np.rint(min(value, min_normal) * sub_scale))
        code = subnormal if value < min_normal else normal
        code = np.uint8(max_code) if value >= max_finite else code
        out[i] = code | np.uint8(((sign_bits[i] >> sign_shift) & 1) << sign_pos)


def e5m2_codes(mag: np.ndarray, sign_of: np.ndarray, out: np.ndarray | None = None):
    """uint8 E5M2 codes of the non-negative float64 magnitudes ``mag`` (+Inf allowed,
    saturates; no NaN), RNE, saturating at the largest finite value, each with the sign
    bit of the matching element of ``sign_of`` (float32 or float64, ``mag``'s size).
    ``out``: optional C-contiguous uint8 array of ``mag``'s size to write into."""
    mag = np.asarray(mag, np.float64, order="C")  # (ascontiguousarray turns 0-d into 1-d)
    flat = mag.reshape(-1)
    sign_of = np.asarray(sign_of, order="C").reshape(-1)
    result = np.empty(mag.shape, np.uint8) if out is None else out
    # The compiled loop does not check bounds: sizes are checked here.
    if not (result.dtype == np.uint8 and result.flags.c_contiguous and result.size == flat.size):
        raise ValueError(f"out must be a C-contiguous uint8 array of {flat.size} elements, "
                         f"got {result.dtype}{result.shape}")
    if sign_of.dtype not in (np.float32, np.float64) or sign_of.size != flat.size:
        raise ValueError(f"sign_of must be float32 or float64 with {flat.size} elements, "
                         f"got {sign_of.dtype}{sign_of.shape}")
    uint = np.uint32 if sign_of.dtype == np.float32 else np.uint64
    _e5m2_codes(flat, flat.view(np.uint64), sign_of.view(uint), uint(8 * sign_of.itemsize - 1),
                _E5M2_RULE, result.reshape(-1))
    return result


@njit(nogil=True, cache=True, fastmath=False)
def _scale(values, alpha, beta, out):  # pragma: no cover - compiled
    for i in range(values.size):
        out[i] = values[i] * alpha + beta


def scale(values: np.ndarray, alpha: float, beta: float, out: np.ndarray) -> np.ndarray:
    """out = values * alpha + beta in float64, two roundings (no fused multiply-add), as
    numpy's ``np.multiply`` then ``+=``; one pass instead of two."""
    if not (values.dtype == out.dtype == np.float64 and values.shape == out.shape
            and values.ndim == 1 and values.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError(f"scale needs two C-contiguous 1-D float64 arrays of one size, "
                         f"got {values.dtype}{values.shape} and {out.dtype}{out.shape}")
    _scale(values, np.float64(alpha), np.float64(beta), out)
    return out


# --- S2FP8 encode ----------------------------------------------------------------------------
@njit(nogil=True, cache=True, fastmath=False)
def _magnitudes(values, out):  # pragma: no cover - compiled
    """out[i] = float64(|values[i]|); returns how many values are NaN or +-Inf."""
    nonfinite = 0
    for i in range(values.size):
        magnitude = abs(values[i])
        nonfinite += not magnitude < np.inf
        out[i] = magnitude
    return nonfinite


@njit(nogil=True, cache=True, fastmath=False)
def _float32_magnitudes(values, bits, out):  # pragma: no cover - compiled
    """out[i] = float64(|values[i]|) (``bits``: the same float32 values as uint32); returns
    (NaN/Inf count, zero count, smallest nonzero and largest magnitude bit pattern). The
    extremes are integer min/max of the bit patterns (ordered as the magnitudes): LLVM
    vectorizes those, not a float min/max without fastmath."""
    nonfinite, zeros = 0, 0
    low, high = np.uint32(0xFFFFFFFF), np.uint32(0)
    for i in range(values.size):
        magnitude = bits[i] & np.uint32(0x7FFFFFFF)
        nonfinite += magnitude >= np.uint32(0x7F800000)
        zeros += magnitude == 0
        low = min(low, magnitude if magnitude != 0 else np.uint32(0xFFFFFFFF))
        high = max(high, magnitude)
        out[i] = abs(np.float64(values[i]))
    return nonfinite, zeros, low, high


def magnitudes(values: np.ndarray, out: np.ndarray):
    """Write float64 |values| into ``out`` (both 1-D, C-contiguous, one size) in one pass.

    float64 ``values``: returns the number of NaN and Inf values. float32 ``values``:
    returns (NaN/Inf count, zero count, bit pattern of the smallest nonzero |value|
    (0xFFFFFFFF if none), bit pattern of the largest |value|).
    """
    if not (values.dtype in (np.float32, np.float64) and out.dtype == np.float64
            and values.ndim == out.ndim == 1 and values.size == out.size
            and values.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError(f"magnitudes needs 1-D C-contiguous float32/float64 values and a float64 "
                         f"out of one size, got {values.dtype}{values.shape}, {out.dtype}{out.shape}")
    if values.dtype == np.float32:
        nonfinite, zeros, low, high = _float32_magnitudes(values, values.view(np.uint32), out)
        return int(nonfinite), int(zeros), int(low), int(high)
    return int(_magnitudes(values, out))


@njit(nogil=True, cache=True, fastmath=False)
def _codes_by_bits(bits, bucket_code, thresholds, out):  # pragma: no cover - compiled
    """out[i] = the sign of bits[i] | the number of thresholds <= its magnitude bits.

    The ``while`` keeps LLVM from vectorizing the loop: vectorized, the two table
    look-ups become AVX gathers, measured 5x slower than scalar loads on this machine.
    """
    for i in range(bits.size):
        word = bits[i]
        magnitude = word & np.uint32(0x7FFFFFFF)
        code = bucket_code[magnitude >> np.uint32(BUCKET_SHIFT)]
        while magnitude >= thresholds[code + 1]:
            code += 1
        out[i] = code | np.uint8((word >> np.uint32(24)) & np.uint32(0x80))


#: float32 magnitude bits >> BUCKET_SHIFT index the table of first codes (65536 buckets,
#: 1/256 binade each).
BUCKET_SHIFT = 15


@njit(nogil=True, cache=True, fastmath=False)
def _bucket_codes(thresholds, out):  # pragma: no cover - compiled
    code = 0
    for bucket in range(out.size):
        start = np.uint32(bucket) << np.uint32(BUCKET_SHIFT)
        while thresholds[code + 1] <= start:
            code += 1
        out[bucket] = code


def bucket_codes(thresholds: np.ndarray) -> np.ndarray:
    """The table of first codes for :func:`codes_by_bits`: per bucket, the number of
    ``thresholds[1:]`` at or below the bucket's first bit pattern (one merge pass, 0.03 ms;
    numpy's searchsorted took 0.26)."""
    if not (thresholds.dtype == np.uint32 and thresholds.ndim == 1 and thresholds.size < 256
            and thresholds[-1] == 0xFFFFFFFF and np.all(np.diff(thresholds[1:]) >= 0)):
        raise ValueError("bucket_codes needs ascending uint32 thresholds ending in 0xFFFFFFFF")
    out = np.empty(1 << (31 - BUCKET_SHIFT), np.uint8)
    _bucket_codes(thresholds, out)
    return out


def codes_by_bits(values: np.ndarray, bucket_code: np.ndarray, thresholds: np.ndarray,
                  out: np.ndarray) -> np.ndarray:
    """Codes of float32 ``values`` given as a monotone step function of their magnitude:
    the magnitude code is the number of ``thresholds[1:]`` (uint32 float32 bit patterns,
    ascending, then one 0xFFFFFFFF) at or below the magnitude's bit pattern, and
    ``bucket_code[m >> BUCKET_SHIFT]`` (uint8) that number at the bucket's first pattern.
    The sign bit is the value's. 0.6 ns per value (the exp2 path: 4.2)."""
    if not (values.dtype == np.float32 and out.dtype == np.uint8 and values.ndim == out.ndim == 1
            and values.size == out.size and values.flags.c_contiguous
            and out.flags.c_contiguous and bucket_code.dtype == np.uint8
            and bucket_code.shape == (1 << (31 - BUCKET_SHIFT),)
            and thresholds.dtype == np.uint32 and thresholds.ndim == 1
            and thresholds[-1] == 0xFFFFFFFF and int(bucket_code.max()) + 1 < thresholds.size):
        raise ValueError("codes_by_bits needs 1-D C-contiguous float32 values and uint8 out of "
                         "one size, a uint8 bucket table and uint32 thresholds ending in "
                         "0xFFFFFFFF")
    _codes_by_bits(values.view(np.uint32), bucket_code, thresholds, out)
    return out
