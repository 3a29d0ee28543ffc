"""amaranth.sim checks of the output path (hw.outpath) against pysim.numerics.outpath:
the log2 unit over every FP32 exponent band, the encoder on every threshold and its
neighbours for several alpha/beta, the statistics unit on back-to-back tensors with zeros,
subnormals, Inf/NaN and near-constant values. Latencies are measured, not assumed."""
import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hw.outpath import Log2Unit, OutputPath, SearchStage, StatisticsUnit, ThresholdEncoder
from pysim.numerics import outpath
from pysim.numerics.formats import FP32, TABLE_ENTRIES
from pysim.perf import arch
from pysim.perf.cycles import output_path_cycles

LANES = 4


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _every_band(rng, per_band):
    exp_field = np.repeat(np.arange(FP32.exp_max_code + 1, dtype=np.uint32), per_band)
    frac = rng.integers(0, 1 << FP32.frac_bits, exp_field.size, dtype=np.uint32)
    frac[::per_band] = 0
    frac[1::per_band] = FP32.frac_mask
    sign = rng.integers(0, 2, exp_field.size, dtype=np.uint32) << np.uint32(FP32.width - 1)
    return sign | (exp_field << np.uint32(FP32.frac_bits)) | frac   # zeros, Inf, NaN included


@pytest.mark.parametrize("config", [outpath.DEFAULT_LOG2,
                                    outpath.Log2Config(table_bits=3, frac_bits=9)])
def test_log2_unit_every_exponent_band(config):
    bits = _every_band(np.random.default_rng(1), 16 if config == outpath.DEFAULT_LOG2 else 4)
    dut = Log2Unit(config=config)
    got, flags, lag = [], [], []

    async def bench(ctx):
        for cycle in range(bits.size + dut.latency + 1):
            if cycle < bits.size:
                ctx.set(dut.value.as_value(), int(bits[cycle]))
            ctx.set(dut.valid_in, cycle < bits.size)
            if ctx.get(dut.valid_out):
                got.append(ctx.get(dut.log2.value))
                flags.append((ctx.get(dut.log2.nonzero), ctx.get(dut.log2.nonfinite)))
                lag.append(cycle - len(got) + 1)
            await ctx.tick()

    _simulate(dut, bench)
    assert set(lag) == {dut.latency}
    assert np.array_equal(np.array(got, np.int64), outpath.log2_fixed(bits, config))
    _, nonzero, nonfinite = outpath.classify(bits)
    assert flags == list(zip(nonzero.astype(int).tolist(), nonfinite.astype(int).tolist()))


async def _write_table(ctx, port, table):
    for addr, word in enumerate(table):
        ctx.set(port.en, 1)
        ctx.set(port.addr, addr)
        ctx.set(port.data, int(word))
        await ctx.tick()
    ctx.set(port.en, 0)


def run_encoder(tables_and_values, rng, lanes=LANES):
    """Per (table, values): write the table while idle, stream the values (padded to
    whole beats) with random idle gaps; returns the codes per setting and the latencies."""
    dut = ThresholdEncoder(lanes=lanes)
    results, lags = [], []

    async def bench(ctx):
        for table, values in tables_and_values:
            assert not ctx.get(dut.busy)
            await _write_table(ctx, dut.table, table)
            beats = np.concatenate([values, np.zeros(-values.size % lanes, np.uint32)])
            beats = beats.reshape(-1, lanes)
            codes, sent, cycle = [], [], 0
            while len(codes) < beats.shape[0]:
                send = len(sent) < beats.shape[0] and rng.random() > 0.2
                ctx.set(dut.values.valid, send)
                if send:
                    for lane in range(lanes):
                        ctx.set(dut.values.payload[lane].as_value(), int(beats[len(sent), lane]))
                    sent.append(cycle)
                if ctx.get(dut.codes.valid):
                    codes.append([ctx.get(dut.codes.payload[lane].as_value()) for lane in range(lanes)])
                    lags.append(cycle - sent[len(codes) - 1])
                await ctx.tick()
                cycle += 1
            ctx.set(dut.values.valid, 0)
            await ctx.tick()
            results.append(np.array(codes, np.uint8).reshape(-1)[:values.size])

    _simulate(dut, bench)
    return results, set(lags), dut.latency


@pytest.mark.parametrize("stats", [((5.0, 21.0), (0.13, -3.5), (1.0, -4.0)),
                                   ((2200.0, -3500.0), (0.01, 15.0), (16.0, 40.0))])
