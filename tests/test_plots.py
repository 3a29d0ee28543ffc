"""The cycles and accuracy plots read at any size (issue 14): the picture keeps one size
from 3 to 10,000 GEMMs (at most 2000 px wide), and its title states the finding,
checked here against counts made by hand."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from pysim.accuracy import gemm_error
from pysim.accuracy.gemm_error import GemmAccuracy
from pysim.perf import report
from pysim.perf.gemm import Gemm

MAX_WIDTH_PX = 2000


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# --- cycles ----------------------------------------------------------------------------------
def _gemms(count: int) -> list[Gemm]:
    rng = np.random.default_rng(count)
    shapes = np.exp2(rng.uniform(3, 10, (count, 3))).astype(int)
    return [Gemm(f"layer{i}", "forward", int(m), int(k), int(n)) for i, (m, k, n) in enumerate(shapes)]


@pytest.mark.parametrize("count", [3, 10_000])
def test_cycles_png_has_one_size_at_any_count(count):
    png = report.to_png(report.cycle_report(_gemms(count), 16, 16, source="t"))
    width, height = png_size(png)
    assert (width, height) == tuple(int(100 * s) for s in report.PLOT_SIZE_INCHES)
    assert width <= MAX_WIDTH_PX


def test_cycles_finding():
    # "big" holds 3 GEMMs of 512^3 (3/4 of the cycles, full utilization); "small" is
    # 1x1x1 on a 16x16 array (utilization 1/256); "mid" one 512^3 GEMM
    gemms = [Gemm("big", "forward", 512, 512, 512), Gemm("big", "dgrad", 512, 512, 512),
             Gemm("big", "wgrad", 512, 512, 512), Gemm("mid", "forward", 512, 512, 512),
             Gemm("small", "forward", 1, 1, 1)]
    r = report.cycle_report(gemms, 16, 16, source="t")
    cycles = np.asarray(r.cycles.total, dtype=np.float64)
    layers = report._cycles_by_layer(r, cycles)
    assert [round(layers[n]["cycles"]) for n in ("big", "mid")] == [3 * cycles[0], cycles[3]]
    low = cycles[4] / cycles.sum()
    assert report._cycles_finding(layers, r, cycles, cycles.sum()) == (
        f"half of the cycles are in 1 of 3 layers; {low:.1%} of the cycles run below 50% "
        "utilization")


# --- accuracy --------------------------------------------------------------------------------
def _row(phase: str, s2fp8: float, e5m2: float, e4m3: float) -> GemmAccuracy:
    row = GemmAccuracy("l", phase, 1, 1, 1, 1, 1.0, 0.0, 1.0, 0.0)
    row.err = {"s2fp8": s2fp8, "e5m2": e5m2, "e4m3": e4m3, "fp32": 1e-7}
    return row


def test_accuracy_finding_counts_wins_and_nan():
    nan = float("nan")
    rows = [_row("forward", 0.01, 0.02, 0.005),     # beats E5M2, not E4M3
            _row("dgrad", 0.01, 0.02, nan),         # a NaN rival loses
            _row("dgrad", nan, 0.02, 0.03),         # a NaN S2FP8 loses
            _row("wgrad", 0.03, 0.02, 0.04),        # loses to E5M2
            _row("wgrad", 0.01, 0.01, 0.04),        # a tie is not a win
            _row("wgrad", 0.001, 0.1, 0.1)]
    assert gemm_error._accuracy_finding(rows) == (
        "S2FP8 beats E5M2 on 1/1 forward and 2/5 gradient GEMMs; "
        "E4M3 on 0/1 forward and 4/5 gradient GEMMs")
    assert gemm_error._accuracy_finding(rows[1:]) == (
        "S2FP8 beats E5M2 on 2/5 gradient GEMMs; E4M3 on 4/5 gradient GEMMs")


@pytest.mark.parametrize("count", [3, 10_000])
def test_accuracy_png_has_one_size_at_any_count(count):
    rng = np.random.default_rng(count)
    rows = [_row(("forward", "dgrad", "wgrad")[i % 3], *10.0 ** rng.uniform(-3, 0, 3))
            for i in range(count)]
    rows[0].err["e4m3"] = float("nan")
    width, height = png_size(gemm_error.to_png(rows, "t"))
    assert (width, height) == tuple(int(100 * s) for s in gemm_error.PLOT_SIZE_INCHES)
    assert width <= MAX_WIDTH_PX
