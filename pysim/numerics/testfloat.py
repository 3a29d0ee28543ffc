"""TestFloat-style FP32 operand pairs for multiply and add, by family, vectorized and seeded.

Berkeley TestFloat does not sample bit patterns uniformly: it builds operands from
exponent and significand patterns chosen to hit the hard cases. This module does the same
for binary32 multiply and add; the vectors drive the golden model against SoftFloat and
the RTL against the golden model.

Families (``FAMILIES``):
- ``specials``: every pair of +-0, +-min/max subnormal, +-min/max normal, +-1, +-Inf,
  quiet and signalling NaN.
- ``random``: uniformly random bit patterns (all binades, all classes).
- ``subnormal``: subnormal operands, and normal operands whose result is subnormal or
  underflows to zero.
- ``min_max``: operands at and next to the smallest and largest normal, overflow to Inf.
- ``carry``: all-ones and near-all-ones significands, so that rounding carries into the
  next binade.
- ``ties``: results exactly halfway between two FP32 numbers (short significands for
  multiply, half-ulp addends for add).
- ``cancellation`` (add: ``b`` within a few ulps of ``-a``, exact zeros included;
  multiply: operands within a few ulps of reciprocals, products near 1).
"""
from __future__ import annotations

import numpy as np

from pysim.numerics.formats import FP32

FAMILIES = ("specials", "random", "subnormal", "min_max", "carry", "ties", "cancellation")
OPS = ("mul", "add")

_FRAC = FP32.frac_bits
_BIAS = FP32.bias
_SIGN = np.uint32(FP32.sign_mask)

SPECIAL_VALUES = np.array([
    0x00000000,                  # +0
    0x00000001,                  # min subnormal
    0x007FFFFF,                  # max subnormal
    0x00800000,                  # min normal
    0x00800001,
    0x3F800000,                  # 1.0
    0x3FFFFFFF,                  # just below 2
    0x7F7FFFFF,                  # max normal
    FP32.inf_bits,               # Inf
    FP32.canonical_nan_bits,     # quiet NaN
    FP32.inf_bits | 1,           # signalling NaN
    0x7FFFFFFF,                  # quiet NaN with full payload
], dtype=np.uint32)


def _pack(sign, biased_exp, frac) -> np.ndarray:
    sign = np.asarray(sign, dtype=np.uint32) & np.uint32(1)
    biased_exp = np.clip(np.asarray(biased_exp, dtype=np.int64), 0, FP32.exp_max_code)
    frac = np.asarray(frac, dtype=np.int64) & FP32.frac_mask
    return ((sign << np.uint32(31)) | (biased_exp.astype(np.uint32) << np.uint32(_FRAC))
            | frac.astype(np.uint32))


def _specials() -> tuple[np.ndarray, np.ndarray]:
    values = np.concatenate([SPECIAL_VALUES, SPECIAL_VALUES | _SIGN])
    a, b = np.meshgrid(values, values, indexing="ij")
    return a.ravel(), b.ravel()


def _random(rng, n):
    return (rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32),
            rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32))


def _subnormal(rng, n, op):
    sign = rng.integers(0, 2, (2, n))
    frac = rng.integers(0, 1 << _FRAC, (2, n))
    if op == "add":
        # both subnormal, or one subnormal and one tiny normal
        exp = np.stack([rng.integers(0, 3, n), rng.integers(0, 2, n)])
        return _pack(sign[0], exp[0], frac[0]), _pack(sign[1], exp[1], frac[1])
    # products around the subnormal range: e_a + e_b (unbiased) in -152..-124
    exp_sum = rng.integers(-152, -123, n)
    exp_a = rng.integers(-126, 1, n)
    exp_b = exp_sum - exp_a
    # half of the pairs put a subnormal operand in
    sub = rng.integers(0, 2, n).astype(bool)
    biased_a = np.where(sub, 0, exp_a + _BIAS)
    biased_b = np.where(sub, rng.integers(_BIAS, _BIAS + 24, n), exp_b + _BIAS)
    return _pack(sign[0], biased_a, frac[0]), _pack(sign[1], biased_b, frac[1])


def _min_max(rng, n, op):
    sign = rng.integers(0, 2, (2, n))
    near = rng.integers(-2, 3, (2, n))
    top = rng.integers(0, 2, (2, n)).astype(bool)
    # near the largest finite (0x7F7FFFFF) or the smallest normal (0x00800000)
    bits = np.where(top, 0x7F7FFFFF + np.minimum(near, 0), 0x00800000 + near).astype(np.int64)
    if op == "mul":
        # large x moderate -> overflow or not; small x moderate -> underflow or not
        other_exp = np.where(top[0], rng.integers(_BIAS - 2, _BIAS + 3, n),
                             rng.integers(_BIAS - 3, _BIAS + 2, n))
        other = _pack(sign[1], other_exp, rng.integers(0, 1 << _FRAC, n))
        return (bits[0].astype(np.uint32) | (sign[0].astype(np.uint32) << np.uint32(31))), other
    return tuple((bits[i].astype(np.uint32) | (sign[i].astype(np.uint32) << np.uint32(31)))
                 for i in range(2))


