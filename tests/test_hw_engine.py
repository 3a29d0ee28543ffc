"""amaranth.sim checks of the layer engine (hw/engine.py: array + output buffer + output
path): S2FP8 A and B in, S2FP8 C out, bit-exact with the golden model end to end
(golden.gemm, then pysim.numerics.outpath.encode_hw), two GEMMs chained (the second's A is
the first's S2FP8 output, decoded through the table the controller computed from the
engine's own alpha and beta), and the cycles from the first accepted beat to the last code
equal to the cycle model (``breakdown(...).array_cycles + output_path``) on the shapes of
tests/test_hw_array.py. The controller (scalar step, threshold writes, row addresses) is
the testbench, with the timing the model assumes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.engine import S2FP8LayerEngine
from pysim.numerics import golden, outpath, s2fp8
from pysim.perf import arch
from pysim.perf.arch import ArrayConfig
from pysim.perf.cycles import breakdown
from pysim.perf.tiler import operand_beats

STATS_FIELDS = ("count", "total", "max_magnitude", "min_magnitude", "max_log2", "nonfinite")


@dataclass
class LayerRun:
    """One GEMM through the engine: the S2FP8 output and its timing."""
    output: s2fp8.S2FP8Tensor
    stats: outpath.HwStats
    cycles: int              # first beat accepted to last code out, both included


def encoded(rng, shape, scale):
    values = rng.standard_normal(shape) * scale
    values[rng.random(shape) < 0.1] = 0
    return s2fp8.encode(values)


def gemm_through_engine(ctx, dut, ta, tb) -> LayerRun:
    """The controller's sequence for one GEMM: tables, beats back to back, then (the
    cycle the statistics are valid) the scalar step for ``arch.SCALAR_STEP_CYCLES``, the
    128 threshold writes, and the M real rows of every tile read from the buffer, one a
    cycle; codes collected until the last one."""
    config = dut.array_config
    rows, cols, w = config.rows, config.cols, config.mant_bits
    (m, k), n = ta.shape, tb.shape[1]
    assert dut.buffer_fits(m, n)
    a_beats, b_beats = operand_beats(ta.codes, tb.codes, rows, cols)
    col_tiles = -(-n // cols)
    tiles = a_beats.shape[0] // k
    return_rows = [t * rows + i for t in range(tiles) for i in range(rows)
                   if (t // col_tiles) * rows + i < m]            # a tile's padding rows: skipped

    async def run():
        for address, (entry_a, entry_b) in enumerate(zip(ta.table(w), tb.table(w))):
            for port, entry in ((dut.table_a, entry_a), (dut.table_b, entry_b)):
                ctx.set(port.en, 1)
                ctx.set(port.addr, address)
                ctx.set(port.data.as_value(), int(entry))
            await ctx.tick()
        for port in (dut.table_a, dut.table_b):
            ctx.set(port.en, 0)
        ctx.set(dut.k, k)
        ctx.set(dut.result_rows, tiles * rows)
        cycle, beat, first_accept, stats = 0, 0, None, None
        while stats is None:                                       # pass 1
            feed = beat < len(a_beats)
            ctx.set(dut.a.valid, feed)
            ctx.set(dut.b.valid, feed)
            if feed:
                ctx.set(dut.a.payload.as_value(), int.from_bytes(a_beats[beat].tobytes(), "little"))
                ctx.set(dut.b.payload.as_value(), int.from_bytes(b_beats[beat].tobytes(), "little"))
                if ctx.get(dut.a.ready):
                    first_accept = cycle if first_accept is None else first_accept
                    beat += 1
            if ctx.get(dut.stats_result.valid):
                payload = dut.stats_result.payload
                stats = outpath.HwStats(**{f: ctx.get(getattr(payload, f)) for f in STATS_FIELDS})
            await ctx.tick()
            cycle += 1
            assert cycle < 100_000, "no statistics result"
        assert beat == len(a_beats)
        alpha, beta = outpath.scalar_step(stats)
        table = outpath.threshold_table(alpha, beta)
        await ctx.tick().repeat(arch.SCALAR_STEP_CYCLES)           # the scalar step
        cycle += arch.SCALAR_STEP_CYCLES
        assert not ctx.get(dut.encoder_busy)
        for address, entry in enumerate(table):
            ctx.set(dut.thresholds.en, 1)
            ctx.set(dut.thresholds.addr, address)
            ctx.set(dut.thresholds.data, int(entry))
            await ctx.tick()
            cycle += 1
        ctx.set(dut.thresholds.en, 0)
        codes, last_code, issued = [], None, 0                     # pass 2
        limit = cycle + len(return_rows) + 4 * dut.read_latency
        while len(codes) < len(return_rows):
            issue = issued < len(return_rows)
            ctx.set(dut.read.valid, issue)
            if issue:
                ctx.set(dut.read.payload, return_rows[issued])
                issued += 1
            if ctx.get(dut.codes.valid):
                codes.append([ctx.get(dut.codes.payload[lane].as_value()) for lane in range(cols)])
                last_code = cycle
            await ctx.tick()
            cycle += 1
            assert cycle < limit, f"{len(codes)} code rows of {len(return_rows)}: rows lost"
        out = np.zeros((-(-m // rows) * rows, col_tiles * cols), np.uint8)
        for address, row_codes in zip(return_rows, codes):
            tile, i = divmod(address, rows)
            out[(tile // col_tiles) * rows + i, (tile % col_tiles) * cols:][:cols] = row_codes
        return LayerRun(s2fp8.S2FP8Tensor(out[:m, :n], alpha, beta), stats,
                        last_code - first_accept + 1)

    return run()


def simulate(dut, layers):
    """Run the GEMMs ``layers(ctx)`` (an async function returning a result) on ``dut``."""
    result = {}

    async def bench(ctx):
        result["value"] = await layers(ctx)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return result["value"]


def model_cycles(m, k, n, config) -> int:
    b = breakdown(m, k, n, config)
    return int(b.array_cycles + b.output_path)


def expected_layer(ta, tb, mant_bits):
    return outpath.encode_hw(golden.gemm(ta, tb, mant_bits=mant_bits))


def assert_layer_exact(run: LayerRun, expect):
    assert run.stats == expect.stats
    assert (run.output.alpha, run.output.beta) == (expect.alpha, expect.beta)
    bad = np.argwhere(run.output.codes != expect.codes)
    assert bad.size == 0, (f"{len(bad)} codes differ, first at {tuple(bad[0])}: expected "
                           f"{expect.codes[tuple(bad[0])]:#04x}, got "
                           f"{run.output.codes[tuple(bad[0])]:#04x}")


def test_two_chained_gemms_bit_exact_and_cycles_equal_model(seed):
    """GEMM 1: C1 = A1 (5x7) @ B1 (7x4) on a 2x3 array (ragged rows and columns), S2FP8
    out; GEMM 2: C2 = C1 (5x4, the engine's codes and its alpha/beta's decode table) @ B2
    (4x6). Every stage bit-exact with the golden model; both cycle counts equal the model."""
    rng = np.random.default_rng(seed)
    config = ArrayConfig(2, 3)
    dut = S2FP8LayerEngine(config=config, buffer_rows=32)
    a1, b1, b2 = encoded(rng, (5, 7), 1e-2), encoded(rng, (7, 4), 30.0), encoded(rng, (4, 6), 1.0)

    async def layers(ctx):
        first = await gemm_through_engine(ctx, dut, a1, b1)
        second = await gemm_through_engine(ctx, dut, first.output, b2)
        return first, second

    first, second = simulate(dut, layers)
    expect_1 = expected_layer(a1, b1, config.mant_bits)
    assert_layer_exact(first, expect_1)
    chained = s2fp8.S2FP8Tensor(expect_1.codes, expect_1.alpha, expect_1.beta)
    assert_layer_exact(second, expected_layer(chained, b2, config.mant_bits))
    assert first.cycles == model_cycles(5, 7, 4, config)
    assert second.cycles == model_cycles(5, 4, 6, config)


SHAPES = [  # tests/test_hw_array.py's: ragged edges, K = 1, K < max(R, C), single element
    (2, 3, 5, 7, 4),
    (2, 3, 1, 1, 1),
    (2, 3, 4, 1, 6),
    (3, 2, 7, 2, 5),
    (2, 2, 2, 9, 2),
]


@pytest.mark.parametrize("rows, cols, m, k, n", SHAPES)
def test_engine_cycles_equal_model(rows, cols, m, k, n, seed):
    rng = np.random.default_rng(seed + m * 100 + k * 10 + n)
    config = ArrayConfig(rows, cols)
    dut = S2FP8LayerEngine(config=config, buffer_rows=32)
    ta, tb = encoded(rng, (m, k), 1.0), encoded(rng, (k, n), 1e3)
    run = simulate(dut, lambda ctx: gemm_through_engine(ctx, dut, ta, tb))
    assert_layer_exact(run, expected_layer(ta, tb, config.mant_bits))
    assert run.cycles == model_cycles(m, k, n, config)


def test_engine_parameters_validated():
    with pytest.raises(TypeError, match="ArrayConfig"):
        S2FP8LayerEngine(config=(4, 4))
    with pytest.raises(ValueError, match="buffer_rows"):
        S2FP8LayerEngine(config=ArrayConfig(4, 4), buffer_rows=0)
    with pytest.raises(ValueError, match="compact array .* not 4x4_w24_l6"):
        S2FP8LayerEngine(config=ArrayConfig(4, 4, acc_stages=6))
    dut = S2FP8LayerEngine(config=ArrayConfig(2, 3), buffer_rows=12)
    assert (dut.lanes, dut.buffer_rows, dut.stats_latency, dut.read_latency) == (3, 12, 6, 8)
    assert dut.buffer_fits(6, 6) and not dut.buffer_fits(7, 6)     # 12 and 16 rows
