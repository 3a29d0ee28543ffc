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
from pysim.perf import arch


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


def interleaved_beats(lengths, slots: int):
    """(sequence, k, length) beats of the sequences, sequence s in slot s mod ``slots``,
    the slots' streams interleaved round-robin (beat n in slot n mod ``slots``). Every
    slot must carry the same number of beats."""
    streams = [[(s, k, int(lengths[s])) for s in range(slot, len(lengths), slots)
                for k in range(lengths[s])] for slot in range(slots)]
    assert len({len(stream) for stream in streams}) == 1, "slots of unequal length"
    return [beat for round_ in zip(*streams) for beat in round_]


def equal_slot_lengths(lengths, slots: int):
    """``lengths`` with the last sequence of each slot lengthened so that every slot
    carries as many beats as the fullest one."""
    lengths = np.array(lengths)
    totals = [int(lengths[slot::slots].sum()) for slot in range(slots)]
    for slot in range(slots):
        lengths[slot + slots * ((len(lengths) - 1 - slot) // slots)] += max(totals) - totals[slot]
    return lengths


def run_mac(mant_bits, table_a, table_b, codes_a, codes_b, init, lengths, rng, acc_stages=1):
    """Stream every sequence through the MAC with random idle gaps, one process that drives
    and samples each cycle (with ``acc_stages`` L > 1: L slots interleaved round-robin).
    Returns the results in sequence order and, per result, the cycles from the
    acceptance of its `last` beat to ``result.valid``."""
    dut = S2FP8MAC(mant_bits=mant_bits, acc_stages=acc_stages)
    beats = interleaved_beats(lengths, acc_stages)
    finish_order = [s for s, k, length in beats if k == length - 1]
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
                # L = 1: never refused (no table write); L > 1: only in its slot's phase
                assert ctx.get(dut.operands.ready) or acc_stages > 1
                if ctx.get(dut.operands.ready):
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
    ordered = np.zeros(len(lengths), np.uint32)
    ordered[finish_order] = results
    return ordered, latencies


@pytest.mark.parametrize("mant_bits,acc_stages", [(24, 1), (8, 1), (24, 2), (24, 6), (8, 4)])
def test_mac_sequences_match_golden(mant_bits, acc_stages):
    """Random sequences with idle gaps; with L > 1 the L interleaved slots each sum their
    own sequences in order: the same bits as the golden model, whatever L."""
    rng = np.random.default_rng(mant_bits + 100 * acc_stages)
    table_a, table_b = _tables(mant_bits, rng)
    seqs, max_len = 40, 12
    lengths = equal_slot_lengths(rng.integers(1, max_len + 1, seqs), acc_stages)
    steps = int(lengths.max())
    codes_a = rng.integers(0, 256, (seqs, steps), dtype=np.uint8)
    codes_b = rng.integers(0, 256, (seqs, steps), dtype=np.uint8)
    codes_a[rng.random(codes_a.shape) < 0.1] = 0        # zeros
    codes_b[rng.random(codes_b.shape) < 0.02] = 0x7C    # Inf
    init = rng.choice(np.array([0, 0x80000000, 0x3F800000, 0xC1200000], np.uint32), seqs)
    got, latencies = run_mac(mant_bits, table_a, table_b, codes_a, codes_b, init, lengths, rng,
                             acc_stages)
    expected = golden.mac(table_a, table_b, codes_a, codes_b, init, lengths)
    assert got.size == seqs
    bad = np.flatnonzero(got != expected)
    assert bad.size == 0, (f"{bad.size} mismatches; first: sequence {bad[0]}: "
                           f"expected {expected[bad[0]]:#010x}, got {got[bad[0]]:#010x}")
    dut = S2FP8MAC(mant_bits=mant_bits, acc_stages=acc_stages)
    assert set(latencies) == {dut.latency}
    assert dut.latency == arch.mac_latency(acc_stages) == 1 + dut.mul_stages + acc_stages


@pytest.mark.parametrize("acc_stages", [1, 3])
def test_idle_loop_cycles_keep_a_negative_zero_sum(acc_stages):
    """Sums that stay -0 (init -0, every product -0) across idle gaps: an accumulator loop
    cycle without a product adds -0 (x + -0 == x), never +0 (-0 + +0 == +0)."""
    rng = np.random.default_rng(acc_stages)
    table_a, table_b = _tables(24, rng)
    seqs, steps = 4 * acc_stages, 6
    lengths = np.full(seqs, steps)
    codes_a = np.zeros((seqs, steps), np.uint8)                  # +0
    codes_b = rng.integers(0x81, 0x90, (seqs, steps), dtype=np.uint8)  # negative values
    init = np.full(seqs, 0x80000000, np.uint32)                  # -0
    got, _ = run_mac(24, table_a, table_b, codes_a, codes_b, init, lengths, rng, acc_stages)
    assert golden.mac(table_a, table_b, codes_a, codes_b, init, lengths).tolist() \
        == [0x80000000] * seqs
    assert got.tolist() == [0x80000000] * seqs


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
