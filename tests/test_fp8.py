"""E5M2 encode/decode (pysim.numerics.fp8) against independent references.

References: ml_dtypes.float8_e5m2 for float32 input (it rounds float32 straight to E5M2,
RNE) and an exact ``fractions.Fraction`` model for float64 input (ml_dtypes converts
float64 through float32 first, i.e. it double-rounds; ``test_ml_dtypes_double_rounds_float64``
pins that down so the choice of reference stays justified).
Project rule: values beyond the largest finite (57344) saturate to +-57344 (0x7B/0xFB),
where ml_dtypes gives Inf (0x7C/0xFC).
"""
from __future__ import annotations

import bisect
import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from pysim.numerics.fp8 import E5M2_VALUES, e5m2_decode, e5m2_encode

MAX_CODE = 0x7B          # +57344
INF_CODE = 0x7C
E5M2_MAX = 57344.0


# --- independent exact E5M2 model --------------------------------------------------------
def _ref_magnitudes() -> list[Fraction]:
    """Exact magnitudes of codes 0..0x7B from the format definition (bias 15, 2 fraction bits)."""
    mags = []
    for code in range(MAX_CODE + 1):
        exp, frac = code >> 2, code & 3
        if exp == 0:
            mags.append(Fraction(frac, 1 << 16))
        else:
            mags.append(Fraction(4 + frac) * Fraction(2) ** (exp - 15 - 2))
    return mags


REF_MAGS = _ref_magnitudes()
assert REF_MAGS[-1] == E5M2_MAX and REF_MAGS[4] == Fraction(1, 1 << 14)


def ref_encode(value: float) -> int:
    """Exact RNE of a float to E5M2 with saturation (the project rule)."""
    sign = 0x80 if math.copysign(1.0, value) < 0 else 0
    if math.isinf(value):
        return sign | MAX_CODE
    q = abs(Fraction(value))
    if q >= REF_MAGS[-1]:
        return sign | MAX_CODE
    i = bisect.bisect_right(REF_MAGS, q) - 1      # REF_MAGS[i] <= q < REF_MAGS[i+1]
    lo, hi = REF_MAGS[i], REF_MAGS[i + 1]
    if q - lo < hi - q:
        code = i
    elif q - lo > hi - q:
        code = i + 1
    else:
        code = i if i % 2 == 0 else i + 1
    return sign | code


def first_mismatch(x, got, want) -> str:
    bad = np.flatnonzero(np.asarray(got).ravel() != np.asarray(want).ravel())
    if not bad.size:
        return "no mismatch"
    i = bad[0]
    xv = np.asarray(x).ravel()[i]
    xbits = (np.float64(xv).view(np.uint64) if xv.dtype == np.float64
             else np.float32(xv).view(np.uint32))
    return (f"{bad.size} mismatches; first at flat index {i}: x={xv!r} (bits 0x{int(xbits):x}) "
            f"got 0x{int(np.asarray(got).ravel()[i]):02x} want 0x{int(np.asarray(want).ravel()[i]):02x}")


def ml_e5m2(x: np.ndarray) -> np.ndarray:
    return x.astype(ml_dtypes.float8_e5m2).view(np.uint8)


# --- vector sets -------------------------------------------------------------------------
def _boundaries32() -> np.ndarray:
    """Every E5M2 value, every midpoint between neighbours (subnormal ones and the one above
    max finite, 61440, included) and the two float32 neighbours of each, both signs."""
    mags = np.array([float(m) for m in REF_MAGS], np.float64)
    mids = (mags[:-1] + mags[1:]) / 2
    above_max = E5M2_MAX + 2.0 ** (15 - 2) / 2          # 61440
    centre = np.concatenate([mags, mids, [above_max, 65536.0, 2.0 ** -17]]).astype(np.float32)
    assert np.all(centre.astype(np.float64) == np.concatenate([mags, mids, [above_max, 65536.0, 2.0 ** -17]]))
    with np.errstate(all="ignore"):
        pts = np.concatenate([centre,
                              np.nextafter(centre, np.float32(np.inf)),
                              np.nextafter(centre, np.float32(-np.inf))])
    pts = pts[np.isfinite(pts)]
    return np.concatenate([pts, -pts]).astype(np.float32)


