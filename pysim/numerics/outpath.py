"""The S2FP8 output path's hardware numeric rule: FP32 results -> S2FP8 codes, alpha, beta.

This is what the RTL in ``hw/outpath`` computes, bit for bit, as pure numpy functions.
It differs from the paper's float64 formula (:func:`pysim.numerics.s2fp8.encode`) in two
places, both measured by ``python -m bench.outpath`` (docs/numerics.md, "Hardware
statistics and encoder rule"):

1. **Statistics** use a fixed-point log2: ``log2|x| = e + log2(1 + f)`` with the exponent
   ``e`` exact and ``log2(1 + f)`` of the 23-bit significand fraction from a
   ``2^table_bits``-segment table with linear interpolation, truncated to ``frac_bits``
   fractional bits. The sum of the log2 values and the nonzero count are exact integers;
   the max is the largest magnitude (log2 is monotone, so log2 of the max is the max of
   log2). Then a scalar step (:func:`scalar_step`, a controller's FP64 routine) turns
   (sum, count, log2 of the max) into alpha and beta, stored as float32.
2. **Encoding** never takes a log2 of a value: per tensor, a 128-entry threshold table
   (:func:`threshold_table`) holds the smallest FP32 magnitude of every E5M2 magnitude
   code under (alpha, beta); a value's code is a 7-step binary search of its FP32
   magnitude bits in that table (:func:`encode_codes`). Given the same float32 alpha and
   beta it agrees with the float64 formula except where the float64 evaluation itself is
   within an ulp of a rounding boundary.

Nonzero-ness and the sign are exact; zeros are ignored by the statistics (so padding a
tensor with zeros to a multiple of the lane count changes nothing) and get code 0 with
their sign. NaN and Inf are counted (``nonfinite``), left out of the statistics, and a
tensor holding one is refused by :func:`encode_hw` (ValueError), as by the paper formula.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pysim.numerics.formats import E5M2, FP32, TABLE_ENTRIES
from pysim.numerics.fp8 import E5M2_VALUES, first_index
from pysim.numerics.s2fp8 import squeeze_shift

#: Width of the nonzero count: the output path supports tensors of up to 2^32 - 1
#: elements (a 64K x 64K GEMM result is exactly 2^32; the largest ResNet-50 activation
#: at batch 256 is 2^28.6).
COUNT_BITS = 32
#: Signed integer bits of a log2 value: FP32 magnitudes lie in [2^-149, 2^128).
LOG2_INT_BITS = (FP32.emax + 1).bit_length() + 1
#: FP32 magnitude bits (the word without its sign), compared as unsigned integers.
MAGNITUDE_BITS = FP32.width - 1
#: Threshold table entry width: one bit above a magnitude, so that the entries of the
#: Inf/NaN codes (2^31) are above every FP32 magnitude and the search never reaches them.
THRESHOLD_BITS = FP32.width
UNREACHABLE = 1 << MAGNITUDE_BITS
#: Largest finite E5M2 magnitude code (0x7B): the encoder saturates there.
MAX_FINITE_CODE = E5M2.inf_bits - 1
#: Binary-search steps of the encoder: one per magnitude-code bit.
SEARCH_STEPS = E5M2.width - 1


@dataclass(frozen=True)
class Log2Config:
    """The fixed-point log2 of the statistics unit.

    ``table_bits``: the top ``table_bits`` bits of the significand fraction select one of
    ``2^table_bits`` segments; the rest interpolate linearly between the segment's ends.
    ``frac_bits``: fractional bits of every log2 value (and of the sum).
    Defaults chosen by ``python -m bench.outpath --sweep`` (docs/numerics.md): alpha
    multiplies every log2 error, and near-constant tensors (alpha ~ 2000) need
    m - mu to 1e-7; 1024 segments (chord error <= 1.7e-7) and 22 fractional bits are the
    smallest sweep point with >= 99.9 % identical codes and alpha within 1e-4 there
    (99.966 %, 2.0e-5); 256 segments give 99.62 % and 6.0e-5, 512 segments 99.89 %.
    The other distributions are at >= 99.9997 % from 512 segments on.
    """

    table_bits: int = 10
    frac_bits: int = 22

    def __post_init__(self):
        for name, value, low, high in (("table_bits", self.table_bits, 1, FP32.frac_bits),
                                       ("frac_bits", self.frac_bits, 1, 63 - LOG2_INT_BITS - COUNT_BITS)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"Log2Config.{name} must be an int in {low}..{high}, not {value!r}")

    @property
    def interp_bits(self) -> int:
        """Fraction bits below the table index: the interpolation weight."""
        return FP32.frac_bits - self.table_bits

    @property
    def log2_bits(self) -> int:
        """Width of a signed fixed-point log2 value."""
        return LOG2_INT_BITS + self.frac_bits

    @property
    def sum_bits(self) -> int:
        """Width of the signed sum of up to 2^COUNT_BITS - 1 log2 values."""
        return self.log2_bits + COUNT_BITS

    @property
    def slope_bits(self) -> int:
        return int(log2_segments(self)[1].max()).bit_length()


DEFAULT_LOG2 = Log2Config()


def log2_segments(config: Log2Config = DEFAULT_LOG2) -> tuple[np.ndarray, np.ndarray]:
    """The log2 ROM: per segment i, ``base[i] = round(log2(1 + i / 2^T) * 2^F)`` and
    ``slope[i] = base[i + 1] - base[i]`` (with ``base[2^T] = 2^F``), as int64."""
    points = np.arange((1 << config.table_bits) + 1, dtype=np.float64) / (1 << config.table_bits)
    ends = np.rint(np.log2(1.0 + points) * (1 << config.frac_bits)).astype(np.int64)
    return ends[:-1], np.diff(ends)


def _as_fp32_bits(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.uint32:
        return x.reshape(-1)
    if x.dtype != np.float32:
        raise TypeError(f"the output path takes float32 values (or their uint32 bits), "
                        f"got dtype {x.dtype}")
    return np.ascontiguousarray(x).reshape(-1).view(np.uint32)


def classify(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(magnitude bits, finite nonzero mask, NaN-or-Inf mask) of FP32 words."""
    magnitude = bits & np.uint32(FP32.magnitude_mask)
    nonfinite = magnitude >= np.uint32(FP32.inf_bits)
    return magnitude, (magnitude != 0) & ~nonfinite, nonfinite