def _carry(rng, n, op):
    sign = rng.integers(0, 2, (2, n))
    exp = rng.integers(1, FP32.exp_max_code, (2, n))
    # significands with long runs of ones at the bottom
    ones = rng.integers(1, _FRAC + 1, (2, n))
    frac = ((1 << ones) - 1) << (_FRAC - ones)
    frac = frac | ((1 << np.maximum(ones - 3, 0)) - 1)
    frac = np.where(rng.integers(0, 2, (2, n)).astype(bool), frac, FP32.frac_mask
                    - rng.integers(0, 4, (2, n)))
    if op == "add":
        exp[1] = np.clip(exp[0] - rng.integers(0, 27, n), 0, FP32.exp_max_code - 1)
        sign[1] = sign[0]
    else:
        exp[1] = np.clip(2 * _BIAS - exp[0] + rng.integers(-3, 4, n), 1, FP32.exp_max_code - 1)
    return _pack(sign[0], exp[0], frac[0]), _pack(sign[1], exp[1], frac[1])


def _ties(rng, n, op):
    sign = rng.integers(0, 2, (2, n))
    if op == "mul":
        # two 13-bit odd significands: 25- or 26-bit products, often exactly halfway
        width = rng.integers(12, 14, (2, n))
        sig = rng.integers(0, 1 << 13, (2, n)) | 1 | (1 << (width - 1))
        frac = (sig << (_FRAC + 1 - width)) & FP32.frac_mask
        exp = np.stack([rng.integers(_BIAS - 40, _BIAS + 40, n),
                        rng.integers(_BIAS - 40, _BIAS + 40, n)])
        # some tie in the subnormal range
        low = rng.integers(0, 8, n) == 0
        exp[0] = np.where(low, rng.integers(1, 30, n), exp[0])
        exp[1] = np.where(low, rng.integers(_BIAS - 45, _BIAS - 10, n), exp[1])
        return _pack(sign[0], exp[0], frac[0]), _pack(sign[1], exp[1], frac[1])
    exp_a = rng.integers(26, FP32.exp_max_code - 1, n)
    frac_a = rng.integers(0, 1 << _FRAC, n)
    # b = (odd multiple of) half an ulp of a, same or opposite sign
    shift = rng.integers(1, 3, n)
    exp_b = exp_a - _FRAC - shift
    frac_b = np.where(rng.integers(0, 2, n).astype(bool), 0, rng.integers(0, 2, n) << (_FRAC - 1))
    return _pack(sign[0], exp_a, frac_a), _pack(sign[1], exp_b, frac_b)


def _cancellation(rng, n, op):
    sign = rng.integers(0, 2, n)
    exp = rng.integers(1, FP32.exp_max_code - 1, n)
    frac = rng.integers(0, 1 << _FRAC, n)
    a = _pack(sign, exp, frac)
    if op == "add":
        delta = rng.integers(-4, 5, n)
        near = (a.astype(np.int64) + delta).clip(0, 0x7F7FFFFF | FP32.sign_mask)
        b = (near.astype(np.uint32) & np.uint32(FP32.magnitude_mask)) | ((~a) & _SIGN)
        # a quarter: cancellation against a value one binade apart
        far = rng.integers(0, 4, n) == 0
        b = np.where(far, _pack(1 - sign, exp - 1, FP32.frac_mask - rng.integers(0, 8, n)), b)
        return a, b
    # reciprocals: (1 + f) * ~(1 / (1 + f)) lands next to 1.0
    value = a.view(np.float32).astype(np.float64)
    with np.errstate(over="ignore", divide="ignore"):
        recip = (1.0 / value).astype(np.float32).view(np.uint32)
    recip = (recip.astype(np.int64) + rng.integers(-2, 3, n)).astype(np.uint32)
    return a, recip


def fp32_pairs(op: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At least ``n`` operand pairs for ``op`` ('mul' or 'add'): (a_bits, b_bits, family_index).

    All specials pairs come first; the rest is split evenly over the other families
    (operand order swapped in a random half). ``family_index`` indexes ``FAMILIES``.
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    rng = np.random.default_rng(seed)
    spec_a, spec_b = _specials()
    parts_a, parts_b, labels = [spec_a], [spec_b], [np.zeros(spec_a.size, np.int64)]
    generators = {"random": lambda m: _random(rng, m),
                  "subnormal": lambda m: _subnormal(rng, m, op),
                  "min_max": lambda m: _min_max(rng, m, op),
                  "carry": lambda m: _carry(rng, m, op),
                  "ties": lambda m: _ties(rng, m, op),
                  "cancellation": lambda m: _cancellation(rng, m, op)}
    per_family = max(0, -(-(n - spec_a.size) // len(generators)))
    for index, family in enumerate(FAMILIES[1:], start=1):
        a, b = generators[family](per_family)
        swap = rng.integers(0, 2, per_family).astype(bool)
        parts_a.append(np.where(swap, b, a).astype(np.uint32))
        parts_b.append(np.where(swap, a, b).astype(np.uint32))
        labels.append(np.full(per_family, index, np.int64))
    return np.concatenate(parts_a), np.concatenate(parts_b), np.concatenate(labels)
