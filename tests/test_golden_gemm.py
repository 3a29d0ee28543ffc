"""Golden GEMM and MAC (pysim.numerics.golden) against a scalar SoftFloat reference.

Reference: for every output element, acc = init; for k = 0..K-1 in order,
acc = f32_add(acc, f32_mul(a_k, b_k)) with Berkeley SoftFloat (softfloatpy, RNE), the
operands being the decode-table entries (pysim.numerics.s2fp8.decode_table, checked on its own in
test_s2fp8.py) with the code's sign bit applied here. Results must agree bit for bit,
except that any NaN must be exactly the canonical 0x7FC00000.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import softfloatpy as sf

from pysim.numerics.golden import gemm, mac
from pysim.numerics.s2fp8 import S2FP8Tensor, decode_table, encode

CANONICAL_NAN = 0x7FC00000
SPECIAL_CODES = np.array([0x7C, 0xFC, 0x7D, 0xFF, 0x00, 0x80], np.uint8)


# --- scalar SoftFloat reference ------------------------------------------------------------
def _f32(bits: int):
    return sf.Float32.from_bytes(int(bits).to_bytes(4, "big"))


def _bits(value) -> int:
    return int.from_bytes(value.to_bytes(), "big")


def _operand_bits(code: int, table: np.ndarray) -> int:
    return int(table[code & 0x7F]) | ((code >> 7) << 31)


def ref_dot(a_bits: list[int], b_bits: list[int], init_bits: int) -> int:
    acc = _f32(init_bits)
    for x, y in zip(a_bits, b_bits):
        acc = sf.f32_add(acc, sf.f32_mul(_f32(x), _f32(y)))
    return _bits(acc)


def ref_gemm(a: S2FP8Tensor, b: S2FP8Tensor, mant_bits: int, init_bits: np.ndarray) -> np.ndarray:
    sf.set_rounding_mode(sf.RoundingMode.NEAR_EVEN)
    ta, tb = decode_table(a.alpha, a.beta, mant_bits), decode_table(b.alpha, b.beta, mant_bits)
    m, k = a.shape
    n = b.shape[1]
    a_ops = [[_operand_bits(int(a.codes[i, j]), ta) for j in range(k)] for i in range(m)]
    b_ops = [[_operand_bits(int(b.codes[j, c]), tb) for j in range(k)] for c in range(n)]
    out = np.empty((m, n), np.uint32)
    for i in range(m):
        for c in range(n):
            out[i, c] = ref_dot(a_ops[i], b_ops[c], int(init_bits[i, c]))
    return out


def is_nan(bits) -> np.ndarray:
    return (np.asarray(bits, np.uint32) & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)


def assert_bits_match(got: np.ndarray, want: np.ndarray, label: str) -> None:
    got, want = np.asarray(got, np.uint32), np.asarray(want, np.uint32)
    assert got.shape == want.shape, (label, got.shape, want.shape)
    ok = np.where(is_nan(want), got == CANONICAL_NAN, got == want)
    bad = np.argwhere(~ok)
    assert not bad.size, (f"{label}: {len(bad)} of {ok.size} outputs differ; first at "
                          f"{tuple(int(i) for i in bad[0])}: golden 0x{int(got[tuple(bad[0])]):08x} "
                          f"softfloat 0x{int(want[tuple(bad[0])]):08x}")


# --- operand builders ----------------------------------------------------------------------
def _random_codes(rng, shape, special_fraction=0.0, zero_fraction=0.0):
    codes = rng.integers(0, 0x7C, shape).astype(np.uint8) | (rng.integers(0, 2, shape) << 7).astype(np.uint8)
    if zero_fraction:
        codes[rng.random(shape) < zero_fraction] &= 0x80
    if special_fraction:
        pick = rng.random(shape) < special_fraction
        codes[pick] = rng.choice(SPECIAL_CODES, int(pick.sum()))
    return codes


def _case(name: str):
    """(A, B, init float32 array or None) for one named scenario."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name.startswith("encoded"):
        m, k, n = {"encoded_5x7x3": (5, 7, 3), "encoded_1x1x1": (1, 1, 1),
                   "encoded_3x40x2": (3, 40, 2), "encoded_8x16x8": (8, 16, 8)}[name]
        xa = (rng.standard_normal((m, k)) * np.exp2(rng.uniform(-8, 8, (m, k)))).astype(np.float32)
        xb = rng.standard_normal((k, n)).astype(np.float32)
        xa[rng.random((m, k)) < 0.15] = -0.0
        return encode(xa), encode(xb), None
    if name == "specials":          # Inf, -Inf, NaN codes, both zeros, mixed with finite codes
        a = S2FP8Tensor(_random_codes(rng, (6, 9), 0.2, 0.1), 3.0, 2.0)
        b = S2FP8Tensor(_random_codes(rng, (9, 5), 0.2, 0.1), 0.5, -1.0)
        return a, b, None
    if name == "inf_times_zero":    # every product Inf * 0 or NaN-free Inf + -Inf
        a = S2FP8Tensor(np.array([[0x7C, 0x00], [0x7C, 0xFC], [0x3C, 0x7C]], np.uint8), 1.0, 0.0)
        b = S2FP8Tensor(np.array([[0x00, 0x3C, 0x80], [0x3C, 0x3C, 0x7D]], np.uint8), 1.0, 0.0)
        return a, b, None
    if name == "signed_zeros":      # all products +-0: the sign of the zero sum matters
        ka = rng.choice(np.uint8([0x00, 0x80]), (4, 6))
        kb = rng.choice(np.uint8([0x00, 0x80, 0x3C, 0xBC]), (6, 4))
        ka[0], ka[1], kb[:, 0], kb[:, 1] = 0x80, 0x00, 0x3C, 0xBC   # all -0 / all +0 products
        a, b = S2FP8Tensor(ka, 1.0, 0.0), S2FP8Tensor(kb, 1.0, 0.0)
        return a, b, np.float32([[-0.0, 0.0, -0.0, 0.0]] * 4)
    if name == "subnormal_results":  # entries ~ v * 2^-85: products are subnormal or underflow
        a = S2FP8Tensor(_random_codes(rng, (5, 12), zero_fraction=0.1), 1.0, 85.0)
        b = S2FP8Tensor(_random_codes(rng, (12, 4)), 1.0, 85.0)
        return a, b, None
    if name == "overflow":          # entries ~ v * 2^100: products overflow, Inf - Inf = NaN
        a = S2FP8Tensor(_random_codes(rng, (4, 10)), 1.0, -100.0)
        b = S2FP8Tensor(_random_codes(rng, (10, 4)), 1.0, -20.0)
        return a, b, None
    if name == "cancellation":      # big terms that cancel, small ones absorbed in FP32
        # A entries are v^2 (alpha = 0.5): 0x78 -> 2^30, 0x3C -> 1, 0x01 -> 2^-32, 0x3D -> 1.5625
        ka = np.array([[0x78, 0x3C, 0xF8, 0x01, 0x78, 0x3D, 0xF8],
                       [0x3C, 0x78, 0x3C, 0xF8, 0x3D, 0x01, 0x3C],
                       [0x77, 0xF7, 0x3C, 0x3C, 0x3C, 0x3C, 0x00]], np.uint8)
        kb = np.array([[0x3C] * 7,
                       [0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0x3C, 0xBC],
                       [0x3D, 0x3D, 0xBD, 0x3C, 0x3D, 0xBC, 0x3C]], np.uint8).T
        a = S2FP8Tensor(ka, 0.5, 0.0)
        b = S2FP8Tensor(np.ascontiguousarray(kb), 1.0, 0.0)
        return a, b, np.float32([[0.0, -0.0, 3.0]] * 3)
    if name == "wide_range_random":  # alpha << 1: magnitudes over ~2^±60, lots of absorption
        a = S2FP8Tensor(_random_codes(rng, (7, 33), zero_fraction=0.05), 0.25, 0.5)
        b = S2FP8Tensor(_random_codes(rng, (33, 6)), 0.3, -0.7)
        return a, b, None
    if name == "init_specials":     # non-default init: -0.0, Inf, -Inf, NaN, random values
        a, b, _ = _case("encoded_5x7x3")
        init = rng.standard_normal((5, 3)).astype(np.float32)
        init[0, :] = [-0.0, np.inf, -np.inf]
        init[1, :] = [np.nan, 0.0, 3e38]
        return a, b, init
    if name == "init_broadcast_row":
        a, b, _ = _case("encoded_3x40x2")
        return a, b, np.float32([[-0.0, 7.5]])
    raise KeyError(name)


