"""The cycle model's arithmetic: exact at any size (no int64 wrap-around), and its inputs
validated (issue 9, items 1 and 3)."""
from __future__ import annotations

import numpy as np
import pytest

from pysim.errors import ShapeError
from pysim.perf import arch
from pysim.perf.cycles import breakdown, gemm_cycles, gemm_schedule
from pysim.perf.gemm import Gemm
from pysim.perf.tiler import gemm_arrays, tile_counts


def closed_form(m, k, n, rows, cols, count=1):
    """The documented formula in Python ints: K*T + (T-1)*max(0, S-K) + D."""
    tiles = -(-m // rows) * -(-n // cols) * count
    spacing = max(rows, cols)
    drain = (rows - 1) + (cols - 1) + arch.PIPELINE_CYCLES
    return tiles * k + (tiles - 1) * max(0, spacing - k) + drain


def test_gemm_cycles_exact_at_any_size():
    assert gemm_cycles(10**7, 10**7, 10**7, 4, 4) == closed_form(10**7, 10**7, 10**7, 4, 4)
    assert gemm_cycles(10**7, 10**7, 10**7, 4, 4) == 62_500_000_000_000_000_000 + 3 + 3 + 5


def test_breakdown_does_not_wrap():
    m = np.array([10**7, 3, 10**9], np.int64)
    k = np.array([10**7, 5, 2**32 - 1], np.int64)
    n = np.array([10**7, 7, 10**9], np.int64)
    count = np.array([1, 10**15, 10**6], np.int64)
    b = breakdown(m, k, n, 4, 4, count)
    for i in range(3):
        expected = closed_form(int(m[i]), int(k[i]), int(n[i]), 4, 4, int(count[i]))
        assert int(b.array_cycles[i]) == expected
        assert int(b.total[i]) == expected + arch.TABLE_LOAD_CYCLES
    assert int(b.total.sum()) == sum(closed_form(int(m[i]), int(k[i]), int(n[i]), 4, 4,
                                                 int(count[i])) + arch.TABLE_LOAD_CYCLES
                                     for i in range(3))
    assert (np.asarray(b.tiles) > 0).all() and (np.asarray(b.steady) > 0).all()


def test_small_shapes_stay_int64():
    """The common case keeps fast int64 arrays."""
    b = breakdown(np.array([64, 128]), np.array([3, 9]), np.array([5, 6]), 16, 16)
    assert b.steady.dtype == np.int64 and b.total.dtype == np.int64


def test_gemm_arrays_and_tile_counts_do_not_wrap():
    gemms = [Gemm("f", "forward", 10**7, 10**7, 10**7), Gemm("r", "forward", 3, 4, 5, 10**15)]
    shapes = gemm_arrays(gemms)
    assert [int(v) for v in shapes.macs] == [10**21, 60 * 10**15]
    assert int(tile_counts(10**10, 10**10, 1, 1)) == 10**20
    big = gemm_arrays([Gemm("huge", "forward", 2**70, 1, 1)])
    assert int(big.m[0]) == 2**70


@pytest.mark.parametrize("k, message", [
    (-100, "K must be >= 1, got -100"),
    (0, "K must be >= 1, got 0"),
    (0.5, "K must be an integer, got 0.5"),
    ("7", "K must be an integer, got '7'"),
    (True, "K must be an integer, got True"),
    (2**32, f"K must be <= {2**32 - 1}"),
    (10**30, f"K must be <= {2**32 - 1}"),
])
def test_gemm_cycles_checks_k(k, message):
    with pytest.raises(ShapeError, match=message):
        gemm_cycles(4, k, 4, 4, 4)
    with pytest.raises(ShapeError, match=message.split(",")[0]):
        gemm_schedule(4, k, 4, 4, 4)


@pytest.mark.parametrize("name, args", [
    ("M", (0, 4, 4)), ("M", (2.0, 4, 4)), ("N", (4, 4, -1)), ("N", (4, 4, "3")),
])
def test_gemm_cycles_checks_m_and_n(name, args):
    with pytest.raises(ShapeError, match=f"GEMM dimension {name} must be"):
        gemm_cycles(*args, 4, 4)


def test_breakdown_checks_k_and_count():
    with pytest.raises(ShapeError, match="K must be integers"):
        breakdown(4, np.array([0.5]), 4, 4, 4)
    with pytest.raises(ShapeError, match=r"K must be <= 4294967295, got 4294967296 at index 1"):
        breakdown(np.array([4, 4]), np.array([3, 2**32]), np.array([4, 4]), 4, 4)
    with pytest.raises(ShapeError, match="count must be >= 1"):
        breakdown(4, 4, 4, 4, 4, np.array([0]))


def test_gemm_cycles_k_limit_is_the_rtl_port_width():
    from hw.array import S2FP8Array
    dut = S2FP8Array(rows=1, cols=1)
    assert len(dut.k) == arch.K_BITS
    assert gemm_cycles(1, 2**arch.K_BITS - 1, 1, 1, 1) == closed_form(1, 2**32 - 1, 1, 1, 1)


def test_gemm_schedule_without_gaps_is_the_closed_form():
    for shape in [(1, 1, 1), (5, 7, 4), (4, 1, 6), (17, 9, 3), (9, 64, 13)]:
        for rows, cols in [(1, 1), (2, 3), (4, 4), (8, 2)]:
            assert gemm_schedule(*shape, rows, cols).cycles == closed_form(*shape, rows, cols)


@pytest.mark.parametrize("kwargs, message", [
    (dict(rows=0, cols=4), r"array rows \(1..64\) must be >= 1, got 0"),
    (dict(rows=4, cols=65), r"array cols \(1..64\) must be <= 64, got 65"),
    (dict(rows=4.0, cols=4), r"array rows \(1..64\) must be an integer, got 4.0"),
    (dict(rows=4, cols=4, mant_bits=25), r"mant_bits \(1..24\) must be <= 24, got 25"),
    (dict(rows=4, cols=4, mant_bits=True), r"mant_bits \(1..24\) must be an integer, got True"),
])
def test_array_config_validation(kwargs, message):
    with pytest.raises(ShapeError, match=message):
        arch.ArrayConfig(**kwargs)


def test_array_config_is_frozen_and_names_the_rtl():
    config = arch.ArrayConfig(4, 8, mant_bits=8)
    with pytest.raises(AttributeError):
        config.rows = 2
    assert config.top_name == "s2fp8_array_4x8_w8"
    assert gemm_cycles(5, 7, 4, arch.ArrayConfig(2, 3)) == gemm_cycles(5, 7, 4, 2, 3) == 50


# ------------------------------------------------------------ interleaved accumulation (L > 1)

def test_interleaved_closed_form_equals_the_scheduled_model():
    """The closed form of an interleaved array (cycles.py docstring) against the per-beat
    schedule (which tests/test_hw_array.py holds equal to the RTL), over shapes with a
    partial last group, K = 1, K < S and K > S, every L."""
    from pysim.perf.arch import ArrayConfig
    for acc_stages in arch.ACC_STAGES:
        for rows, cols in ((4, 4), (2, 3), (8, 8)):
            config = ArrayConfig(rows, cols, acc_stages=acc_stages)
            for m, k, n in ((1, 1, 1), (3, 2, 7), (9, 13, 4), (17, 5, 12), (5, 40, 9)):
                assert gemm_cycles(m, k, n, config) == gemm_schedule(m, k, n, config).cycles, \
                    (acc_stages, rows, cols, m, k, n)


def test_interleaved_worked_example():
    """docs/array.md's example: 4x4 array, L = 6, M = N = 8 (T = 4 tiles, one group padded
    to 6), K = 16, S = 4: beats every cycle up to the group's first last beat at
    (K - 1) * L = 90, then d1 = 1 + 6 * ceil(3 / 6) = 7 between the group's last beats:
    the last at 90 + 5 * 7 = 125; drain D = 3 + 3 + (1 + 6 + 6 + 1) = 20: 125 + 1 + 20."""
    from pysim.perf.arch import ArrayConfig
    config = ArrayConfig(4, 4, acc_stages=6)
    assert config.mul_stages == 6 and config.drain_cycles == 20
    assert gemm_cycles(8, 16, 8, config) == 146
    b = breakdown(8, 16, 8, config)
    assert (int(b.steady), int(b.tile_overhead), int(b.fill_drain)) == (64, 126 - 64, 20)