def test_encoder_every_threshold_and_neighbours(stats):
    rng = np.random.default_rng(2)
    settings = []
    for alpha, beta in stats:
        table = outpath.threshold_table(alpha, beta)
        edges = table[1:outpath.MAX_FINITE_CODE + 1].astype(np.int64)
        near = np.unique(np.concatenate([edges - 1, edges, edges + 1]).clip(0, (1 << 31) - 1))
        special = np.array([0, 1, FP32.inf_bits, FP32.canonical_nan_bits, FP32.magnitude_mask])
        magnitudes = np.concatenate([near, special]).astype(np.uint32)
        values = magnitudes | (rng.integers(0, 2, magnitudes.size, dtype=np.uint32) << np.uint32(31))
        settings.append((table, values))
    codes, lags, latency = run_encoder(settings, rng)
    assert lags == {latency}
    for (table, values), got in zip(settings, codes):
        assert np.array_equal(got, outpath.encode_codes(values, table))


def run_stats(tensors, rng, lanes=LANES):
    """Stream tensors back to back (zero-padded to whole beats, random gaps inside and
    between them); returns one dict per result and the latencies."""
    dut = StatisticsUnit(lanes=lanes)
    beats = []
    for t in tensors:
        padded = np.concatenate([t, np.zeros(-t.size % lanes, np.uint32)]).reshape(-1, lanes)
        for i, row in enumerate(padded):
            beats.append((row, i == 0, i == padded.shape[0] - 1))
    fields = ("count", "total", "max_magnitude", "min_magnitude", "max_log2", "nonfinite")
    results, lags, last_sent = [], [], []

    async def bench(ctx):
        cycle, index = 0, 0
        while len(results) < len(tensors):
            send = index < len(beats) and rng.random() > 0.25
            ctx.set(dut.beats.valid, send)
            if send:
                row, first, last = beats[index]
                for lane in range(lanes):
                    ctx.set(dut.beats.payload.values[lane].as_value(), int(row[lane]))
                ctx.set(dut.beats.payload.first, first)
                ctx.set(dut.beats.payload.last, last)
                if last:
                    last_sent.append(cycle)
                index += 1
            if ctx.get(dut.result.valid):
                results.append({f: ctx.get(getattr(dut.result.payload, f)) for f in fields})
                lags.append(cycle - last_sent[len(results) - 1])
            await ctx.tick()
            cycle += 1

    _simulate(dut, bench)
    return results, set(lags), dut.latency


def stats_tensors(rng):
    def bits(x):
        return np.asarray(x, np.float32).view(np.uint32)
    return [
        bits(rng.standard_normal(37)),
        bits(np.where(rng.random(50) < 0.6, 0.0, rng.laplace(0, 1e-3, 50))),      # zeros
        bits(rng.standard_normal(23) * 2.0 ** -140),                            # subnormals
        bits(3.0 * (1 + 1e-3 * rng.standard_normal(30))),                       # near-constant
        bits([0.0, -0.0, 0.0]),                                                 # no nonzero
        bits([2.5]),                                                            # one value
        bits([1.0, np.inf, -2.0, np.nan, 0.0, -np.inf]),                        # non-finite
        bits(-np.exp2(rng.uniform(-149, 127.9, 41))),                           # every band
    ]


def test_statistics_unit_back_to_back_tensors():
    rng = np.random.default_rng(3)
    tensors = stats_tensors(rng)
    results, lags, latency = run_stats(tensors, rng)
    assert lags == {latency}
    for t, got in zip(tensors, results):
        expect = outpath.statistics(t)
        assert got == {f: getattr(expect, f) for f in got}, t