@pytest.fixture(scope="module")
def random32() -> np.ndarray:
    rng = np.random.default_rng(20200113)
    bits = rng.integers(0, 1 << 32, 700_000, dtype=np.uint64).astype(np.uint32)
    bits = bits[(bits & np.uint32(0x7F800000)) != np.uint32(0x7F800000)]   # finite only
    logu = np.exp2(rng.uniform(-26.0, 20.0, 700_000)) * rng.choice([-1.0, 1.0], 700_000)
    x = np.concatenate([bits.view(np.float32), logu.astype(np.float32), _boundaries32(),
                        np.float32([0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38])])
    assert x.size >= 1_000_000 and np.isfinite(x).all()
    return x


# --- float32 input vs ml_dtypes -----------------------------------------------------------
def _check_against_ml(x: np.ndarray) -> None:
    got = e5m2_encode(x)
    want = ml_e5m2(x)
    inf = (want & 0x7F) == INF_CODE
    assert not ((want & 0x7F) > INF_CODE).any(), "ml_dtypes produced NaN from finite input"
    # where ml_dtypes overflows to Inf, we must saturate with the same sign
    want = np.where(inf, (want & 0x80) | MAX_CODE, want).astype(np.uint8)
    assert got.dtype == np.uint8 and got.shape == x.shape
    assert np.array_equal(got, want), first_mismatch(x, got, want)
    assert np.array_equal(np.abs(x[inf]) >= 61440.0, np.ones(inf.sum(), bool))


def test_encode_float32_random_vs_ml_dtypes(random32):
    _check_against_ml(random32)


def test_encode_float32_boundaries_vs_ml_dtypes():
    x = _boundaries32()
    _check_against_ml(x)
    # the set really contains ties that resolve both ways, and the saturating midpoint
    codes = e5m2_encode(x)
    assert codes[x == np.float32(61440.0)][0] == MAX_CODE
    assert codes[x == np.float32(-61440.0)][0] == 0x80 | MAX_CODE
    assert codes[x == np.float32(1.125)][0] == 0x3C          # tie to even: 1.0
    assert codes[x == np.float32(1.375)][0] == 0x3E          # tie to even: 1.5
    assert codes[x == np.float32(2.0 ** -17)][0] == 0x00     # half the smallest subnormal
    assert codes[x == np.float32(1.5 * 2.0 ** -16)][0] == 0x02


def test_encode_boundaries_vs_exact_reference():
    """ml_dtypes itself agrees with the exact model on the boundary set (reference sanity)."""
    x = _boundaries32()
    want = np.array([ref_encode(float(v)) for v in x], np.uint8)
    got = e5m2_encode(x)
    assert np.array_equal(got, want), first_mismatch(x, got, want)


def test_encode_shape_and_integer_input():
    x = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    got = e5m2_encode(x)
    assert got.shape == (3, 4)
    assert np.array_equal(got, ml_e5m2(x.astype(np.float32)))
    assert e5m2_encode(np.float32(1.0)).shape == ()


# --- float64 input vs exact reference -----------------------------------------------------
def test_ml_dtypes_double_rounds_float64():
    """Why float64 needs the Fraction reference: ml_dtypes rounds 1.125 + 2^-40 via float32."""
    trap = np.array([1.125 + 2.0 ** -40])
    assert ml_e5m2(trap)[0] == 0x3C                      # double rounding: 1.0
    assert ref_encode(float(trap[0])) == 0x3D            # correct: 1.25
    assert e5m2_encode(trap)[0] == 0x3D


