"""The output path's hardware rule (pysim.numerics.outpath): fixed-point log2, statistics,
scalar step, threshold tables and the 7-step search, against float64 references."""
import math

import numpy as np
import pytest

from pysim.numerics import outpath, s2fp8
from pysim.numerics.formats import E5M2, FP32, TABLE_ENTRIES
from pysim.numerics.fp8 import E5M2_VALUES, e5m2_encode

CONFIG = outpath.DEFAULT_LOG2


def _bits(x):
    return np.asarray(x, np.float32).view(np.uint32)


def _every_band(rng, per_band=64):
    """Magnitudes from every FP32 exponent field 0..254 (subnormals included), random
    fractions plus the band edges."""
    exp_field = np.repeat(np.arange(FP32.exp_max_code, dtype=np.uint32), per_band)
    frac = rng.integers(0, 1 << FP32.frac_bits, exp_field.size, dtype=np.uint32)
    frac[::per_band] = 0
    frac[1::per_band] = FP32.frac_mask
    bits = (exp_field << np.uint32(FP32.frac_bits)) | frac
    return bits[bits != 0]


def _log2_reference(bits: int, config) -> int:
    """One value by Python integer arithmetic (no numpy), as the docs state the rule."""
    exp_field, frac = bits >> FP32.frac_bits, bits & FP32.frac_mask
    if exp_field == 0:                                    # normalize a subnormal
        length = frac.bit_length()
        exponent = length - 1 + FP32.emin - FP32.frac_bits
        frac = (frac << (FP32.precision - length)) & FP32.frac_mask
    else:
        exponent = exp_field - FP32.bias
    segments = 1 << config.table_bits
    index, weight = frac >> config.interp_bits, frac & ((1 << config.interp_bits) - 1)
    base = round(math.log2(1 + index / segments) * 2 ** config.frac_bits)
    top = round(math.log2(1 + (index + 1) / segments) * 2 ** config.frac_bits)
    return (exponent << config.frac_bits) + base + (((top - base) * weight) >> config.interp_bits)


def test_log2_every_exponent_band_within_chord_error():
    bits = _every_band(np.random.default_rng(1))
    got = outpath.log2_fixed(bits) * 2.0 ** -CONFIG.frac_bits
    exact = np.log2(bits.view(np.float32).astype(np.float64))
    chord = 2.0 ** (-2 * CONFIG.table_bits) / (8 * math.log(2))
    error = exact - got
    # the chord lies below log2 and the shift truncates (< 1 LSB low); the table's own
    # rounding is half an LSB either way
    lsb = 2.0 ** -CONFIG.frac_bits
    assert error.min() >= -lsb / 2
    assert error.max() <= chord + 1.5 * lsb


def test_log2_matches_integer_reference_and_is_exact_at_powers_of_two():
    rng = np.random.default_rng(2)
    bits = rng.choice(_every_band(rng, 8), 600)
    got = outpath.log2_fixed(bits)
    assert [int(v) for v in got] == [_log2_reference(int(b), CONFIG) for b in bits]
    small = outpath.Log2Config(table_bits=3, frac_bits=9)
    assert ([int(v) for v in outpath.log2_fixed(bits, small)]
            == [_log2_reference(int(b), small) for b in bits])
    powers = np.arange(-149, 128)
    assert np.array_equal(outpath.log2_fixed(_bits(np.ldexp(1.0, powers))),
                          powers << CONFIG.frac_bits)


def test_log2_is_monotone_and_ignores_zero_inf_nan():
    bits = np.sort(_every_band(np.random.default_rng(3)))
    assert np.all(np.diff(outpath.log2_fixed(bits)) >= 0)
    special = np.array([0, FP32.sign_mask, FP32.inf_bits, FP32.canonical_nan_bits], np.uint32)
    assert np.array_equal(outpath.log2_fixed(special), np.zeros(4, np.int64))


def test_statistics_ignore_zeros_and_count_nonfinite():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(1000).astype(np.float32)
    padded = np.concatenate([x, np.zeros(24, np.float32), -np.zeros(3, np.float32)])
    assert outpath.statistics(x) == outpath.statistics(padded)
    stats = outpath.statistics(np.concatenate([x, np.float32([np.inf, np.nan])]))
    assert stats.nonfinite == 2 and stats.count == 1000
    assert stats.total == int(outpath.log2_fixed(x).sum())
    assert stats.max_magnitude == int(_bits(np.abs(x)).max())
    assert stats.min_magnitude == int(_bits(np.abs(x)).min())


