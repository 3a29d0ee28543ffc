"""Torch quantizers for training, bit-exact with the numpy golden model.

Each ``quantize_*`` maps a float32 torch tensor to the float32 tensor of its 8-bit
round trip (encode, then decode):

- ``s2fp8``: equal to :func:`pysim.numerics.s2fp8.encode` then
  :func:`~pysim.numerics.s2fp8.decode` (per-tensor statistics over the nonzero entries in
  float64, alpha and beta stored as float32, the codes from the float64 formula, decode
  through the tensor's 128-entry FP32 table), computed as described under
  "S2FP8 without a log2 per value" below;
- ``s2fp8-hw``: equal to :func:`pysim.numerics.outpath.encode_hw` (the RTL output path:
  fixed-point log2 statistics, the controller's scalar step, the threshold encoder) then
  the same decode table: what training sees when the hardware produces the tensors;
- ``e5m2``: torch's ``float8_e5m2`` conversion after clamping to +-57344, equal to
  :func:`pysim.numerics.fp8.e5m2_encode` then ``e5m2_decode`` (RNE, subnormals,
  saturating);
- ``e4m3``: torch's ``float8_e4m3fn`` conversion with the overflow patched to NaN, equal
  to the ml_dtypes round trip of :mod:`pysim.accuracy.gemm_error` (RNE, subnormals, a
  magnitude above 464 becomes NaN).

tests/test_train.py compares every quantizer with the numpy path bit for bit. NaN input
propagates through E5M2 and E4M3 (pysim's E5M2 refuses it) and raises
:class:`NonFiniteTensor` in both S2FP8 modes: training stops the run either way.

S2FP8 without a log2 per value. pysim's encode takes a float64 log2 and exp2 of every
value (42 of its 62 ms per 2M-value tensor are the statistics); training quantizes
~14M values per ResNet-8 step. Both S2FP8 quantizers here make two compiled passes
(numba, on the tensor's float32 bits, split over torch's threads) and do the per-tensor
work on 128 entries:

1. Statistics pass. ``s2fp8-hw``: the output path's integer statistics themselves
   (count, exact sum of the fixed-point log2 values, smallest and largest magnitude).
   ``s2fp8``: count, smallest and largest magnitude (whose numpy log2 are pysim's min
   and max, log2 being increasing), and the sum of log2|x| as the exponent sum plus the
   log2 of the product of the significands (float64 products renormalized every 32
   factors: one multiply per value, error <= 1 ulp each). pysim's own sum (numpy's
   log2 and pairwise sum) lies within a proven bound of that; alpha and beta are
   evaluated with pysim's rule (:func:`~pysim.numerics.s2fp8.squeeze_shift`) at both
   ends of the bound, and only if they round to the same float32 pair everywhere in
   between are they used (:func:`_exact_alpha_beta`); otherwise pysim's
   :func:`~pysim.numerics.s2fp8.stats` is called (never seen in the tests' tensors).
2. Per tensor: a 128-entry threshold table, entry j the smallest FP32 magnitude whose
   code is >= j. ``s2fp8-hw``: :func:`~pysim.numerics.outpath.threshold_table`.
   ``s2fp8``: the same float64 estimate, each entry then checked (and if need be
   searched) with pysim's own :func:`~pysim.numerics.s2fp8.encode_with` on the entry
   and its float32 predecessor. Exact because pysim's code is nondecreasing in |x|:
   consecutive float32 magnitudes differ by >= 8.6e-8 in log2 (alpha >= 0.054 times
   that after scaling), while the float64 log2, scaling and exp2 err by less than 1e-6
   of that gap.
3. Round-trip pass: per value the code the encoder's 7-step binary search finds in the
   table (the RTL's search), looked up per 1/16-binade bucket, then the decode table
   (:func:`~pysim.numerics.s2fp8.decode_table`) with the sign.

:class:`QuantizedConv2d` and :class:`QuantizedLinear` are the paper's quantization points
(Cambier et al. 2020): forward, both GEMM inputs (weights and activations) are quantized;
backward, the incoming gradient is quantized once and used by both the dgrad and the
wgrad GEMM together with the saved quantized inputs. Accumulation (the torch conv /
matmul) and everything else stay FP32. Import this module only where torch is installed.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit

from pysim.numerics import outpath, s2fp8
from pysim.numerics.formats import (
    E4M3, E5M2, FP32, S2FP8_TARGET_MAX_LOG2, S2FP8_TARGET_MEAN_LOG2, TABLE_ENTRIES)

MODES = ("fp32", "s2fp8", "s2fp8-hw", "e5m2", "e4m3")
LABELS = {"fp32": "FP32", "s2fp8": "S2FP8", "s2fp8-hw": "S2FP8-HW", "e5m2": "E5M2",
          "e4m3": "E4M3"}

#: ml_dtypes rounds |x| up to the next E4M3 binade step past the largest finite value
#: (which does not exist: NaN) from the midpoint on, ties to even staying at max_finite.
E4M3_NAN_ABOVE = E4M3.max_finite + 2.0 ** (E4M3.emax - E4M3.frac_bits - 1)


def quantize_e5m2(x: torch.Tensor) -> torch.Tensor:
    """E5M2 round trip of a float32 tensor: RNE, subnormals, saturating to +-57344."""
    limit = E5M2.max_finite
    return torch.clamp(x, -limit, limit).to(torch.float8_e5m2).to(torch.float32)


def quantize_e4m3(x: torch.Tensor) -> torch.Tensor:
    """E4M3 (``float8_e4m3fn``) round trip as ml_dtypes does it: torch's conversion
    saturates to 448 where ml_dtypes gives NaN (sign kept), so those entries are patched."""
    q = x.to(torch.float8_e4m3fn).to(torch.float32)
    overflow = x.abs() > E4M3_NAN_ABOVE
    if bool(overflow.any()):
        q = torch.where(overflow, torch.copysign(torch.full_like(q, float("nan")), x), q)
    return q


class NonFiniteTensor(ValueError):
    """S2FP8 encode of a tensor holding NaN or Inf (pysim refuses it)."""


# ----------------------------------------------------------------- compiled passes
# The FP32 field layout as plain ints, an argument of the statistics loops: numba's disk
# cache is keyed by this file alone, so values from pysim.numerics.formats read as
# globals could survive a change there in a cached binary (the round-trip loop takes
# them as closure constants, which the cache key includes).
_FP32_FIELDS = (FP32.magnitude_mask, FP32.inf_bits, FP32.frac_bits, FP32.bias,
                FP32.width - 1)
#: Values per run of the statistics pass: one float64 product of their significands,
#: in [2^-23, 2) each (subnormals below 1), stays within [2^-736, 2^32] however the
#: multiplies are grouped.
_PRODUCT_RUN = 32
#: Below this many values a pass runs on the calling thread (a hand-off costs ~50 us).
_PARALLEL_MIN = 1 << 16


# fastmath "reassoc" only: LLVM may regroup the product of a run, which lets it vectorize
# the loop (the pass took 2.8 against 5.4 ms per 2M values on one core with 8 partial
# products multiplied in order); the error bound of _sum_bound holds for any grouping
# (one rounding per multiply), and no other flag (no contraction, no finite-math or
# flush-to-zero assumption) is given.
@njit(nogil=True, cache=True, fastmath={"reassoc"})
def _float_stats(bits, start, stop, fields):  # pragma: no cover - compiled
    """(count, smallest and largest magnitude bits, non-finite count, exponent sum,
    significand product as (mantissa in [0.5, 1), exponent)) of the finite nonzero
    values of bits[start:stop]: sum of log2|x| = exponent sum + log2(mantissa) + exponent.

    A value's significand is |x| / 2^(max(exponent field, 1) - bias) (no hidden bit for
    a subnormal); zeros and non-finite values contribute 1."""
    magnitude_mask, inf_bits, frac_bits, bias, _ = fields
    mask, inf, shift = np.uint32(magnitude_mask), np.uint32(inf_bits), np.uint32(frac_bits)
    frac_mask, frac_scale = np.uint32((1 << frac_bits) - 1), 2.0 ** -frac_bits
    count = 0
    nonfinite = 0
    low = mask
    high = np.uint32(0)
    exponents = 0
    mantissa, exponent = 1.0, 0
    for i in range(start, stop, _PRODUCT_RUN):
        product = 1.0
        for j in range(i, min(i + _PRODUCT_RUN, stop)):
            magnitude = bits[j] & mask
            exp_field = magnitude >> shift
            finite = magnitude < inf
            nonzero = (magnitude != 0) & finite
            nonfinite += not finite
            count += nonzero
            low = min(low, magnitude if nonzero else mask)
            high = max(high, magnitude if nonzero else np.uint32(0))
            exponents += (np.int64(max(exp_field, np.uint32(1))) - bias) if nonzero else 0
            significand = ((1.0 if exp_field > 0 else 0.0)
                           + np.float64(magnitude & frac_mask) * frac_scale)
            product *= significand if nonzero else 1.0
        fraction, product_exponent = math.frexp(product)
        mantissa, step = math.frexp(mantissa * fraction)
        exponent += product_exponent + step
    return count, int(low), int(high), nonfinite, exponents, mantissa, exponent


@njit(nogil=True, cache=True)
def _fixed_log2(magnitude, fields, base, slope, interp_bits, log2_frac_bits):  # pragma: no cover
    """:func:`pysim.numerics.outpath.log2_fixed` of one finite nonzero FP32 magnitude."""
    _, _, frac_bits, bias, _ = fields
    frac_mask = (1 << frac_bits) - 1
    exp_field = magnitude >> frac_bits
    frac = magnitude & frac_mask
    exponent = exp_field - bias
    if exp_field == 0:  # subnormal: normalized, the hidden bit made explicit
        length = 0
        while (frac >> length) != 0:
            length += 1
        exponent = length - (bias + frac_bits)
        frac = (frac << (frac_bits + 1 - length)) & frac_mask
    segment = frac >> interp_bits
    return ((exponent << log2_frac_bits) + base[segment]
            + ((slope[segment] * (frac & ((1 << interp_bits) - 1))) >> interp_bits))


@njit(nogil=True, cache=True, fastmath=False)
def _hw_stats(bits, start, stop, fields, base, slope, interp_bits,
              log2_frac_bits):  # pragma: no cover - compiled
    """(count, sum of the fixed-point log2, smallest and largest magnitude bits,
    non-finite count, fixed-point log2 of the largest) of bits[start:stop]:
    :func:`pysim.numerics.outpath.statistics` (and its
    :func:`~pysim.numerics.outpath.log2_fixed`) as one loop without branches; subnormals
    (rare) are added by a second loop when there are any."""
    magnitude_mask, inf_bits, frac_bits, bias, _ = fields
    frac_mask = (1 << frac_bits) - 1
    weight_mask = (1 << interp_bits) - 1
    count = 0
    nonfinite = 0
    subnormals = 0
    total = 0
    low = magnitude_mask
    high = 0
    for j in range(start, stop):
        magnitude = np.int64(bits[j]) & magnitude_mask
        finite = magnitude < inf_bits
        nonzero = (magnitude != 0) & finite
        normal = nonzero & (magnitude > frac_mask)
        nonfinite += not finite
        count += nonzero
        subnormals += nonzero & ~normal
        low = min(low, magnitude if nonzero else magnitude_mask)
        high = max(high, magnitude if nonzero else 0)
        frac = magnitude & frac_mask
        segment = frac >> interp_bits
        value = ((((magnitude >> frac_bits) - bias) << log2_frac_bits) + base[segment]
                 + ((slope[segment] * (frac & weight_mask)) >> interp_bits))
        total += value if normal else 0
    if subnormals:
        for j in range(start, stop):
            magnitude = np.int64(bits[j]) & magnitude_mask
            if magnitude != 0 and magnitude <= frac_mask:
                total += _fixed_log2(magnitude, fields, base, slope, interp_bits,
                                     log2_frac_bits)
    high_log2 = (_fixed_log2(high, fields, base, slope, interp_bits, log2_frac_bits)
                 if count else 0)
    return count, total, low, high, nonfinite, high_log2


@njit(nogil=True, cache=True)
def _bucket_codes(table, bucket_shift, first_code):  # pragma: no cover - compiled
    """first_code[b] = the largest c with table[c] <= b << bucket_shift (table sorted,
    table[0] = 0); returns the most table entries inside one bucket after its first
    magnitude: the correction steps :func:`_round_trip` needs."""
    code = 0
    corrections = 0
    last_entry = len(table) - 1
    for bucket in range(len(first_code)):
        low = bucket << bucket_shift
        while code < last_entry and table[code + 1] <= low:
            code += 1
        first_code[bucket] = code
        last = code
        while last < last_entry and table[last + 1] <= low + (1 << bucket_shift) - 1:
            last += 1
        corrections = max(corrections, last - code)
    return corrections


#: Buckets of the round-trip pass: the top 12 magnitude bits (8 exponent bits, 4 of
#: the fraction), so a bucket spans 1/16 binade: at most ceil(alpha / 4) + 1 codes.
_BUCKET_SHIFT = FP32.width - 1 - 12


def _round_trip_kernel():
    """The round-trip pass, compiled with the FP32 layout and the bucket shift as
    constants (closure variables): 3.0 against 4.1 ms per 2M values on one core when
    they were arguments. numba keys its disk cache by the closure's values too, so a
    change in pysim.numerics.formats cannot leave a stale binary."""
    mask = np.uint32(FP32.magnitude_mask)
    sign = np.uint32(FP32.width - 1)
    bucket_shift = np.uint32(_BUCKET_SHIFT)
    code_bits = np.uint32(outpath.SEARCH_STEPS)

    @njit(nogil=True, cache=True, fastmath=False)
    def round_trip(bits, start, stop, first_code, table, corrections, signed_values,
                   out):  # pragma: no cover - compiled
        """out[j] = signed_values[code | sign << 7], code the largest c with
        table[c] <= |bits[j]| (what the encoder's binary search finds in a sorted table).

        The encoder's 7-step search as a loop took 13-19 ns per value here (its branches
        are unpredictable); instead ``first_code[m >> bucket_shift]`` is the code of the
        bucket's smallest magnitude and ``corrections`` steps of
        ``code += m >= table[code + 1]`` (the most table entries inside one bucket)
        finish it: 1.5 ns per value on one core."""
        for j in range(start, stop):
            word = bits[j]
            magnitude = word & mask
            code = np.int32(first_code[magnitude >> bucket_shift])
            for _ in range(corrections):
                code += np.int32(magnitude >= table[code + 1])
            out[j] = signed_values[code | np.int32((word >> sign) << code_bits)]
    return round_trip


_round_trip = _round_trip_kernel()


_pool: ThreadPoolExecutor | None = None
_pool_workers = 0


def _ranges(size: int) -> list[tuple[int, int]]:
    """Consecutive index ranges for torch's thread count (one range for small tensors)."""
    workers = torch.get_num_threads()
    if workers <= 1 or size < _PARALLEL_MIN:
        return [(0, size)]
    step = -(-size // workers)
    return [(start, min(start + step, size)) for start in range(0, size, step)]


def _map_ranges(work, size: int) -> list:
    """``work(start, stop)`` over :func:`_ranges`, results in range order; the compiled
    loops release the GIL, so the ranges run on all of torch's threads."""
    global _pool, _pool_workers
    ranges = _ranges(size)
    if len(ranges) == 1:
        return [work(*ranges[0])]
    if _pool_workers < len(ranges):
        _pool = ThreadPoolExecutor(max_workers=len(ranges), thread_name_prefix="quantize")
        _pool_workers = len(ranges)
    return list(_pool.map(lambda r: work(*r), ranges))


def _bits_of(x: torch.Tensor) -> np.ndarray:
    """The float32 bit patterns of ``x`` as a flat uint32 numpy view (a copy only if
    ``x`` is not contiguous)."""
    return x.detach().contiguous().view(torch.int32).numpy().reshape(-1).view(np.uint32)


def _refuse_nonfinite(nonfinite: int, mode: str) -> None:
    if nonfinite:
        raise NonFiniteTensor(f"cannot encode a tensor holding NaN or Inf in {mode}: "
                              f"{nonfinite} non-finite value(s)")


# --------------------------------------------------------- s2fp8: pysim's statistics
#: Unit roundoff of binary64.
_U = 2.0 ** -53
#: Bound on numpy's float64 log2 error per value, in ulps: numpy's accuracy tests hold
#: it to 1 ulp (umath-validation-set-log2.csv, SIMD paths included); 4 is the margin.
_LOG2_ULPS = 4
#: max - mean of the encoded log2 magnitudes: alpha = _SPREAD / (m - mu) unless limited
_SPREAD = S2FP8_TARGET_MAX_LOG2 - S2FP8_TARGET_MEAN_LOG2


def _float_moments(bits: np.ndarray):
    parts = _map_ranges(lambda start, stop: _float_stats(bits, start, stop, _FP32_FIELDS),
                        bits.size)
    count = sum(p[0] for p in parts)
    low = min(p[1] for p in parts)
    high = max(p[2] for p in parts)
    nonfinite = sum(p[3] for p in parts)
    exponents = sum(p[4] + p[6] for p in parts)
    log2_mantissas = [math.log2(p[5]) for p in parts]
    return count, low, high, nonfinite, exponents, log2_mantissas


def _sum_bound(count: int, size: int, magnitude_bound: float, approx: float,
               ranges: int) -> float:
    """Bound on |pysim's float64 sum of log2|x| - ``approx``|.

    pysim's sum: each numpy log2 within ``_LOG2_ULPS`` ulp (2 u each), then numpy's
    pairwise sum (error <= depth * u * sum|l|; depth bounded generously by 64 +
    2 log2(n) + n / 4096, which also covers a sum split into 8192-value chunks added in
    turn). ``approx``: one rounding per multiply of the significand products (at most
    ``count``, plus one per run of ``_PRODUCT_RUN`` values; each <= u relative, so
    <= u / ln 2 in log2), the final log2 per range (<= 4 u) and the float additions
    (<= u |approx| each, at most ``ranges`` + 2)."""
    depth = 2 * _LOG2_ULPS + 64 + 2 * math.log2(max(count, 2)) + count / 4096
    pysim = depth * _U * count * magnitude_bound
    products = (count + 2 * (size // _PRODUCT_RUN + ranges)) * _U / math.log(2)
    return 2 * (pysim + products + 4 * _U * ranges + (ranges + 2) * _U * abs(approx))


def _f32_if_stable(lo: float, hi: float) -> np.float32 | None:
    """The float32 both ``lo`` and ``hi`` (and everything between, widened by 2^-45
    relative for the few-ulp wiggle of a float64 evaluation) round to, or None."""
    a, b = min(lo, hi), max(lo, hi)
    ends = (a - abs(a) * 2.0 ** -45, b + abs(b) * 2.0 ** -45)
    first, last = np.float32(ends[0]), np.float32(ends[1])
    return first if first == last else None


def _exact_alpha_beta(count, total_lo, total_hi, high_log2):
    """pysim's float32 (alpha, beta) if they are the same for every float64 sum in
    [total_lo, total_hi], else None.

    ``mu = min(sum / count, m)`` is nondecreasing in the sum. If both ends take the same
    branch of :func:`~pysim.numerics.s2fp8.squeeze_shift` (mu below m or not; the same
    sign of mu; the same winner of 15 / (m - mu) against the float32 limit) then alpha
    and beta are monotone in mu in exact arithmetic (15 / (m - mu); -15 mu / (m - mu);
    the limit c / |mu| and its beta -c sign(mu)), and their float64 evaluations are
    within a few ulp of that, so equal float32 roundings at both widened ends hold for
    every sum in between."""
    mus = [min(total / count, high_log2) for total in (total_lo, total_hi)]
    if (mus[0] < high_log2) != (mus[1] < high_log2) or (mus[0] < 0) != (mus[1] < 0) \
            or 0.0 in mus:
        return None
    if mus[0] < high_log2:
        limited = [s2fp8.squeeze_limit(mu) < _SPREAD / (high_log2 - mu) for mu in mus]
        near = [abs(s2fp8.squeeze_limit(mu) * (high_log2 - mu) / _SPREAD - 1) < 2.0 ** -40
                for mu in mus]
        if limited[0] != limited[1] or any(near):
            return None
    (alpha_lo, beta_lo), (alpha_hi, beta_hi) = (s2fp8.squeeze_shift(mu, high_log2)
                                                for mu in mus)
    alpha = _f32_if_stable(alpha_lo, alpha_hi)
    beta = _f32_if_stable(beta_lo, beta_hi)
    if alpha is None or beta is None:
        return None
    return alpha, beta


def _log2_of_magnitudes(*magnitudes: int) -> np.ndarray:
    """numpy's float64 log2 of FP32 magnitude bits through the same array path as pysim's
    blocks (float32 -> float64, ``np.log2`` on a contiguous array)."""
    values = np.array(magnitudes, np.uint32).view(np.float32).astype(np.float64)
    return np.log2(values)


def s2fp8_alpha_beta(x: torch.Tensor, bits: np.ndarray | None = None):
    """The float32 alpha and beta :func:`pysim.numerics.s2fp8.encode` stores for ``x``."""
    bits = _bits_of(x) if bits is None else bits
    count, low, high, nonfinite, exponents, log2_mantissas = _float_moments(bits)
    _refuse_nonfinite(nonfinite, "s2fp8")
    if count == 0:
        alpha, beta = s2fp8.squeeze_shift(float("nan"), float("nan"))
        return np.float32(alpha), np.float32(beta)
    low_log2, high_log2 = (float(v) for v in _log2_of_magnitudes(low, high))
    if low == high:
        alpha, beta = s2fp8.squeeze_shift(high_log2, high_log2)
        return np.float32(alpha), np.float32(beta)
    approx = float(exponents) + math.fsum(log2_mantissas)
    bound = _sum_bound(count, bits.size, max(abs(low_log2), abs(high_log2)), approx,
                       len(log2_mantissas))
    exact = _exact_alpha_beta(count, math.nextafter(approx - bound, -math.inf),
                              math.nextafter(approx + bound, math.inf), high_log2)
    if exact is not None:
        return exact
    _, _, alpha, beta = s2fp8.stats(bits.view(np.float32))
    return np.float32(alpha), np.float32(beta)


#: Largest finite E5M2 magnitude code (pysim saturates there) and the magnitude bits of
#: the largest finite FP32 value.
_MAX_CODE = outpath.MAX_FINITE_CODE
_LARGEST_FINITE = FP32.inf_bits - 1


def _pysim_codes(magnitudes: np.ndarray, alpha, beta) -> np.ndarray:
    """pysim's E5M2 magnitude codes of FP32 magnitude bits under (alpha, beta)."""
    values = magnitudes.astype(np.uint32).view(np.float32)
    return s2fp8.encode_with(values, alpha, beta) & np.uint8(TABLE_ENTRIES - 1)


def s2fp8_threshold_table(alpha, beta) -> np.ndarray:
    """128 uint32: entry j (1..0x7B) the smallest FP32 magnitude that pysim's
    :func:`~pysim.numerics.s2fp8.encode_with` gives a magnitude code >= j (or 2^31 if no
    finite value does); entry 0 is 0, entries 0x7C.. are 2^31 (saturation).

    Starts from the output path's float64 estimate and checks every entry t against
    pysim on t and t - 1; entries that fail are found by a binary search with pysim."""
    table = outpath.threshold_table(alpha, beta).astype(np.int64)
    codes = np.arange(1, _MAX_CODE + 1)
    guess = np.clip(table[1:_MAX_CODE + 1], 1, _LARGEST_FINITE + 1)
    probe = np.clip(np.concatenate([guess - 1, guess]), 0, _LARGEST_FINITE)
    found = _pysim_codes(probe, alpha, beta).astype(np.int64)
    below, at = found[:len(codes)], found[len(codes):]
    # guess is right if its predecessor has a smaller code and it reaches j (or, past
    # the largest finite magnitude, nothing reaches j)
    right = np.where(guess > _LARGEST_FINITE, at < codes,
                     ((guess == 1) | (below < codes)) & (at >= codes))
    entries = np.where(guess > _LARGEST_FINITE, outpath.UNREACHABLE, guess)
    if not right.all():
        entries[~right] = _search_thresholds(codes[~right], alpha, beta)
    result = np.full(TABLE_ENTRIES, outpath.UNREACHABLE, np.int64)
    result[0] = 0
    result[1:_MAX_CODE + 1] = entries
    return result.astype(np.uint32)


def _search_thresholds(codes: np.ndarray, alpha, beta) -> np.ndarray:
    """Smallest magnitude bits in [1, largest finite] with pysim code >= each of
    ``codes``, by bisection (2^31 where none): pysim's code is nondecreasing in |x|."""
    lo = np.ones(codes.size, np.int64)
    hi = np.full(codes.size, _LARGEST_FINITE + 1, np.int64)   # invariant: answer in [lo, hi]
    while (lo < hi).any():
        mid = (lo + hi) // 2
        reached = _pysim_codes(np.minimum(mid, _LARGEST_FINITE), alpha, beta) >= codes
        hi = np.where(reached & (lo < hi), mid, hi)
        lo = np.where(~reached & (lo < hi), mid + 1, lo)
    return np.where(lo > _LARGEST_FINITE, outpath.UNREACHABLE, lo)


# ------------------------------------------------------------------- round trip
def _round_trip_through(x: torch.Tensor, bits: np.ndarray, table: np.ndarray,
                        alpha, beta) -> torch.Tensor:
    """Each value encoded by the threshold ``table`` (128 sorted entries, the first 0)
    and decoded by the decode table of (alpha, beta), with its sign (so -0.0 stays
    -0.0)."""
    decode = s2fp8.decode_table(alpha, beta)
    signed = np.concatenate([decode, decode ^ np.uint32(FP32.sign_mask)]).view(np.float32)
    # table[code + 1] must exist for every code: one unreachable entry past the end
    padded = np.append(np.asarray(table, np.uint32), np.uint32(outpath.UNREACHABLE))
    first_code = np.empty(1 << (FP32.width - 1 - _BUCKET_SHIFT), np.uint8)
    corrections = _bucket_codes(padded[:-1], _BUCKET_SHIFT, first_code)
    out = np.empty(bits.size, np.float32)
    _map_ranges(lambda start, stop: _round_trip(
        bits, start, stop, first_code, padded, corrections, signed, out), bits.size)
    return torch.from_numpy(out).reshape(x.shape)


def quantize_s2fp8(x: torch.Tensor) -> torch.Tensor:
    """S2FP8 round trip of a float32 tensor, bit for bit
    ``s2fp8.decode(s2fp8.encode(x))`` with statistics of this tensor (see the module
    docstring for how it avoids pysim's per-value log2 and exp2)."""
    bits = _bits_of(x)
    alpha, beta = s2fp8_alpha_beta(x, bits)
    return _round_trip_through(x, bits, s2fp8_threshold_table(alpha, beta), alpha, beta)


_LOG2_BASE, _LOG2_SLOPE = outpath.log2_segments(outpath.DEFAULT_LOG2)


def hw_statistics(bits: np.ndarray) -> outpath.HwStats:
    """:func:`pysim.numerics.outpath.statistics` of FP32 bits (default log2 config), as
    one compiled pass per thread: every field is an exact integer, so the split changes
    nothing."""
    config = outpath.DEFAULT_LOG2
    parts = _map_ranges(lambda start, stop: _hw_stats(
        bits, start, stop, _FP32_FIELDS, _LOG2_BASE, _LOG2_SLOPE, config.interp_bits,
        config.frac_bits), bits.size)
    count = sum(p[0] for p in parts)
    highest = max(parts, key=lambda p: p[3])   # the range holding the largest magnitude
    return outpath.HwStats(
        count=count, total=sum(p[1] for p in parts), max_magnitude=highest[3],
        min_magnitude=min(p[2] for p in parts) if count else 0, max_log2=highest[5],
        nonfinite=sum(p[4] for p in parts))


def quantize_s2fp8_hw(x: torch.Tensor) -> torch.Tensor:
    """The hardware's S2FP8 round trip, bit for bit ``s2fp8.decode`` of
    :func:`pysim.numerics.outpath.encode_hw` (x): the output path's statistics, scalar
    step and threshold encoder, then the decode table of its float32 alpha and beta."""
    bits = _bits_of(x)
    stats = hw_statistics(bits)
    _refuse_nonfinite(stats.nonfinite, "s2fp8-hw")
    alpha, beta = outpath.scalar_step(stats)
    return _round_trip_through(x, bits, outpath.threshold_table(alpha, beta), alpha, beta)


QUANTIZERS = {"s2fp8": quantize_s2fp8, "s2fp8-hw": quantize_s2fp8_hw,
              "e5m2": quantize_e5m2, "e4m3": quantize_e4m3}


class GradientFlushCounter:
    """Per layer: nonzero incoming-gradient entries, and how many of them the quantizer
    flushed to zero (the underflow that stops plain E5M2 training)."""

    def __init__(self):
        self.nonzero: dict[str, int] = {}
        self.flushed: dict[str, int] = {}

    def register(self, layer: str) -> None:
        """Give ``layer`` its place: reports list layers in registration (forward) order."""
        self.nonzero.setdefault(layer, 0)
        self.flushed.setdefault(layer, 0)

    def add(self, layer: str, grad: torch.Tensor, quantized: torch.Tensor) -> None:
        # Every quantizer maps zero to zero, so the flushed entries are the nonzero
        # entries lost: two counting passes instead of four mask passes.
        nonzero = int(torch.count_nonzero(grad))
        self.nonzero[layer] = self.nonzero.get(layer, 0) + nonzero
        flushed = nonzero - int(torch.count_nonzero(quantized))
        self.flushed[layer] = self.flushed.get(layer, 0) + flushed

    def fractions(self) -> dict[str, float]:
        """layer -> flushed / nonzero (0 for a layer that never saw a nonzero gradient)."""
        return {layer: (self.flushed[layer] / n if n else 0.0)
                for layer, n in self.nonzero.items()}


def _saved_operands_and_gradient(ctx, grad):
    """The backward rule of both quantized GEMMs: the saved quantized operands, and the
    incoming gradient quantized once (used by dgrad and wgrad), its flushes counted."""
    qx, qw = ctx.saved_tensors
    qgrad = ctx.quantize(grad)
    if ctx.counter is not None:
        ctx.counter.add(ctx.name, grad, qgrad)
    return qx, qw, qgrad


class _QuantizedConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, quantize, padding, counter, name):
        qx, qw = quantize(x), quantize(weight)
        ctx.save_for_backward(qx, qw)
        ctx.quantize, ctx.padding, ctx.counter, ctx.name = quantize, padding, counter, name
        return torch.nn.functional.conv2d(qx, qw, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        qx, qw, qgrad = _saved_operands_and_gradient(ctx, grad)
        dgrad, wgrad, _ = torch.ops.aten.convolution_backward(
            qgrad, qx, qw, None, [1, 1], [ctx.padding] * 2, [1, 1], False, [0, 0], 1,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False])
        return dgrad, wgrad, None, None, None, None


class _QuantizedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, quantize, counter, name):
        qx, qw = quantize(x), quantize(weight)
        ctx.save_for_backward(qx, qw)
        ctx.quantize, ctx.counter, ctx.name = quantize, counter, name
        return qx @ qw.t()

    @staticmethod
    def backward(ctx, grad):
        qx, qw, qgrad = _saved_operands_and_gradient(ctx, grad)
        dgrad = qgrad @ qw if ctx.needs_input_grad[0] else None
        wgrad = qgrad.t() @ qx if ctx.needs_input_grad[1] else None
        return dgrad, wgrad, None, None, None


class _QuantizationPoint:
    """What a quantized layer keeps: its ``quantize`` function (None: plain FP32), the
    gradient-flush ``counter`` and the ``name`` it records under (registered once)."""

    def _set_quantization(self, quantize, counter, name) -> None:
        self.quantize, self.counter, self.name = quantize, counter, name
        if counter is not None and quantize is not None:
            counter.register(name)


class QuantizedConv2d(_QuantizationPoint, torch.nn.Conv2d):
    """A stride-1, bias-free 3x3 (or k x k) convolution whose GEMM operands go through
    ``quantize`` (None: plain FP32). ``counter`` records gradient flushes under ``name``."""

    def __init__(self, in_channels, out_channels, kernel_size=3, *, quantize=None,
                 counter=None, name="conv"):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                         bias=False)
        self._set_quantization(quantize, counter, name)

    def forward(self, x):
        if self.quantize is None:
            return super().forward(x)
        return _QuantizedConv.apply(x, self.weight, self.quantize, self.padding[0],
                                    self.counter, self.name)


class QuantizedLinear(_QuantizationPoint, torch.nn.Linear):
    """A Linear layer whose GEMM operands go through ``quantize``; the bias is added in FP32."""

    def __init__(self, in_features, out_features, *, quantize=None, counter=None,
                 name="fc"):
        super().__init__(in_features, out_features)
        self._set_quantization(quantize, counter, name)

    def forward(self, x):
        if self.quantize is None:
            return super().forward(x)
        return _QuantizedLinear.apply(x, self.weight, self.quantize, self.counter,
                                      self.name) + self.bias
