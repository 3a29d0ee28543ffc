"""amaranth.sim checks of the operand decoder and the S2FP8 MAC against the golden model.

Small and fast; the exhaustive and long-sequence checks run the Verilog under Verilator.
"""
import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.decoder import OperandDecoder
from hw.mac import S2FP8MAC
from pysim.numerics import golden, s2fp8
from pysim.numerics.formats import TABLE_ENTRIES


def _tables(mant_bits, rng):
    x = rng.standard_normal(500) * 2.0 ** rng.uniform(-40, 10, 500)
    y = rng.standard_normal(500) * 2.0 ** rng.uniform(-5, 30, 500)
    return (s2fp8.encode(x).table(mant_bits), s2fp8.encode(y).table(mant_bits))


async def _load_table(ctx, port, table):
    for addr, word in enumerate(table):
        ctx.set(port.en, 1)
        ctx.set(port.addr, addr)
        ctx.set(port.data.as_value(), int(word))
        await ctx.tick()
    ctx.set(port.en, 0)


def run_mac(mant_bits, table_a, table_b, codes_a, codes_b, init, lengths, rng):
    """Stream every sequence through the MAC with random idle gaps, one process that drives
    and samples each cycle. Returns the results and, per result, the cycles from the
    acceptance of its `last` beat to ``result.valid``."""
    dut = S2FP8MAC(mant_bits=mant_bits)
    beats = [(s, k, int(length)) for s, length in enumerate(lengths) for k in range(length)]
    results, latencies, last_accepted = [], [], []

    async def bench(ctx):
        await _load_table(ctx, dut.table_a, table_a)
        await _load_table(ctx, dut.table_b, table_b)
        cycle, pending = 0, list(beats)
        while pending or len(results) < len(lengths):
            beat = pending[0] if pending and rng.random() >= 0.2 else None  # idle gaps
            ctx.set(dut.operands.valid, beat is not None)
            if beat is not None:
                s, k, length = beat
                ctx.set(dut.operands.payload.a.as_value(), int(codes_a[s, k]))
                ctx.set(dut.operands.payload.b.as_value(), int(codes_b[s, k]))
                ctx.set(dut.operands.payload.first, k == 0)
                ctx.set(dut.operands.payload.last, k == length - 1)
                ctx.set(dut.init.as_value(), int(init[s]))
                assert ctx.get(dut.operands.ready)
                pending.pop(0)
                if k == length - 1:
                    last_accepted.append(cycle)
            if ctx.get(dut.result.valid):
                results.append(ctx.get(dut.result.payload.as_value()))
                latencies.append(cycle - last_accepted[len(results) - 1])
            await ctx.tick()
            cycle += 1
            assert cycle < 100 * len(beats) + 1000, "MAC stopped producing results"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array(results, dtype=np.uint32), latencies


@pytest.mark.parametrize("mant_bits", [24, 8])
def test_mac_sequences_match_golden(mant_bits):
    rng = np.random.default_rng(mant_bits)
    table_a, table_b = _tables(mant_bits, rng)
    seqs, max_len = 40, 12
    codes_a = rng.integers(0, 256, (seqs, max_len), dtype=np.uint8)
    codes_b = rng.integers(0, 256, (seqs, max_len), dtype=np.uint8)
    codes_a[rng.random(codes_a.shape) < 0.1] = 0        # zeros
    codes_b[rng.random(codes_b.shape) < 0.02] = 0x7C    # Inf
    lengths = rng.integers(1, max_len + 1, seqs)
    init = rng.choice(np.array([0, 0x80000000, 0x3F800000, 0xC1200000], np.uint32), seqs)
    got, latencies = run_mac(mant_bits, table_a, table_b, codes_a, codes_b, init, lengths, rng)
    expected = golden.mac(table_a, table_b, codes_a, codes_b, init, lengths)
    assert got.size == seqs
    bad = np.flatnonzero(got != expected)
    assert bad.size == 0, (f"{bad.size} mismatches; first: sequence {bad[0]}: "
                           f"expected {expected[bad[0]]:#010x}, got {got[bad[0]]:#010x}")
    assert set(latencies) == {S2FP8MAC(mant_bits=mant_bits).latency}


def test_operands_not_accepted_while_a_table_is_written():
    dut = S2FP8MAC()
    seen = []

    async def bench(ctx):
        ctx.set(dut.operands.valid, 1)
        for port in (dut.table_a, dut.table_b):
            ctx.set(port.en, 1)
            await ctx.delay(1e-7)
            seen.append(ctx.get(dut.operands.ready))
            ctx.set(port.en, 0)
            await ctx.delay(1e-7)
            seen.append(ctx.get(dut.operands.ready))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [0, 1, 0, 1]


def test_decoder_applies_code_sign_to_table_entry():
    dut = OperandDecoder()
    table = s2fp8.decode_table(2.0, 3.0)
    got = []

    async def bench(ctx):
        await _load_table(ctx, dut.table, table)
        for code in range(256):
            ctx.set(dut.code.as_value(), code)
            ctx.set(dut.code_valid, 1)
            await ctx.tick()
            got.append(ctx.get(dut.value.as_value()))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    expected = s2fp8.apply_sign(np.arange(256, dtype=np.uint8), table)
    assert np.array_equal(np.array(got, np.uint32), expected)
    assert len(table) == TABLE_ENTRIES


@pytest.mark.parametrize("bad", [0, 25, 8.0, True])
def test_mac_rejects_bad_mant_bits(bad):
    with pytest.raises((TypeError, ValueError), match="mant_bits"):
        S2FP8MAC(mant_bits=bad)
