"""Golden FP32 multiply and add (pysim.numerics.golden) against Berkeley SoftFloat (softfloatpy).

Bit for bit on TestFloat-style vectors (pysim.numerics.testfloat, every family, every specials
pair); the only allowed difference is the NaN encoding: wherever SoftFloat returns any
NaN, the golden model must return exactly the canonical 0x7FC00000.
"""
from __future__ import annotations

import numpy as np
import pytest
import softfloatpy as sf

from pysim.numerics.golden import fp32_add, fp32_mul
from pysim.numerics.testfloat import FAMILIES, SPECIAL_VALUES, fp32_pairs

N_VECTORS = 100_000
SEEDS = (1, 2)
CANONICAL_NAN = 0x7FC00000
GOLDEN = {"mul": fp32_mul, "add": fp32_add}
SOFT = {"mul": sf.f32_mul, "add": sf.f32_add}


def softfloat_op(op: str, a_bits: np.ndarray, b_bits: np.ndarray) -> np.ndarray:
    """SoftFloat reference, one Python-level call per vector, RNE set explicitly."""
    sf.set_rounding_mode(sf.RoundingMode.NEAR_EVEN)
    assert sf.get_rounding_mode() == sf.RoundingMode.NEAR_EVEN
    fn, f32 = SOFT[op], sf.Float32.from_bytes
    out = [int.from_bytes(fn(f32(x.to_bytes(4, "big")), f32(y.to_bytes(4, "big"))).to_bytes(), "big")
           for x, y in zip(a_bits.tolist(), b_bits.tolist())]
    return np.array(out, dtype=np.uint32)


def is_nan(bits: np.ndarray) -> np.ndarray:
    return (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)


def compare(op, a, b, fam, got, want) -> tuple[bool, str]:
    """(ok, report): golden == SoftFloat except NaN -> canonical; per-family counts."""
    soft_nan = is_nan(want)
    ok = np.where(soft_nan, got == np.uint32(CANONICAL_NAN), got == want)
    lines = []
    for index, name in enumerate(FAMILIES):
        sel = fam == index
        lines.append(f"{name}: {int(sel.sum())} vectors, {int((sel & soft_nan).sum())} NaN, "
                     f"{int((sel & ~ok).sum())} mismatches")
    report = f"fp32_{op}: " + "; ".join(lines)
    bad = np.flatnonzero(~ok)
    if bad.size:
        i = bad[0]
        report += (f"\nfirst mismatch #{i} ({FAMILIES[fam[i]]}): a=0x{int(a[i]):08x} "
                   f"b=0x{int(b[i]):08x} golden=0x{int(got[i]):08x} softfloat=0x{int(want[i]):08x}")
    return not bad.size, report


@pytest.fixture(scope="module", params=[(op, seed) for op in ("mul", "add") for seed in SEEDS],
                ids=lambda p: f"{p[0]}-seed{p[1]}")
def vectors(request):
    op, seed = request.param
    a, b, fam = fp32_pairs(op, N_VECTORS, seed)
    return op, a, b, fam, softfloat_op(op, a, b)


def test_golden_vs_softfloat(vectors):
    op, a, b, fam, want = vectors
    assert a.size >= N_VECTORS and a.dtype == b.dtype == np.uint32
    got = GOLDEN[op](a, b)
    assert got.dtype == np.uint32 and got.shape == a.shape
    ok, report = compare(op, a, b, fam, got, want)
    assert ok, report
    # every family is present and non-trivial
    counts = np.bincount(fam, minlength=len(FAMILIES))
    assert (counts > 0).all(), report


def test_vector_set_covers_every_specials_pair(vectors):
    op, a, b, fam, _ = vectors
    specials = np.concatenate([SPECIAL_VALUES, SPECIAL_VALUES | np.uint32(0x80000000)])
    pairs = set(zip(a[fam == 0].tolist(), b[fam == 0].tolist()))
    assert len(pairs) == specials.size ** 2
    # and the interesting outcomes really happen somewhere in the set
    want = vectors[4]
    assert is_nan(want).any() and (want == 0x7F800000).any() and (want == 0x80000000).any()
    assert ((want & np.uint32(0x7F800000)) == 0).any()       # zero or subnormal results


def test_nan_in_any_form_is_canonical():
    nans = np.array([0x7F800001, 0xFF800001, 0x7FC00000, 0xFFC00000, 0x7FFFFFFF, 0xFFFFFFFF],
                    np.uint32)
    ones = np.full(nans.shape, 0x3F800000, np.uint32)
    for op in ("mul", "add"):
        assert (GOLDEN[op](nans, ones) == CANONICAL_NAN).all()
        assert (GOLDEN[op](ones, nans) == CANONICAL_NAN).all()
    inf, ninf, zero = (np.uint32(v) for v in (0x7F800000, 0xFF800000, 0))
    assert fp32_mul(inf, zero) == CANONICAL_NAN           # SoftFloat gives 0xFFC00000 here
    assert fp32_add(inf, ninf) == CANONICAL_NAN


def test_signed_zero_and_subnormal_rules():
    z, nz = np.uint32(0), np.uint32(0x80000000)
    assert fp32_add(z, nz) == 0 and fp32_add(nz, nz) == 0x80000000
    one, neg_one = np.uint32(0x3F800000), np.uint32(0xBF800000)
    assert fp32_add(one, neg_one) == 0                     # exact cancellation -> +0 under RNE
    # no flush-to-zero, no denormals-are-zero
    assert fp32_mul(np.uint32(1), one) == 1
    assert fp32_mul(np.uint32(0x00800000), np.uint32(0x3F000000)) == 0x00400000
    assert fp32_add(np.uint32(1), np.uint32(1)) == 2


def test_broadcasting():
    a = np.array([0x3F800000, 0x40000000, 0x40400000], np.uint32)
    got = fp32_mul(a, np.uint32(0x40000000))
    assert list(got) == [0x40000000, 0x40800000, 0x40C00000]
    assert fp32_add(a[:, None], a[None, :]).shape == (3, 3)
