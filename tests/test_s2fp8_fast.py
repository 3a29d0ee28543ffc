"""The fast paths of the S2FP8 encoder give the bits of the per-value definition (issue 14).

pysim.numerics.s2fp8 finds a large float32 tensor's codes among the magnitudes at which
the code steps up (a binary search per code, then a table per value), and its min and
max log2 from the bit patterns of the extreme magnitudes. Here both are compared with a
plain numpy reference of the definition on tensors large enough to take those paths:
log2 of |x| in float64, the nonzero entries' sum, min and max, alpha and beta stored as
float32, exp2(alpha * log2|x| + beta) rounded to E5M2 with x's sign.
"""
from __future__ import annotations

import numpy as np
import pytest

from pysim.numerics import s2fp8
from pysim.numerics.fp8 import E5M2_VALUES, e5m2_encode
from pysim.numerics.s2fp8 import encode, encode_with, stats

#: float32 tensors this large take the step-search path (s2fp8._BISECT_MIN_SIZE)
SIZE = s2fp8._BISECT_MIN_SIZE + 4099


def reference(x, alpha=None, beta=None):
    """(codes, alpha32, beta32, stats) by the definition, numpy only."""
    x = np.asarray(x)
    with np.errstate(divide="ignore"):
        log2_mag = np.log2(np.abs(x).astype(np.float64))
    nonzero = log2_mag[log2_mag != -np.inf]
    moments = ((nonzero.size, float(np.sum(nonzero)), float(nonzero.min()), float(nonzero.max()))
               if nonzero.size else (0, 0.0, np.inf, -np.inf))
    statistics = s2fp8._stats_from_moments(*moments)
    if alpha is None:
        alpha, beta = np.float32(statistics[2]), np.float32(statistics[3])
    scaled = np.multiply(log2_mag, float(alpha))
    scaled += float(beta)
    with np.errstate(over="ignore"):
        magnitude = np.exp2(scaled)
    codes = e5m2_encode(magnitude) | (np.signbit(x).astype(np.uint8) << np.uint8(7))
    return codes, np.float32(alpha), np.float32(beta), statistics


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(14)
    n = SIZE
    sign = rng.choice(np.array([-1.0, 1.0]), n)
    with_zeros = rng.standard_normal(n)
    with_zeros[rng.random(n) < 0.3] = 0.0
    with_zeros[rng.random(n) < 0.1] = -0.0
    # magnitudes exactly on E5M2 values and on the midpoints between them (ties)
    grid = E5M2_VALUES[1:0x7C].astype(np.float64)
    ties = np.concatenate([grid, (grid[:-1] + grid[1:]) / 2])
    return {
        "normal": rng.standard_normal(n),
        "loguniform_float32_range": np.exp2(rng.uniform(-149.0, 127.9, n)) * sign,
        "subnormal_float32": rng.standard_normal(n) * 1e-41,
        "with_zeros": with_zeros,
        "nearly_constant": 3.0 + rng.standard_normal(n) * 1e-6,  # alpha at its limit
        "two_magnitudes": rng.choice(np.array([0.25, -4.0]), n),
        # one magnitude (min == max) and zeros: the mean of n equal log2 values may round
        "one_magnitude_and_zeros": rng.choice(np.array([0.0, 3.0, -3.0, -0.0]), n),
        "e5m2_values_and_ties": rng.choice(ties, n) * sign,
        "gradients_tiny": rng.standard_normal(n) * np.exp2(rng.uniform(-40, -10, n)),
    }


TENSORS = {name: x.astype(np.float32) for name, x in _tensors().items()}


@pytest.mark.parametrize("name", sorted(TENSORS))
def test_large_float32_encode_is_the_definition(name):
    x = TENSORS[name]
    codes, alpha, beta, statistics = reference(x)
    tensor = encode(x)
    assert (tensor.alpha, tensor.beta) == (alpha, beta), name
    mismatch = np.flatnonzero(tensor.codes != codes)
    assert not mismatch.size, (f"{name}: {mismatch.size} codes differ, first at {mismatch[0]}: "
                               f"x={x[mismatch[0]]!r} code {tensor.codes[mismatch[0]]:#x}, "
                               f"definition {codes[mismatch[0]]:#x}")
    assert repr(stats(x)) == repr(statistics), name


@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (0.75, 3.25), (2.5, -7.0), (40.0, 1.0),
                                         (2.0 ** -6, 2.0)])
def test_encode_with_any_statistics_is_the_definition(alpha, beta):
    """encode_with on a wide float32 tensor: steps at every code, saturation, flush to
    zero; the last alpha is below the step search's minimum (the per-value path)."""
    x = TENSORS["loguniform_float32_range"]
    codes = reference(x, alpha, beta)[0]
    assert np.array_equal(encode_with(x, alpha, beta), codes)


def test_both_code_paths_agree_on_a_shuffled_tensor_with_every_code():
    rng = np.random.default_rng(2020)
    x = TENSORS["e5m2_values_and_ties"].copy()
    rng.shuffle(x)
    log2_mag, moments = s2fp8._log2_and_moments(x)
    _, _, alpha, beta = s2fp8._stats_from_moments(*moments)
    alpha, beta = float(np.float32(alpha)), float(np.float32(beta))
    fast = s2fp8._codes(x, log2_mag, alpha, beta)
    per_value = s2fp8._codes(x, log2_mag, alpha, beta, through_exp2=True)
    assert np.array_equal(fast, per_value)
    assert len(np.unique(fast & 0x7F)) > 100  # the tensor reaches most codes


def test_nan_in_a_large_float32_tensor_is_named():
    x = TENSORS["normal"].copy()
    x[SIZE - 5] = np.nan
    with pytest.raises(ValueError, match=rf"1 non-finite value\(s\), first at index \({SIZE - 5},\)"):
        encode(x)
