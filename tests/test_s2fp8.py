"""S2FP8 statistics, encode, decode and decode tables (pysim.numerics.s2fp8) against the definitions.

Independent references: statistics recomputed with math.fsum over the nonzero entries;
decode-table rounding recomputed exactly with fractions.Fraction; the decode error bound
derived from the E5M2 half-ulp (see test_decode_error_bound).
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest

from pysim.numerics.fp8 import E5M2_VALUES
from pysim.numerics.s2fp8 import S2FP8Tensor, decode, decode_table, encode, encode_with, stats

# --- tensors -------------------------------------------------------------------------------
def _distributions() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2001_05674)
    n = 20_000
    sign = rng.choice([-1.0, 1.0], n)
    with_zeros = rng.standard_normal(n)
    with_zeros[rng.random(n) < 0.6] = 0.0
    with_zeros[rng.random(n) < 0.1] = -0.0
    return {
        "normal32": rng.standard_normal(n).astype(np.float32),
        "normal64": rng.standard_normal(n),
        "lognormal_wide32": (np.exp2(rng.normal(-10.0, 12.0, n)) * sign).astype(np.float32),
        "loguniform64": np.exp2(rng.uniform(-300.0, 300.0, n)) * sign,
        "uniform_pos32": rng.uniform(0.0, 1.0, n).astype(np.float32),
        "gradients_tiny32": (rng.standard_normal(n) * 1e-7).astype(np.float32),
        "many_zeros64": with_zeros,
        "ints": rng.integers(-1000, 1000, (100, 50)).astype(np.int32),
        "two_values": np.array([0.5, -8.0]),
        "matrix32": rng.standard_normal((64, 33)).astype(np.float32),
        "multiblock32": (rng.standard_normal(150_000) * np.exp2(rng.uniform(-20, 20, 150_000))
                         ).astype(np.float32),
    }


DISTRIBUTIONS = _distributions()


@pytest.fixture(scope="module", params=sorted(DISTRIBUTIONS))
def case(request):
    x = DISTRIBUTIONS[request.param]
    return request.param, x, encode(x)


def _nonzero_log2(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    return np.log2(np.abs(x[x != 0]))


# --- statistics ----------------------------------------------------------------------------
def test_stats_match_definition(case):
    name, x, _ = case
    l2 = _nonzero_log2(x)
    mu_ref = math.fsum(l2) / l2.size
    m_ref = float(l2.max())
    mu, m, alpha, beta = stats(x)
    assert m == m_ref, name
    assert math.isclose(mu, mu_ref, rel_tol=1e-12, abs_tol=1e-12), (name, mu, mu_ref)
    assert math.isclose(alpha, 15.0 / (m_ref - mu_ref), rel_tol=1e-10), name
    assert math.isclose(beta, -alpha * mu_ref, rel_tol=1e-10, abs_tol=1e-9), name


def test_scaled_log2_has_mean_0_and_max_15(case):
    name, x, _ = case
    _, _, alpha, beta = stats(x)
    scaled = alpha * _nonzero_log2(x) + beta
    mean = math.fsum(scaled) / scaled.size
    assert abs(mean) <= 1e-6, f"{name}: mean log2|Y| = {mean!r}"
    assert abs(scaled.max() - 15.0) <= 1e-6, f"{name}: max log2|Y| = {scaled.max()!r}"


def test_encoded_statistics_are_stats_as_float32(case):
    name, x, t = case
    _, _, alpha, beta = stats(x)
    assert type(t.alpha) is np.float32 and type(t.beta) is np.float32
    assert t.alpha == np.float32(alpha) and t.beta == np.float32(beta), name
    # the largest magnitude lands on 2^15 (code 0x78): shift and squeeze really applied
    assert int((t.codes & 0x7F).max()) == 0x78, name


def _insert_zeros(x: np.ndarray, rng, where: str) -> np.ndarray:
    flat = np.asarray(x).ravel()
    zeros = np.where(rng.random(3 * flat.size + 7) < 0.5, 0.0, -0.0).astype(flat.dtype)
    if where == "append":
        return np.concatenate([flat, zeros])
    if where == "prepend":
        return np.concatenate([zeros, flat])
    out = np.concatenate([flat, zeros])
    perm = rng.permutation(out.size)
    keep_order = np.sort(perm[:flat.size])               # positions of the original values
    res = np.zeros_like(out)
    res[:] = zeros[0]
    mask = np.zeros(out.size, bool)
    mask[keep_order] = True
    res[mask] = flat
    res[~mask] = zeros[: out.size - flat.size]
    return res


ZERO_CASES = [(name, where) for name in ["normal32", "lognormal_wide32", "two_values", "ints",
                                          "multiblock32"]
              for where in ["append", "prepend", "interleave"]]


@pytest.mark.parametrize("name,where", ZERO_CASES, ids=[f"{n}-{w}" for n, w in ZERO_CASES])
def test_zeros_do_not_change_stored_statistics(name, where):
    """The known baseline bug: counting zeros in the mean/max. Any number of +0/-0 added
    anywhere must leave the stored alpha, beta and the nonzero codes unchanged."""
    x = DISTRIBUTIONS[name].ravel()
    z = _insert_zeros(x, np.random.default_rng(7), where)
    assert np.count_nonzero(z) == np.count_nonzero(x) and z.size > 3 * x.size
    t_x, t_z = encode(x), encode(z)
    assert (t_x.alpha, t_x.beta) == (t_z.alpha, t_z.beta), \
        f"{name}/{where}: (alpha, beta) {(t_x.alpha, t_x.beta)} -> {(t_z.alpha, t_z.beta)}"
    assert np.array_equal(t_z.codes[z != 0], t_x.codes[x != 0])
    zero_codes = t_z.codes[z == 0]
    assert np.array_equal(zero_codes, np.where(np.signbit(z[z == 0]), 0x80, 0x00).astype(np.uint8))
    # a large error would mean zeros are counted (mean pulled towards log2(0) handling)
    s_x, s_z = stats(x), stats(z)
    assert np.allclose(s_x, s_z, rtol=1e-13, atol=0), f"{name}/{where}: {s_x} -> {s_z}"


@pytest.mark.parametrize("name,where", ZERO_CASES, ids=[f"{n}-{w}" for n, w in ZERO_CASES])
def test_zeros_do_not_change_float64_stats_exactly(name, where):
    """Statistics over the nonzero entries must not depend on where zeros sit: the float64
    (mu, m, alpha, beta) must be bit-identical, also for tensors spanning several blocks."""
    x = DISTRIBUTIONS[name].ravel()
    z = _insert_zeros(x, np.random.default_rng(7), where)
    s_x, s_z = stats(x), stats(z)
    assert s_x == s_z, f"{name}/{where}: stats {s_x} -> {s_z} after adding zeros"


def test_stats_mean_rounding_never_exceeds_max():
    """m > mu always holds exactly when not all magnitudes are equal, but the float64 mean
    can round up to (or past) m. Then alpha = 15/(m - mu) is negative or infinite.
    Tensor: 1000 copies of a = 2^100 (1 + 2^-40) and one b = 2^100: log2 a and log2 b
    differ, mean(log2) rounds above max(log2)."""
    a, b = 2.0 ** 100 * (1 + 2.0 ** -40), 2.0 ** 100
    x = np.array([a] * 1000 + [b])
    mu, m, alpha, beta = stats(x)
    assert np.isfinite(alpha) and alpha > 0, f"stats gave mu={mu!r} > m={m!r}: alpha={alpha!r}"
    t = encode(x)
    x_hat = decode(t).astype(np.float64)
    assert np.allclose(x_hat, x, rtol=1e-3)


# --- degenerate tensors and bad input --------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_zero_tensor(dtype):
    x = np.array([[0.0, -0.0, 0.0], [-0.0, -0.0, 0.0]], dtype)
    mu, m, alpha, beta = stats(x)
    assert math.isnan(mu) and math.isnan(m) and (alpha, beta) == (1.0, 0.0)
    t = encode(x)
    assert (t.alpha, t.beta) == (1.0, 0.0)
    assert np.array_equal(t.codes, np.array([[0, 0x80, 0], [0x80, 0x80, 0]], np.uint8))
    assert np.array_equal(decode(t).view(np.uint32), x.astype(np.float32).view(np.uint32))
    empty = encode(np.zeros(0, dtype))
    assert empty.codes.shape == (0,) and (empty.alpha, empty.beta) == (1.0, 0.0)


@pytest.mark.parametrize("x", [[3.0, -3.0, 3.0], [7.0], [-0.1], [1e-30, 0.0, -1e-30],
                               [1e30, 1e30], [2e-38], [65504.0, -0.0], [1.0, 1.0]],
                         ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equal_magnitudes(x, dtype):
    x = np.array(x, dtype)
    l2 = math.log2(abs(float(x[x != 0][0])))
    with np.errstate(all="raise"):                         # no division by zero anywhere
        mu, m, alpha, beta = stats(x)
        t = encode(x)
    assert (mu, m, alpha, beta) == (l2, l2, 1.0, -l2)
    assert t.alpha == 1.0 and t.beta == np.float32(-l2)
    x_hat = decode(t)
    assert np.array_equal(np.signbit(x_hat), np.signbit(x))
    nz = x != 0
    err = np.abs(np.log2(np.abs(x_hat[nz].astype(np.float64))) - l2)
    # FP32 rounding of the decode plus the float32 storage of beta (which enters decode once)
    tol = 2.0 ** -24 * abs(l2) + 2.0 ** -23
    assert err.max() <= tol, (x, x_hat, err.max(), tol)
    assert np.all(x_hat[~nz] == 0)


BAD = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("fn", ["stats", "encode", "encode_with"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_input_raises_with_count_and_index(fn, dtype):
    x = np.ones((3, 4), dtype)
    x[0, 2], x[1, 0], x[2, 3] = np.inf, np.nan, -np.inf
    call = {"stats": stats, "encode": encode, "encode_with": lambda v: encode_with(v, 2.0, 1.0)}[fn]
    with pytest.raises(ValueError) as info:
        call(x)
    msg = str(info.value)
    assert "3 non-finite" in msg and "(0, 2)" in msg, msg
    for bad in BAD:
        with pytest.raises(ValueError, match=r"1 non-finite.*\(1,\)"):
            call(np.array([1.0, bad, 0.0], dtype))


def test_non_numeric_input():
    with pytest.raises(TypeError):
        encode(np.array(["a", "b"]))
    with pytest.raises(TypeError):
        stats(np.array([1 + 2j]))


# --- codes ----------------------------------------------------------------------------------
def test_codes_are_a_function_of_stored_statistics(case):
    name, x, t = case
    assert t.codes.shape == np.shape(x) and t.codes.dtype == np.uint8
    assert np.array_equal(encode_with(x, t.alpha, t.beta), t.codes), name
    # same with the statistics passed as plain Python floats
    assert np.array_equal(encode_with(x, float(t.alpha), float(t.beta)), t.codes), name


def test_codes_match_the_definition(case):
    """Y = sign(x) RNE_E5M2(2^beta |x|^alpha) in float64 with the stored alpha, beta;
    checked against the E5M2 value table (nearest value, ties to even code)."""
    name, x, t = case
    flat = np.asarray(x, np.float64).ravel()
    alpha, beta = float(t.alpha), float(t.beta)
    with np.errstate(divide="ignore", over="ignore"):
        y = np.exp2(alpha * np.log2(np.abs(flat)) + beta)
    values = E5M2_VALUES[:0x7C].astype(np.float64)
    idx = np.clip(np.searchsorted(values, y, side="right") - 1, 0, 0x7B)
    upper = np.minimum(idx + 1, 0x7B)
    d_lo, d_hi = y - values[idx], values[upper] - y
    pick = np.where((d_hi < d_lo) | ((d_hi == d_lo) & (idx % 2 == 1)), upper, idx)
    want = (pick | np.where(np.signbit(flat), 0x80, 0)).astype(np.uint8)
    got = t.codes.ravel()
    bad = np.flatnonzero(got != want)
    assert not bad.size, (f"{name}: {bad.size} mismatches; first x={flat[bad[0]]!r} "
                          f"got 0x{got[bad[0]]:02x} want 0x{want[bad[0]]:02x}")


# --- decode ---------------------------------------------------------------------------------
def test_decode_error_bound(case):
    """For nonzero x whose Y is an E5M2 normal: |Y_rounded / Y| in [1/(1+2^-3), 1+2^-3]
    (half an ulp is at most 2^-3 of the smaller of the two, both in the same binade or Y
    rounding up onto a power of two); decode inverts the same float32 alpha/beta, so
    |log2|x_hat| - log2|x|| <= log2(1 + 2^-3)/alpha, plus FP32 rounding of the table entry
    (<= 2^-24 relative, < 2^-23 in log2) and float64 evaluation slack: 1e-6."""
    name, x, t = case
    flat = np.asarray(x, np.float64).ravel()
    x_hat = decode(t).ravel()
    assert x_hat.dtype == np.float32 and decode(t).shape == np.shape(x)
    codes = t.codes.ravel()
    zero = flat == 0
    assert np.array_equal(x_hat[zero].view(np.uint32),
                          np.where(np.signbit(flat[zero]), 0x80000000, 0).astype(np.uint32))
    assert np.array_equal(np.signbit(x_hat), np.signbit(flat))
    tiny = np.finfo(np.float32).tiny
    # Y before rounding must be an E5M2 normal: a Y just below 2^-14 rounds on the subnormal
    # grid (up to 2^-14, code 4) with a relative error up to 1/7, beyond the bound
    with np.errstate(divide="ignore"):
        y = np.exp2(float(t.alpha) * np.log2(np.abs(flat)) + float(t.beta))
    normal = (~zero & (y >= 2.0 ** -14) & ((codes & 0x7F) >= 4) & (np.abs(x_hat) >= tiny)
              & np.isfinite(x_hat) & (np.abs(flat) >= tiny))
    in_range = ~zero & (np.abs(flat) >= tiny) & (np.abs(flat) <= np.finfo(np.float32).max)
    assert normal.sum() >= 0.5 * in_range.sum() and normal.sum() > 0, name
    err = np.abs(np.log2(np.abs(x_hat[normal].astype(np.float64))) - np.log2(np.abs(flat[normal])))
    bound = math.log2(1 + 2.0 ** -3) / float(t.alpha) + 1e-6
    worst = int(np.argmax(err))
    assert err.max() <= bound, (f"{name}: log2 error {err.max():.3g} > {bound:.3g} at "
                                f"x={flat[normal][worst]!r} -> {x_hat[normal][worst]!r}")


# --- decode tables --------------------------------------------------------------------------
def ref_fp32_bits(value: float, mant_bits: int) -> int:
    """Exact RNE of a non-negative float64 to FP32 with a mant_bits significand, subnormals
    kept, magnitude >= 2^128 after rounding -> Inf."""
    if math.isnan(value):
        return 0x7FC00000
    if math.isinf(value):
        return 0x7F800000
    if value == 0:
        return 0
    q = Fraction(value)
    e = q.numerator.bit_length() - q.denominator.bit_length()
    if Fraction(2) ** e > q:
        e -= 1
    assert Fraction(2) ** e <= q < Fraction(2) ** (e + 1)
    quantum = max(e - (mant_bits - 1), -149)
    r = round(q / Fraction(2) ** quantum) * Fraction(2) ** quantum   # round(): ties to even
    if r >= 2 ** 128:
        return 0x7F800000
    return int(np.float32(float(r)).view(np.uint32))


TABLE_CASES = [(1.0, 0.0), (5.0, 21.0), (0.37, -3.2), (17.5, 260.0), (2.5, -10.0),
               (np.float32(4.75123), np.float32(19.0001)), (1.0, 150.0), (1.0, -113.0),
               (0.05, 0.0), (0.01, 1.0)]


@pytest.mark.parametrize("mant_bits", [1, 2, 3, 8, 11, 23, 24])
@pytest.mark.parametrize("alpha,beta", TABLE_CASES, ids=[f"a{a:g}_b{b:g}" for a, b in TABLE_CASES])
def test_decode_table(alpha, beta, mant_bits):
    table = decode_table(alpha, beta, mant_bits)
    assert table.dtype == np.uint32 and table.shape == (128,)
    assert table[0] == 0 and table[0x7C] == 0x7F800000
    assert list(table[0x7D:]) == [0x7FC00000] * 3
    v = E5M2_VALUES[1:0x7C].astype(np.float64)
    with np.errstate(over="ignore"):
        x = np.exp2((np.log2(v) - float(beta)) / float(alpha))  # the documented float64 formula
    want = np.array([ref_fp32_bits(float(e), mant_bits) for e in x], np.uint32)
    got = table[1:0x7C]
    bad = np.flatnonzero(got != want)
    assert not bad.size, (f"entry 0x{bad[0] + 1:02x}: got 0x{int(got[bad[0]]):08x} "
                          f"want 0x{int(want[bad[0]]):08x} (x={x[bad[0]]!r})")
    vals = got.view(np.float32)
    assert np.all(vals[1:] >= vals[:-1]), "table not monotonic"
    if mant_bits == 24 and 0.3 <= float(alpha) <= 20 and np.isfinite(vals).all() and vals[0] > 2 ** -120:
        assert np.all(vals[1:] > vals[:-1]), "table not strictly increasing"
    # at most mant_bits significant bits in every finite significand (subnormals included)
    finite = np.isfinite(vals) & (vals > 0)
    bits = got[finite]
    exp = bits >> 23
    sig = np.where(exp > 0, (bits & 0x7FFFFF) | 0x800000, bits & 0x7FFFFF).astype(np.int64)
    lowest = sig & -sig
    width = np.floor(np.log2(sig)).astype(int) - np.floor(np.log2(lowest)).astype(int) + 1
    assert width.max() <= mant_bits
    # and the table matches the value computed by the C math library within one W-bit ulp
    libm = np.array([2.0 ** min((math.log2(e) - float(beta)) / float(alpha), 1000.0) for e in v])
    ok = np.isfinite(vals) & (vals >= 2.0 ** -126) & (libm < 2.0 ** 127)
    rel = np.abs(vals[ok] / libm[ok] - 1)
    assert rel.max(initial=0) <= 2.0 ** -mant_bits * 1.0001 + 1e-12


def test_decode_table_underflow_and_overflow():
    # alpha = 1, beta = 150: entry = v * 2^-150
    t = decode_table(1.0, 150.0)
    at = {c: int(t[c]) for c in range(128)}
    assert at[0x3C] == 0                     # 1.0 * 2^-150: exactly half the min subnormal, tie -> 0
    assert at[0x3D] == 1                     # 1.25 * 2^-150 -> 2^-149
    assert at[0x40] == 1                     # 2^-149
    assert at[0x7B] == 0x7000                # 1.75 * 2^-135 = 28672 * 2^-149
    assert all(at[c] == 0 for c in range(1, 0x3C))
    # beta = 300: everything underflows to +0
    assert (decode_table(1.0, 300.0)[:0x7C] == 0).all()
    # alpha = 1, beta = -113: entry = v * 2^113
    t = decode_table(1.0, -113.0)
    assert t[0x77] == np.float32(1.75 * 2.0 ** 127).view(np.uint32)
    assert t[0x78] == 0x7F800000             # 2^128 -> Inf
    assert (t[0x78:0x7C] == 0x7F800000).all()
    # rounding to W bits can itself overflow: 1.875 * 2^127 -> 2^128 with 3 bits
    t = decode_table(1.0, -112.0 - math.log2(1.875) + 1)
    assert t.view(np.float32)[0x77] > 1e38
    # beta = -400: every nonzero finite entry is Inf
    assert (decode_table(1.0, -400.0)[1:0x7C] == 0x7F800000).all()


@pytest.mark.parametrize("alpha", [0.0, -1.0, np.nan, np.inf, -0.0])
def test_bad_alpha(alpha):
    x = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="alpha"):
        decode_table(alpha, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        encode_with(x, alpha, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        S2FP8Tensor(np.zeros(2, np.uint8), alpha, 0.0)


@pytest.mark.parametrize("beta", [np.nan, np.inf, -np.inf])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        decode_table(1.0, beta)
    with pytest.raises(ValueError, match="beta"):
        S2FP8Tensor(np.zeros(2, np.uint8), 1.0, beta)


@pytest.mark.parametrize("mant_bits,exc", [(0, ValueError), (25, ValueError), (-3, ValueError),
                                           (2.0, TypeError), (True, TypeError), ("8", TypeError)])
def test_bad_mant_bits(mant_bits, exc):
    with pytest.raises(exc, match="mant_bits"):
        decode_table(1.0, 0.0, mant_bits)
    t = encode(np.array([1.0, 2.0]))
    with pytest.raises(exc, match="mant_bits"):
        decode(t, mant_bits)


# --- the tensor object ------------------------------------------------------------------------
def test_tensor_is_frozen_and_codes_read_only():
    t = encode(np.array([1.0, -2.0, 0.0, 4.0]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.alpha = np.float32(2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.codes = np.zeros(4, np.uint8)
    with pytest.raises(ValueError):
        t.codes[0] = 0
    assert not t.codes.flags.writeable
    # a tensor built from a writable array does not alias it
    raw = np.array([0x3C, 0xBC], np.uint8)
    u = S2FP8Tensor(raw, 1.0, 0.0)
    raw[0] = 0
    assert u.codes[0] == 0x3C and not u.codes.flags.writeable
    assert u.shape == (2,) and type(u.alpha) is np.float32
    with pytest.raises(TypeError):
        S2FP8Tensor(np.zeros(2, np.int8), 1.0, 0.0)


def test_decode_uses_table():
    t = S2FP8Tensor(np.array([0x3C, 0xBC, 0x7C, 0xFC, 0x7D, 0x00, 0x80], np.uint8), 2.0, 1.0)
    got = decode(t).view(np.uint32)
    one = ref_fp32_bits(2.0 ** (-0.5), 24)                  # 2^((0 - 1)/2)
    assert list(got) == [one, one | 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000,
                         0, 0x80000000]


def test_apply_sign_is_lookup_with_sign_xor():
    """apply_sign = table[code & 0x7F] XOR (code >> 7) << 31 for every code, also for a
    table entry that has its sign bit set; a table of another size is refused."""
    from pysim.numerics.s2fp8 import apply_sign
    rng = np.random.default_rng(7)
    table = rng.integers(0, 1 << 32, 128, dtype=np.uint64).astype(np.uint32)
    codes = np.arange(256, dtype=np.uint8).reshape(16, 16)
    want = [int(table[c & 0x7F]) ^ ((c >> 7) << 31) for c in range(256)]
    assert apply_sign(codes, table).ravel().tolist() == want
    with pytest.raises(ValueError, match="128 entries"):
        apply_sign(codes, table[:64])