CASES = ["encoded_5x7x3", "encoded_1x1x1", "encoded_3x40x2", "encoded_8x16x8", "specials",
         "inf_times_zero", "signed_zeros", "subnormal_results", "overflow", "cancellation",
         "wide_range_random", "init_specials", "init_broadcast_row"]


@pytest.fixture(scope="module", params=CASES)
def gemm_case(request):
    return request.param, *_case(request.param)


@pytest.mark.parametrize("mant_bits", [24, 8, 3])
def test_gemm_vs_softfloat(gemm_case, mant_bits):
    name, a, b, init = gemm_case
    m, n = a.shape[0], b.shape[1]
    init32 = np.zeros((m, n), np.float32) if init is None else np.broadcast_to(np.float32(init), (m, n))
    want = ref_gemm(a, b, mant_bits, init32.view(np.uint32))
    got = gemm(a, b, mant_bits=mant_bits, init=init) if mant_bits != 24 or init is not None \
        else gemm(a, b)
    assert got.dtype == np.float32 and got.shape == (m, n)
    assert_bits_match(got.view(np.uint32), want, f"{name}, mant_bits={mant_bits}")


def test_large_gemm_on_all_cores_vs_softfloat():
    """A GEMM big enough for the threaded path (pysim.numerics.kernels splits rows over the
    cores) and with M not a multiple of the kernel's 4-row pass: one output per row, at a
    varying column, checked against SoftFloat; specials, zeros and a wide range included."""
    from pysim.numerics.kernels import PARALLEL_MIN_MACS
    rng = np.random.default_rng(2024)
    m, k, n = 203, 150, 141
    assert m * k * n >= PARALLEL_MIN_MACS
    a = S2FP8Tensor(_random_codes(rng, (m, k), special_fraction=0.002, zero_fraction=0.05), 0.3, 0.5)
    b = S2FP8Tensor(_random_codes(rng, (k, n), zero_fraction=0.05), 0.25, -0.7)
    got = gemm(a, b, mant_bits=11).view(np.uint32)
    sf.set_rounding_mode(sf.RoundingMode.NEAR_EVEN)
    ta, tb = a.table(11), b.table(11)
    cols = rng.integers(0, n, m)
    want = np.array([ref_dot([_operand_bits(int(c), ta) for c in a.codes[i]],
                             [_operand_bits(int(c), tb) for c in b.codes[:, cols[i]]], 0)
                     for i in range(m)], np.uint32)
    assert_bits_match(got[np.arange(m), cols], want, "threaded 203x150x141")
    assert (got == CANONICAL_NAN).any() and not is_nan(got).all()