def log2_fixed(bits, config: Log2Config = DEFAULT_LOG2) -> np.ndarray:
    """The hardware log2 of FP32 magnitudes, in units of 2^-frac_bits (int64).

    A subnormal is first normalized (exponent below emin, hidden bit made explicit), as
    :class:`hw.fp32.unpack.Unpack` does. With exponent e, fraction f (23 bits), segment
    i = f >> interp_bits and weight r = f mod 2^interp_bits:
    ``e * 2^F + base[i] + floor(slope[i] * r / 2^interp_bits)``.
    Zero, Inf and NaN give 0 (the statistics ignore them).
    """
    magnitude, nonzero, _ = classify(_as_fp32_bits(bits))
    exp_field = (magnitude >> np.uint32(FP32.frac_bits)).astype(np.int64)
    frac = (magnitude & np.uint32(FP32.frac_mask)).astype(np.int64)
    subnormal = exp_field == 0
    # bit length of a subnormal fraction (frexp is exact on integers below 2^53)
    length = np.frexp(frac.astype(np.float64))[1].astype(np.int64)
    exponent = np.where(subnormal, length - (FP32.bias + FP32.frac_bits), exp_field - FP32.bias)
    shift = np.where(subnormal, FP32.precision - length, 0)
    frac = (frac << shift) & FP32.frac_mask
    base, slope = log2_segments(config)
    segment = frac >> config.interp_bits
    weight = frac & ((1 << config.interp_bits) - 1)
    value = ((exponent << config.frac_bits) + base[segment]
             + ((slope[segment] * weight) >> config.interp_bits))
    return np.where(nonzero, value, 0)


