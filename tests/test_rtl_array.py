"""RTL regression of the systolic array (cocotb under Verilator): GEMMs tiled by
pysim.perf.tiler through the 4x4 and 8x8 arrays, bit-exact against pysim.numerics.golden.gemm, and the
counted cycles (first beat accepted to last result row) equal to pysim.perf.cycles.gemm_cycles
on 12 shapes per array size. Each configuration is built once per session."""
import os

import pytest

from hw.tb import array_checks
from pysim.perf.arch import ArrayConfig

SEED = int(os.environ.get("S2FP8_SEED", "20240601"))


@pytest.mark.parametrize("rows, cols", [(4, 4), (8, 8)])
def test_array_cycles_equal_model(rtl_build, rows, cols):
    rtl_build(f"s2fp8_array_{rows}x{cols}_w24")
    report = array_checks.run_cycle_shapes(len(array_checks.CYCLE_SHAPES), SEED,
                                           config=ArrayConfig(rows, cols))
    print("; ".join(report.notes))
    assert len(array_checks.CYCLE_SHAPES) >= 12
    assert report.ok, "\n".join(report.errors)


@pytest.mark.parametrize("mant_bits, gemms", [(24, 30), (8, 10)])
def test_array_random_gemms(rtl_build, mant_bits, gemms):
    rtl_build(f"s2fp8_array_4x4_w{mant_bits}")
    report = array_checks.run_random_gemms(gemms, SEED, config=ArrayConfig(4, 4, mant_bits))
    print("; ".join(report.notes))
    assert report.ok, "\n".join(report.errors)