def test_cases_exercise_what_they_claim():
    """Guard against vacuous scenarios: each produces the outcome it is named after."""
    def out(name):
        a, b, init = _case(name)
        return gemm(a, b, init=init).view(np.uint32)
    assert (out("specials") == CANONICAL_NAN).any() and (is_nan(out("specials")) == (out("specials") == CANONICAL_NAN)).all()
    assert (out("inf_times_zero") == CANONICAL_NAN).any()
    o = out("signed_zeros")
    assert (o == 0x80000000).any() and (o == 0).any()
    o = out("subnormal_results")
    assert (((o & 0x7F800000) == 0) & ((o & 0x7FFFFF) != 0)).any()
    o = out("overflow")
    assert ((o & 0x7FFFFFFF) == 0x7F800000).any()
    o = out("init_specials")
    assert o[1, 0] == CANONICAL_NAN and o[0, 1] == 0x7F800000


def test_gemm_nan_init_payload_is_canonicalized():
    a, b, _ = _case("encoded_1x1x1")
    init = np.array([[0xFFC00001]], np.uint32).view(np.float32)
    assert gemm(a, b, init=init).view(np.uint32)[0, 0] == CANONICAL_NAN


def test_gemm_zero_k():
    a = S2FP8Tensor(np.zeros((2, 0), np.uint8), 1.0, 0.0)
    b = S2FP8Tensor(np.zeros((0, 3), np.uint8), 1.0, 0.0)
    assert np.array_equal(gemm(a, b, init=np.float32(-0.0)).view(np.uint32),
                          np.full((2, 3), 0x80000000, np.uint32))