@dataclass(frozen=True)
class HwStats:
    """What the statistics unit reports for one tensor (all exact integers).

    ``count``: finite nonzero entries; ``total``: sum of their fixed-point log2 values;
    ``max_magnitude`` / ``min_magnitude``: largest / smallest of their magnitude bits (0
    if none); ``max_log2``: fixed-point log2 of ``max_magnitude``; ``nonfinite``: NaN/Inf
    entries (left out of everything else).
    """

    count: int
    total: int
    max_magnitude: int
    min_magnitude: int
    max_log2: int
    nonfinite: int


def statistics(x, config: Log2Config = DEFAULT_LOG2) -> HwStats:
    """The statistics unit's result for one tensor (float32 values or uint32 bits)."""
    bits = _as_fp32_bits(x)
    if bits.size >= 1 << COUNT_BITS:
        raise ValueError(f"the output path supports tensors of up to 2^{COUNT_BITS} - 1 "
                         f"elements, got {bits.size}")
    magnitude, nonzero, nonfinite = classify(bits)
    count = int(nonzero.sum())
    kept = magnitude[nonzero]
    high = int(kept.max()) if count else 0
    low = int(kept.min()) if count else 0
    return HwStats(count=count, total=int(log2_fixed(bits, config).sum()),
                   max_magnitude=high, min_magnitude=low,
                   max_log2=int(log2_fixed(np.array([high], np.uint32), config)[0]),
                   nonfinite=int(nonfinite.sum()))


def scalar_step(stats: HwStats, config: Log2Config = DEFAULT_LOG2) -> tuple[np.float32, np.float32]:
    """alpha and beta (float32) from the statistics: the controller's FP64 routine.

    IEEE binary64, RNE: ``m = max_log2 * 2^-F``; ``mu = m`` if every nonzero magnitude is
    equal (``min == max`` bits, tested exactly), else
    ``mu = min(float64(total) / float64(count) * 2^-F, m)``; then the project's one rule
    :func:`pysim.numerics.s2fp8.squeeze_shift` (degenerate cases and the near-constant
    limit on alpha), each result rounded once to float32.
    """
    if stats.count == 0:
        alpha, beta = squeeze_shift(float("nan"), float("nan"))
        return np.float32(alpha), np.float32(beta)
    scale = 2.0 ** -config.frac_bits
    high = stats.max_log2 * scale
    if stats.min_magnitude == stats.max_magnitude:
        mu = high
    else:
        mu = min(float(stats.total) / float(stats.count) * scale, high)
    alpha, beta = squeeze_shift(mu, high)
    return np.float32(alpha), np.float32(beta)


#: Decision points of E5M2 round-to-nearest: MIDPOINTS[j - 1] lies between magnitude
#: codes j - 1 and j (j = 1..0x7B), exact in float64.
_FINITE = E5M2_VALUES[:MAX_FINITE_CODE + 1].astype(np.float64)
MIDPOINTS = (_FINITE[:-1] + _FINITE[1:]) / 2