def test_output_path_two_passes_equal_golden_and_cycle_model():
    """Both passes through the combined top, an M x N result tensor as the array leaves it
    (rows of C lanes, each row's last beat zero-padded), the controller's scalar step
    between them taking ``arch.SCALAR_STEP_CYCLES``: codes equal encode_hw, and the
    cycles from the last result beat to the last code equal
    ``pysim.perf.cycles.output_path_cycles`` (statistics latency, scalar step, threshold
    writes, pass 2 at one beat a cycle after the output buffer's read, encoder latency;
    the buffer itself is the layer engine's, tests/test_hw_engine.py)."""
    rng = np.random.default_rng(4)
    m, n = 3, 5        # ragged: 5 columns on 4 lanes, 6 beats (not ceil(15 / 4) = 4)
    x = (rng.standard_normal((m, n)) * 1e-3).astype(np.float32)
    x[:, ::5] = 0
    dut = OutputPath(lanes=LANES)
    bits = np.zeros((m, -(-n // LANES) * LANES), np.uint32)
    bits[:, :n] = x.view(np.uint32)
    bits = bits.reshape(-1, LANES)
    out = {}

    async def bench(ctx):
        cycle = 0
        for i, row in enumerate(bits):
            ctx.set(dut.stats_in.valid, 1)
            for lane in range(LANES):
                ctx.set(dut.stats_in.payload.values[lane].as_value(), int(row[lane]))
            ctx.set(dut.stats_in.payload.first, i == 0)
            ctx.set(dut.stats_in.payload.last, i == bits.shape[0] - 1)
            await ctx.tick()
            cycle += 1
        last_beat = cycle - 1
        ctx.set(dut.stats_in.valid, 0)
        while not ctx.get(dut.stats_result.valid):
            await ctx.tick()
            cycle += 1
        out["stats_lag"] = cycle - last_beat
        p = dut.stats_result.payload
        stats = outpath.HwStats(**{f: ctx.get(getattr(p, f)) for f in (
            "count", "total", "max_magnitude", "min_magnitude", "max_log2", "nonfinite")})
        out["alpha"], out["beta"] = outpath.scalar_step(stats)
        await ctx.tick().repeat(1 + arch.SCALAR_STEP_CYCLES)   # the controller's routine
        cycle += 1 + arch.SCALAR_STEP_CYCLES
        await _write_table(ctx, dut.thresholds, outpath.threshold_table(out["alpha"], out["beta"]))
        cycle += TABLE_ENTRIES
        await ctx.tick().repeat(arch.OUTPUT_BUFFER_READ_LATENCY)   # the buffer's read
        cycle += arch.OUTPUT_BUFFER_READ_LATENCY
        codes = []
        for row in bits:
            ctx.set(dut.encode_in.valid, 1)
            for lane in range(LANES):
                ctx.set(dut.encode_in.payload[lane].as_value(), int(row[lane]))
            await ctx.tick()
            cycle += 1
        ctx.set(dut.encode_in.valid, 0)
        while len(codes) < bits.shape[0]:
            if ctx.get(dut.codes.valid):
                codes.append([ctx.get(dut.codes.payload[lane].as_value()) for lane in range(LANES)])
                out["last_code"] = cycle
            await ctx.tick()
            cycle += 1
        out["codes"] = np.array(codes, np.uint8).reshape(m, -1)[:, :n]
        out["after_last_beat"] = out["last_code"] - last_beat

    _simulate(dut, bench)
    expect = outpath.encode_hw(x)
    assert (out["alpha"], out["beta"]) == (expect.alpha, expect.beta)
    assert np.array_equal(out["codes"], expect.codes)
    assert out["stats_lag"] == arch.STATS_LATENCY
    assert out["after_last_beat"] == output_path_cycles(m, n, LANES)
    assert output_path_cycles(m, n, LANES) == (arch.STATS_LATENCY + arch.SCALAR_STEP_CYCLES
                                               + TABLE_ENTRIES + m * 2 + 1 + arch.ENCODE_LATENCY)


def test_parameters_validated():
    with pytest.raises(ValueError, match="lanes"):
        StatisticsUnit(lanes=0)
    with pytest.raises(ValueError, match="lanes"):
        ThresholdEncoder(lanes=65)
    with pytest.raises(TypeError, match="Log2Config"):
        Log2Unit(config=(10, 22))
    with pytest.raises(ValueError, match="level"):
        SearchStage(level=7)
    assert (StatisticsUnit.latency, ThresholdEncoder.latency, Log2Unit.latency) == (6, 7, 2)
    assert TABLE_ENTRIES == 1 << ThresholdEncoder.latency
    path = OutputPath(lanes=2)
    assert (path.lanes, path.stats_latency, path.encode_latency) == (2, 6, 7)
    Fragment.get(path, None)             # elaborates (and so counts as used)


def test_cycle_report_shows_output_path_beside_the_array():
    """``s2fp8 cycles``: the array's columns unchanged, the output path a separate term
    (text totals line, JSON per GEMM and totals), counted per output tensor."""
    import json

    from pysim.perf.gemm import Gemm
    from pysim.perf.report import cycle_report, format_table, to_json
    gemms = [Gemm("a", "forward", 5, 7, 9), Gemm("b", "forward", 3, 2, 4, count=6)]
    report = cycle_report(gemms, 2, 4)
    per_gemm = [arch.STATS_LATENCY + arch.SCALAR_STEP_CYCLES + TABLE_ENTRIES
                + beats + 1 + arch.ENCODE_LATENCY for beats in (5 * 3, 6 * 3 * 1)]
    assert report.cycles.output_path.tolist() == per_gemm
    assert report.total_cycles == int(report.cycles.total.sum())       # array only
    text = format_table(report)
    assert (f"output path (S2FP8 out, after each GEMM's last result row): {sum(per_gemm):,} "
            f"cycles") in text
    assert f"S2FP8 in to S2FP8 out: {report.total_cycles + sum(per_gemm):,} cycles" in text
    data = json.loads(to_json(report))
    assert [row["output_path"] for row in data["gemms"]] == per_gemm
    assert data["totals"]["output_path"] == sum(per_gemm)
    assert data["totals"]["layer_cycles"] == data["totals"]["cycles"] + sum(per_gemm)
