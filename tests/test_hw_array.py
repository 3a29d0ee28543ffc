"""amaranth.sim checks of the systolic array: results bit-exact against golden.gemm, cycle
counts equal to the cycle model. Small arrays; the Verilator regression runs larger ones."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.array import S2FP8Array
from pysim.numerics import golden, s2fp8
from pysim.perf import arch
from pysim.perf.cycles import gemm_cycles
from pysim.numerics.rounding import fp32_bits
from pysim.perf.tiler import operand_beats, place_results


def _operands(m, k, n, rng):
    a = rng.standard_normal((m, k)) * 2.0 ** rng.uniform(-30, 30)
    b = rng.standard_normal((k, n)) * 2.0 ** rng.uniform(-30, 30)
    a[rng.random(a.shape) < 0.1] = 0
    ta, tb = s2fp8.encode(a), s2fp8.encode(b)
    codes_a = ta.codes.copy()
    codes_a[rng.random(codes_a.shape) < 0.02] = 0x7C  # Inf operands
    return s2fp8.S2FP8Tensor(codes_a, ta.alpha, ta.beta), tb


def run_array(dut, ta, tb, gaps_rng=None):
    """Load the tables, stream every beat, collect every result row; returns (C bits,
    cycles from the first accepted beat to the last result row, inclusive)."""
    m, k = ta.shape
    n = tb.shape[1]
    a_beats, b_beats = operand_beats(ta.codes, tb.codes, dut.rows, dut.cols)
    expected_rows = a_beats.shape[0] // k * dut.rows
    rows_out, cycles = [], {}
    tables = (ta.table(dut.mant_bits), tb.table(dut.mant_bits))

    async def bench(ctx):
        for address in range(len(tables[0])):
            for port, table in zip((dut.table_a, dut.table_b), tables):
                ctx.set(port.en, 1)
                ctx.set(port.addr, address)
                ctx.set(port.data.as_value(), int(table[address]))
            await ctx.tick()
        for port in (dut.table_a, dut.table_b):
            ctx.set(port.en, 0)
        ctx.set(dut.k, k)
        ctx.set(dut.c.ready, 1)
        cycle, beat = 0, 0
        while len(rows_out) < expected_rows:
            feed = beat < len(a_beats) and (gaps_rng is None or gaps_rng.random() > 0.2)
            ctx.set(dut.a.valid, feed)
            ctx.set(dut.b.valid, feed)
            if feed:
                ctx.set(dut.a.payload.as_value(), int.from_bytes(a_beats[beat].tobytes(), "little"))
                ctx.set(dut.b.payload.as_value(), int.from_bytes(b_beats[beat].tobytes(), "little"))
                if ctx.get(dut.a.ready):
                    cycles.setdefault("first", cycle)
                    beat += 1
            if ctx.get(dut.c.valid):
                word = ctx.get(dut.c.payload.as_value())
                row = word & ((1 << (dut.rows - 1).bit_length()) - 1) if dut.rows > 1 else 0
                values = word >> max(dut.rows - 1, 0).bit_length()
                rows_out.append((row, [(values >> (32 * j)) & 0xFFFFFFFF for j in range(dut.cols)]))
                cycles["last"] = cycle
            await ctx.tick()
            cycle += 1
            assert cycle < 50 * (len(a_beats) + 100), "array stopped producing results"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert [row for row, _ in rows_out] == list(range(dut.rows)) * (expected_rows // dut.rows)
    values = np.array([v for _, v in rows_out], dtype=np.uint32)
    return place_results(values, m, n, dut.rows, dut.cols), cycles["last"] - cycles["first"] + 1


SHAPES = [  # (rows, cols, M, K, N): ragged edges, K = 1, K < max(R, C), single element
    (2, 3, 5, 7, 4),
    (2, 3, 1, 1, 1),
    (2, 3, 4, 1, 6),
    (3, 2, 7, 2, 5),
    (2, 2, 2, 9, 2),
]


@pytest.mark.parametrize("rows, cols, m, k, n", SHAPES)
def test_array_matches_golden_and_cycle_model(rows, cols, m, k, n):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    ta, tb = _operands(m, k, n, rng)
    dut = S2FP8Array(rows=rows, cols=cols)
    got, cycles = run_array(dut, ta, tb)
    expected = fp32_bits(golden.gemm(ta, tb))
    bad = np.argwhere(got != expected)
    assert bad.size == 0, (f"{len(bad)} mismatches, first at {tuple(bad[0])}: "
                           f"expected {expected[tuple(bad[0])]:#010x}, got {got[tuple(bad[0])]:#010x}")
    assert cycles == gemm_cycles(m, k, n, rows, cols)


def test_array_with_idle_gaps_and_reduced_significand():
    rng = np.random.default_rng(7)
    ta, tb = _operands(5, 6, 3, rng)
    dut = S2FP8Array(rows=2, cols=2, mant_bits=8)
    got, _ = run_array(dut, ta, tb, gaps_rng=rng)
    assert np.array_equal(got, fp32_bits(golden.gemm(ta, tb, mant_bits=8)))


@pytest.mark.parametrize("kwargs", [dict(rows=0, cols=2), dict(rows=2, cols=65),
                                    dict(rows=2.0, cols=2), dict(rows=2, cols=2, mant_bits=0)])
def test_array_rejects_bad_parameters(kwargs):
    with pytest.raises((TypeError, ValueError), match="rows|cols|mant_bits"):
        S2FP8Array(**kwargs)


def test_pipeline_constants_match_rtl():
    from hw.decoder import OperandDecoder
    from hw.fp32 import FPMul
    from hw.mac import S2FP8MAC
    assert OperandDecoder.latency == arch.DECODE_LATENCY
    assert FPMul.LATENCY == arch.MUL_LATENCY
    assert S2FP8MAC().latency == arch.DECODE_LATENCY + arch.MUL_LATENCY + arch.ACC_LATENCY