def test_scalar_step_degenerate_cases():
    empty = outpath.encode_hw(np.zeros(10, np.float32) * np.float32([1, -1] * 5))
    assert (empty.alpha, empty.beta) == (1.0, 0.0)
    assert np.array_equal(empty.codes, np.uint8([0, 0x80] * 5))
    # equal magnitudes: alpha 1, beta -m; for a power of two beta is exact
    const = outpath.encode_hw(np.float32([8.0, -8.0, 0.0, 8.0]))
    assert (const.alpha, const.beta) == (1.0, -3.0)
    assert np.array_equal(const.codes, s2fp8.encode(np.float32([8.0, -8.0, 0.0, 8.0])).codes)
    # two magnitudes one ulp apart: fixed-point log2 values equal, so mu >= m -> (1, -m)
    near = outpath.encode_hw(np.float32([3.0, np.nextafter(np.float32(3.0), np.float32(4))]))
    assert near.alpha == 1.0
    assert near.beta == np.float32(-outpath.log2_fixed(_bits([3.0]))[0] * 2.0 ** -CONFIG.frac_bits)


def test_nonfinite_input_is_refused():
    with pytest.raises(ValueError, match="NaN or Inf: 2 non-finite value.*index 1"):
        outpath.encode_hw(np.float32([1.0, np.inf, 2.0, np.nan]))
    with pytest.raises(TypeError, match="float32"):
        outpath.encode_hw(np.zeros(3))


@pytest.mark.parametrize("alpha, beta", [(5.0, 21.0), (0.13, -3.5), (16.0, 40.0),
                                         (1.0, 7.25), (2200.0, -3500.0), (0.7, 90.0)])
def test_threshold_search_equals_float64_encode(alpha, beta):
    """Given the same float32 alpha and beta the search is the paper's encode, on random
    values and on every table entry and its FP32 neighbours."""
    alpha, beta = float(np.float32(alpha)), float(np.float32(beta))
    table = outpath.threshold_table(alpha, beta)
    assert np.all(np.diff(table.astype(np.int64)) >= 0)
    assert table[0] == 0 and np.all(table[E5M2.inf_bits:] == outpath.UNREACHABLE)
    edges = table[1:outpath.MAX_FINITE_CODE + 1].astype(np.int64)
    near = np.concatenate([edges - 1, edges, edges + 1]).clip(0, FP32.inf_bits - 1)
    rng = np.random.default_rng(5)
    values = (rng.standard_normal(20000) * 2.0 ** rng.uniform(-150, 127, 20000)).astype(np.float32)
    x = np.concatenate([values, near.astype(np.uint32).view(np.float32)])
    x = np.concatenate([x, -x])
    assert np.array_equal(outpath.encode_codes(x, table), s2fp8.encode_with(x, alpha, beta))


def test_threshold_ties_round_to_even():
    """alpha = 1 and an integral beta put the E5M2 midpoints exactly on FP32 values: the
    search rounds each tie to the even code, exactly as E5M2 RNE of the exact 2^beta * x
    (the float64 formula exp2(log2 x + beta) lands an ulp either side of a tie)."""
    beta = -4.0
    x = (outpath.MIDPOINTS * 2.0 ** -beta).astype(np.float32)
    codes = outpath.encode_codes(x, outpath.threshold_table(1.0, beta))
    assert np.array_equal(codes, e5m2_encode(x.astype(np.float64) * 2.0 ** beta))
    assert np.all(codes % 2 == 0)


def test_threshold_table_extremes():
    """Thresholds beyond FP32 become Inf (never reached by a finite value), below it the
    smallest subnormal (zero keeps code 0)."""
    wide = outpath.threshold_table(0.01, 0.0)          # |x|^0.01: huge thresholds
    assert wide[outpath.MAX_FINITE_CODE] == FP32.inf_bits
    tiny = outpath.threshold_table(0.01, 15.0)          # below 2^-149 at the low end
    assert tiny[1] == 1
    assert outpath.encode_codes(np.float32([0.0]), tiny)[0] == 0
    with pytest.raises(ValueError, match="alpha"):
        outpath.threshold_table(0.0, 1.0)


def test_hardware_rule_close_to_paper_on_a_tensor():
    """The bench's claim on one tensor: >= 99.9 % identical codes, never 2 steps apart."""
    rng = np.random.default_rng(6)
    x = (rng.laplace(0, 1e-3, 50000)).astype(np.float32)
    hw, paper = outpath.encode_hw(x), s2fp8.encode(x)
    steps = np.abs((hw.codes & 0x7F).astype(int) - (paper.codes & 0x7F).astype(int))
    assert np.mean(hw.codes == paper.codes) >= 0.999 and steps.max() <= 1
    assert abs(hw.alpha / paper.alpha - 1) < 1e-4 and abs(hw.beta / paper.beta - 1) < 1e-4


def test_log2_config_validation():
    with pytest.raises(ValueError, match="table_bits"):
        outpath.Log2Config(table_bits=0)
    with pytest.raises(ValueError, match="frac_bits"):
        outpath.Log2Config(frac_bits=23)
    assert outpath.DEFAULT_LOG2.sum_bits <= 63
    assert TABLE_ENTRIES == 1 << outpath.SEARCH_STEPS
    assert E5M2_VALUES[outpath.MAX_FINITE_CODE] == E5M2.max_finite