# --- mac ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mac_case():
    rng = np.random.default_rng(99)
    s, l = 24, 37
    ta, tb = decode_table(4.2, 17.0), decode_table(0.9, -2.5, 11)
    ca = _random_codes(rng, (s, l), special_fraction=0.01, zero_fraction=0.1)
    cb = _random_codes(rng, (s, l), zero_fraction=0.1)
    lengths = rng.integers(0, l + 1, s)
    lengths[:4] = [0, 1, l, l - 1]
    init = rng.integers(0, 1 << 32, s, dtype=np.uint64).astype(np.uint32)
    init[4:9] = [0x80000000, 0x7F800000, 0xFF800000, 0x7F800001, 0xFFFFFFFF]   # NaN payloads
    init[0] = 0xFFC00123                                       # length 0 + NaN init
    return ta, tb, ca, cb, init, lengths


def _ref_mac(ta, tb, ca, cb, init, lengths):
    sf.set_rounding_mode(sf.RoundingMode.NEAR_EVEN)
    out = []
    for s in range(ca.shape[0]):
        n = int(lengths[s])
        out.append(ref_dot([_operand_bits(int(c), ta) for c in ca[s, :n]],
                           [_operand_bits(int(c), tb) for c in cb[s, :n]], int(init[s])))
    return np.array(out, np.uint32)


def test_mac_with_lengths_vs_per_sequence_loops(mac_case):
    ta, tb, ca, cb, init, lengths = mac_case
    got = mac(ta, tb, ca, cb, init=init, lengths=lengths)
    assert got.dtype == np.uint32 and got.shape == (ca.shape[0],)
    assert_bits_match(got, _ref_mac(ta, tb, ca, cb, init, lengths), "mac with lengths")
    assert got[0] == CANONICAL_NAN


def test_mac_defaults(mac_case):
    ta, tb, ca, cb, _, _ = mac_case
    full = np.full(ca.shape[0], ca.shape[1])
    want = _ref_mac(ta, tb, ca, cb, np.zeros(ca.shape[0], np.uint32), full)
    assert_bits_match(mac(ta, tb, ca, cb), want, "mac defaults")
    # each sequence on its own gives the same bits as in the batch
    for s in (0, 5, 23):
        alone = mac(ta, tb, ca[s:s + 1], cb[s:s + 1])
        assert alone[0] == mac(ta, tb, ca, cb)[s]