def _float64_vectors() -> np.ndarray:
    rng = np.random.default_rng(64)
    mags = np.array([float(m) for m in REF_MAGS], np.float64)
    mids = np.concatenate([(mags[:-1] + mags[1:]) / 2, [61440.0]])
    nz = mids[mids > 0]
    traps = np.concatenate([
        nz * (1 + 2.0 ** -30), nz * (1 - 2.0 ** -30),      # round to the midpoint in float32
        nz * (1 + 2.0 ** -52), nz * (1 - 2.0 ** -53),      # float64 neighbours
        np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf), mids, mags])
    logu = np.exp2(rng.uniform(-20.0, 18.0, 3000))
    extra = np.array([0.0, 5e-324, 2.2250738585072014e-308, 1e-50, 1e39, 1e300,
                      np.finfo(np.float64).max, 2.0 ** -17, 2.0 ** -17 * (1 + 2.0 ** -52)])
    x = np.concatenate([traps, logu, extra])
    return np.concatenate([x, -x])


def test_encode_float64_vs_exact_reference():
    x = _float64_vectors()
    want = np.array([ref_encode(float(v)) for v in x], np.uint8)
    got = e5m2_encode(x)
    assert np.array_equal(got, want), first_mismatch(x, got, want)
    # the traps are real: rounding through float32 first would give other codes
    with np.errstate(over="ignore"):
        via32 = np.array([ref_encode(float(np.float32(v))) for v in x], np.uint8)
    assert (via32 != want).sum() >= 100


# --- specials ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_encode_inf_saturates(dtype):
    got = e5m2_encode(np.array([np.inf, -np.inf, 1e30 if dtype == np.float32 else 1e300], dtype))
    assert [hex(int(c)) for c in got] == ["0x7b", "0xfb", "0x7b"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_encode_nan_raises(dtype):
    x = np.array([[1.0, 2.0], [np.nan, -np.nan]], dtype)
    with pytest.raises(ValueError, match=r"2 NaN.*\(1, 0\)"):
        e5m2_encode(x)
    with pytest.raises(ValueError):
        e5m2_encode(dtype(np.nan))


def test_encode_signed_zero():
    assert list(e5m2_encode(np.array([0.0, -0.0]))) == [0x00, 0x80]


def test_encode_rejects_non_numeric():
    with pytest.raises(TypeError):
        e5m2_encode(np.array(["1.0"]))


# --- decode --------------------------------------------------------------------------------
def test_decode_all_codes_vs_ml_dtypes():
    codes = np.arange(256, dtype=np.uint8)
    want = codes.view(ml_dtypes.float8_e5m2).astype(np.float32).view(np.uint32).copy()
    nan = np.isnan(want.view(np.float32))
    assert nan.sum() == 6
    want[nan] = 0x7FC00000
    got = e5m2_decode(codes).view(np.uint32)
    bad = np.flatnonzero(got != want)
    assert not bad.size, (f"code 0x{bad[0]:02x}: got 0x{int(got[bad[0]]):08x} "
                          f"want 0x{int(want[bad[0]]):08x}")
    assert got[0x7C] == 0x7F800000 and got[0xFC] == 0xFF800000
    assert got[0x7B] == np.float32(57344.0).view(np.uint32)
    assert got[0x01] == np.float32(2.0 ** -16).view(np.uint32)
    assert not E5M2_VALUES.flags.writeable


def test_decode_matches_exact_magnitudes_and_roundtrip():
    codes = np.arange(256, dtype=np.uint8)
    vals = e5m2_decode(codes)
    for c in range(MAX_CODE + 1):
        assert Fraction(float(vals[c])) == REF_MAGS[c], hex(c)
        assert Fraction(float(vals[c | 0x80])) == -REF_MAGS[c], hex(c | 0x80)
    finite = np.isfinite(vals)
    assert np.array_equal(e5m2_encode(vals[finite]), codes[finite])


def test_decode_shape_and_dtype():
    assert e5m2_decode(np.zeros((2, 3), np.uint8)).shape == (2, 3)
    assert e5m2_decode(np.zeros((2, 3), np.uint8)).dtype == np.float32
    with pytest.raises(TypeError):
        e5m2_decode(np.zeros(3, np.int64))