def threshold_table(alpha, beta) -> np.ndarray:
    """The encoder's 128 uint32 entries for one tensor's float32 alpha and beta.

    Entry j (1..0x7B) is the smallest FP32 magnitude (its bits) whose value x satisfies
    ``2^beta * x^alpha > midpoint_j``, or ``>=`` when j is even (RNE ties go to the even
    code). The threshold ``(midpoint_j * 2^-beta)^(1/alpha)`` is evaluated in float64 as
    ``exp2((log2(midpoint_j) - beta) / alpha)`` (``midpoint_j * exp2(-beta)`` when alpha
    is 1, exact for an integral beta) and rounded up to FP32; below the smallest
    subnormal it becomes the smallest subnormal (zero keeps code 0), above the largest
    finite +Inf (no finite value reaches it). Entry 0 is 0 (every value has code >= 0);
    entries 0x7C..0x7F are 2^31 (no magnitude reaches the Inf/NaN codes).
    Nondecreasing, as the binary search needs.
    """
    alpha, beta = float(np.float32(alpha)), float(np.float32(beta))
    if not (np.isfinite(alpha) and alpha > 0 and np.isfinite(beta)):
        raise ValueError(f"alpha must be finite and > 0 and beta finite, got {alpha!r}, {beta!r}")
    with np.errstate(over="ignore", under="ignore"):
        if alpha == 1.0:
            x = MIDPOINTS * np.exp2(-beta)
        else:
            x = np.exp2((np.log2(MIDPOINTS) - beta) / alpha)
        up = x.astype(np.float32)
    below = up.astype(np.float64) < x
    odd_tie = (up.astype(np.float64) == x) & (np.arange(1, MAX_FINITE_CODE + 1) % 2 == 1)
    up = np.where(below | odd_tie, np.nextafter(up, np.float32(np.inf)), up)
    # at least the smallest subnormal, so that zero keeps code 0; the running max keeps
    # the table sorted should a tie bump cross an equal neighbour (only for huge alpha)
    entries = np.maximum.accumulate(np.maximum(up.view(np.uint32), np.uint32(1)))
    table = np.full(TABLE_ENTRIES, UNREACHABLE, np.uint32)
    table[0] = 0
    table[1:MAX_FINITE_CODE + 1] = entries
    return table


def encode_codes(x, table) -> np.ndarray:
    """uint8 codes of FP32 values through a threshold table: the encoder's 7-step search.

    Step s (s = 0..6) compares the magnitude bits with ``table[code | 2^(6 - s)]`` (code
    holding the bits found so far) and sets that bit when the magnitude is >= the entry.
    The sign bit is copied (so -0.0 -> 0x80). NaN and Inf are searched like any magnitude
    (they land on the largest finite code); the statistics unit flags them.
    """
    bits = _as_fp32_bits(x)
    table = np.asarray(table, np.uint32)
    magnitude = bits & np.uint32(FP32.magnitude_mask)
    code = np.zeros(bits.shape, np.uint8)
    for step in range(SEARCH_STEPS):
        candidate = code | np.uint8(1 << (SEARCH_STEPS - 1 - step))
        code = np.where(magnitude >= table[candidate], candidate, code)
    sign = (bits >> np.uint32(FP32.width - 1)).astype(np.uint8) << np.uint8(E5M2.width - 1)
    return code | sign


@dataclass(frozen=True)
class HwEncoded:
    """A tensor through the whole output path: codes (uint8, the input's shape), the
    float32 alpha and beta, and the statistics they came from."""

    codes: np.ndarray
    alpha: np.float32
    beta: np.float32
    stats: HwStats


def encode_hw(x, config: Log2Config = DEFAULT_LOG2) -> HwEncoded:
    """Statistics pass, scalar step, threshold table, encode pass: the hardware's S2FP8
    encode of a float32 tensor. NaN or Inf in ``x`` raises ValueError."""
    x = np.asarray(x)
    bits = _as_fp32_bits(x)
    _, _, nonfinite = classify(bits)
    if nonfinite.any():
        raise ValueError(f"cannot encode a tensor holding NaN or Inf: {int(nonfinite.sum())} "
                         f"non-finite value(s), first at flat index {first_index(nonfinite)[0]}")
    stats = statistics(bits, config)
    alpha, beta = scalar_step(stats, config)
    codes = encode_codes(bits, threshold_table(alpha, beta)).reshape(x.shape)
    return HwEncoded(codes=codes, alpha=alpha, beta=beta, stats=stats)