def test_mac_matches_gemm():
    rng = np.random.default_rng(5)
    a = encode(rng.standard_normal((4, 9)).astype(np.float32))
    b = encode(rng.standard_normal((9, 3)).astype(np.float32))
    c = gemm(a, b, mant_bits=8).view(np.uint32)
    ca = np.repeat(a.codes, 3, axis=0)
    cb = np.tile(np.ascontiguousarray(b.codes.T), (4, 1))
    got = mac(a.table(8), b.table(8), ca, cb)
    assert np.array_equal(got, c.ravel())


# --- errors ----------------------------------------------------------------------------------
def test_gemm_errors():
    a = encode(np.ones((2, 3), np.float32))
    b = encode(np.ones((3, 4), np.float32))
    with pytest.raises(TypeError, match="S2FP8Tensor"):
        gemm(np.ones((2, 3)), b)
    with pytest.raises(TypeError, match="S2FP8Tensor"):
        gemm(a, b.codes)
    with pytest.raises(ValueError, match=r"\[2, 3\] and \[2, 3\]"):
        gemm(a, a)
    with pytest.raises(ValueError):
        gemm(encode(np.ones(3)), b)
    with pytest.raises(ValueError):
        gemm(a, encode(np.ones((3, 4, 1))))
    with pytest.raises(ValueError, match="mant_bits"):
        gemm(a, b, mant_bits=25)
    with pytest.raises(TypeError, match="mant_bits"):
        gemm(a, b, mant_bits=8.0)
    with pytest.raises(ValueError):
        gemm(a, b, init=np.zeros((3, 4), np.float32))


def test_mac_errors():
    t = decode_table(1.0, 0.0)
    c = np.zeros((2, 3), np.uint8)
    with pytest.raises(ValueError, match="table_a"):
        mac(t[:64], t, c, c)
    with pytest.raises(ValueError, match="table_b"):
        mac(t, t.astype(np.int64), c, c)
    with pytest.raises(ValueError, match="uint8"):
        mac(t, t, c.astype(np.int32), c)
    with pytest.raises(ValueError, match=r"\[S, L\]"):
        mac(t, t, c, c[:, :2])
    with pytest.raises(ValueError, match=r"\[S, L\]"):
        mac(t, t, c.ravel(), c.ravel())
    with pytest.raises(ValueError, match="init"):
        mac(t, t, c, c, init=np.zeros(3, np.uint32))
    with pytest.raises(ValueError, match="lengths"):
        mac(t, t, c, c, lengths=[1, 4])
    with pytest.raises(ValueError, match="lengths"):
        mac(t, t, c, c, lengths=[-1, 2])
    with pytest.raises(ValueError, match="lengths"):
        mac(t, t, c, c, lengths=[1, 2, 3])


def test_mac_rejects_non_integer_lengths():
    """lengths=[1.5, 2] is silently accepted and runs 2 steps for the first sequence."""
    t = decode_table(1.0, 0.0)
    c = np.full((2, 3), 0x3C, np.uint8)
    with pytest.raises((TypeError, ValueError), match="lengths"):
        mac(t, t, c, c, lengths=[1.5, 2])


def test_mac_rejects_float_init():
    """init holds FP32 bit patterns (uint32); a float array must not be silently cast to
    bits (float32 [1.0, 2.5] becomes the subnormals 0x1, 0x2)."""
    t = decode_table(1.0, 0.0)
    c = np.full((2, 3), 0x3C, np.uint8)
    with pytest.raises((TypeError, ValueError), match="init"):
        mac(t, t, c, c, init=np.float32([1.0, 2.5]))


# --- benchmark smoke test ------------------------------------------------------------------------
def test_bench_quick_runs():
    proc = subprocess.run([sys.executable, "-m", "bench.golden", "--quick"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for row in ("cpu count", "numpy", "e5m2 encode", "e5m2 decode", "s2fp8 encode",
                "s2fp8 decode", "golden gemm", "numpy matmul", "ratio"):
        assert row in out, f"missing row {row!r} in:\n{out}"
    assert "PASS" in out or "BELOW" in out
