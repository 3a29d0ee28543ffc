"""amaranth.sim checks of the systolic array and of the timing numbers in
``pysim.perf.arch``: results bit-exact against golden.gemm, cycle counts equal to the
cycle model, and every latency, spacing, drain and FIFO depth of ``ArrayConfig`` measured
on the simulated RTL (not compared constant to constant). Small arrays; the Verilator
regression (hw/tb/array_checks.py) runs larger ones."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.array import S2FP8Array
from hw.fp32 import FPMul
from hw.mac import S2FP8MAC
from pysim.numerics import golden, s2fp8
from pysim.numerics.rounding import fp32_bits
from pysim.perf import arch
from pysim.perf.arch import ArrayConfig
from pysim.perf.cycles import gemm_cycles, gemm_schedule
from pysim.perf.tiler import operand_beats, padded_tiles, place_results


def _operands(m, k, n, rng):
    a = rng.standard_normal((m, k)) * 2.0 ** rng.uniform(-30, 30)
    b = rng.standard_normal((k, n)) * 2.0 ** rng.uniform(-30, 30)
    a[rng.random(a.shape) < 0.1] = 0
    ta, tb = s2fp8.encode(a), s2fp8.encode(b)
    codes_a = ta.codes.copy()
    codes_a[rng.random(codes_a.shape) < 0.02] = 0x7C  # Inf operands
    return s2fp8.S2FP8Tensor(codes_a, ta.alpha, ta.beta), tb


@dataclass
class ArrayRun:
    """What the bench saw, cycles counted from the first cycle after the table loads."""
    c: np.ndarray                                   # C (M, N) as FP32 bits
    accept: list = field(default_factory=list)      # cycle each beat was accepted
    pops: list = field(default_factory=list)        # cycle each result row left on c
    rows: list = field(default_factory=list)        # its row index

    @property
    def cycles(self) -> int:
        """First beat accepted to last result row, both included."""
        return self.pops[-1] - self.accept[0] + 1


def run_array(dut, ta, tb, *, offer=None, ready=None, max_cycles=None) -> ArrayRun:
    """Load the tables, stream every beat, collect every result row.

    ``offer[i]``: the first cycle beat i may be offered (a and b valid from then until it
    is accepted; default: every beat at once, i.e. back to back); ``ready[t]``: ``c.ready``
    in cycle t (True past its end; default always ready). Cycle 0 is the first cycle
    after the tables are loaded, the one :func:`pysim.perf.cycles.gemm_cycles_scheduled`
    calls 0 too.
    """
    m, k = ta.shape
    n = tb.shape[1]
    a_beats, b_beats = operand_beats(ta.codes, tb.codes, dut.rows, dut.cols,
                                     dut.config.interleave)
    offer = np.zeros(len(a_beats), np.int64) if offer is None else np.asarray(offer)
    ready = np.ones(0, bool) if ready is None else np.asarray(ready, bool)
    expected_rows = a_beats.shape[0] // k * dut.rows
    limit = max_cycles or 50 * (len(a_beats) + 100) + int(offer.max()) + len(ready)
    run = ArrayRun(c=np.zeros(0))
    tables = (ta.table(dut.mant_bits), tb.table(dut.mant_bits))
    row_bits = max(dut.rows - 1, 0).bit_length()

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
        cycle, beat = 0, 0
        while len(run.rows) < expected_rows and cycle < limit:
            feed = bool(beat < len(a_beats) and offer[beat] <= cycle)
            ctx.set(dut.a.valid, feed)
            ctx.set(dut.b.valid, feed)
            ready_now = bool(ready[cycle]) if cycle < len(ready) else True
            ctx.set(dut.c.ready, ready_now)
            if feed:
                ctx.set(dut.a.payload.as_value(), int.from_bytes(a_beats[beat].tobytes(), "little"))
                ctx.set(dut.b.payload.as_value(), int.from_bytes(b_beats[beat].tobytes(), "little"))
                if ctx.get(dut.a.ready):
                    run.accept.append(cycle)
                    beat += 1
            if ctx.get(dut.c.valid) and ready_now:
                word = ctx.get(dut.c.payload.as_value())
                run.rows.append(word & ((1 << row_bits) - 1))
                values = word >> row_bits
                run.c = np.append(run.c, [(values >> (32 * j)) & 0xFFFFFFFF
                                          for j in range(dut.cols)])
                run.pops.append(cycle)
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    if len(run.rows) == expected_rows:
        run.c = place_results(run.c.astype(np.uint32).reshape(-1, dut.cols), m, n,
                              dut.rows, dut.cols)
    return run


def assert_complete_and_exact(run: ArrayRun, dut, ta, tb):
    expected_rows = len(run.accept) // ta.shape[1] * dut.rows
    assert len(run.rows) == expected_rows, \
        f"{len(run.rows)} result rows of {expected_rows}: rows were lost"
    assert run.rows == list(range(dut.rows)) * (expected_rows // dut.rows), "rows out of order"
    expected = fp32_bits(golden.gemm(ta, tb, mant_bits=dut.mant_bits))
    bad = np.argwhere(run.c != expected)
    assert bad.size == 0, (f"{len(bad)} mismatches, first at {tuple(bad[0])}: expected "
                           f"{expected[tuple(bad[0])]:#010x}, got {run.c[tuple(bad[0])]:#010x}")


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
    run = run_array(dut, ta, tb)
    assert_complete_and_exact(run, dut, ta, tb)
    assert run.cycles == gemm_cycles(m, k, n, rows, cols)


INTERLEAVED_SHAPES = [  # (rows, cols, L, M, K, N): partial last group, K = 1, K < S, K > S
    (2, 3, 2, 5, 7, 4),
    (2, 2, 5, 7, 3, 5),
    (3, 2, 4, 7, 1, 5),
    (2, 2, 3, 3, 9, 2),
    (1, 1, 5, 6, 4, 1),
    (2, 2, 6, 5, 9, 4),
]


@pytest.mark.parametrize("rows, cols, acc_stages, m, k, n", INTERLEAVED_SHAPES)
def test_interleaved_array_matches_golden_and_cycle_model(rows, cols, acc_stages, m, k, n):
    """PEs with an L-deep accumulator loop, L tiles interleaved: the same bits as the
    golden model, and the cycles of the closed form."""
    rng = np.random.default_rng([rows, cols, acc_stages, m, k, n])
    ta, tb = _operands(m, k, n, rng)
    config = ArrayConfig(rows, cols, acc_stages=acc_stages)
    dut = S2FP8Array(config=config)
    run = run_array(dut, ta, tb)
    assert_complete_and_exact(run, dut, ta, tb)
    assert run.cycles == gemm_cycles(m, k, n, config)
    model = gemm_schedule(m, k, n, config)
    assert run.accept == model.accept.tolist() and run.pops == model.results.tolist()


def test_array_with_idle_gaps_and_reduced_significand():
    rng = np.random.default_rng(7)
    ta, tb = _operands(5, 6, 3, rng)
    dut = S2FP8Array(config=ArrayConfig(2, 2, mant_bits=8))
    offer = np.cumsum(rng.integers(1, 3, 3 * 2 * 6))  # 36 beats, a gap before about half
    run = run_array(dut, ta, tb, offer=offer)
    assert_complete_and_exact(run, dut, ta, tb)


@pytest.mark.parametrize("kwargs", [dict(rows=0, cols=2), dict(rows=2, cols=65),
                                    dict(rows=2.0, cols=2), dict(rows=2, cols=2, mant_bits=0),
                                    dict(rows=2, cols=True)])
def test_array_rejects_bad_parameters(kwargs):
    with pytest.raises((TypeError, ValueError), match="rows|cols|mant_bits"):
        S2FP8Array(**kwargs)


def test_array_config_keywords_and_config_agree():
    config = ArrayConfig(3, 2, mant_bits=8)
    by_config = S2FP8Array(config=config)
    by_keywords = S2FP8Array(rows=3, cols=2, mant_bits=8)
    assert by_config.config == by_keywords.config == config
    assert (by_keywords.rows, by_keywords.cols, by_keywords.mant_bits) == (3, 2, 8)
    assert S2FP8Array(rows=2, cols=2).mant_bits == 24
    with pytest.raises(TypeError, match="not both"):
        S2FP8Array(config=config, rows=3)
    with pytest.raises(TypeError, match="ArrayConfig"):
        S2FP8Array(config=(3, 2))


# --------------------------------------------------------------- timing measured on the RTL

def _measure_unit_latency(dut, drive) -> int:
    """Cycles from ``valid_in`` high (cycle 0) to ``valid_out`` high, and the result then
    is the one of the operands driven (``drive(ctx)`` sets them and returns the expected
    result bits)."""
    measured = {}

    async def bench(ctx):
        expected = drive(ctx)
        ctx.set(dut.valid_in, 1)
        await ctx.tick()
        ctx.set(dut.valid_in, 0)
        for cycle in range(1, 20):
            if ctx.get(dut.valid_out):
                measured["latency"] = cycle
                assert ctx.get(dut.result.as_value()) == expected
                return
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return measured["latency"]


def test_multiplier_latency_measured():
    def drive(ctx):
        dut_a, dut_b = 0x40400000, 0x40A00000        # 3.0 * 5.0 = 15.0
        ctx.set(dut.a.as_value(), dut_a)
        ctx.set(dut.b.as_value(), dut_b)
        return 0x41700000
    for sig_bits in (24, 8):
        dut = FPMul(sig_bits=sig_bits)
        assert _measure_unit_latency(dut, drive) == arch.MUL_LATENCY == dut.latency
    for stages in arch.MUL_STAGES:
        dut = FPMul(stages=stages)
        assert _measure_unit_latency(dut, drive) == stages == dut.latency


@pytest.mark.parametrize("acc_stages", arch.ACC_STAGES)
def test_mac_latency_measured(acc_stages):
    """A sequence of three products: ``result.valid`` comes ``arch.mac_latency(L)`` cycles
    (``arch.MAC_LATENCY`` for L = 1) after the `last` beat was accepted, holding the sum.
    With L > 1 the beats go in slot 0, every L-th cycle."""
    rng = np.random.default_rng(3)
    ta, tb = s2fp8.encode(rng.standard_normal(64)), s2fp8.encode(rng.standard_normal(64))
    codes_a, codes_b = ta.codes[:3][None, :], tb.codes[:3][None, :]
    table_a, table_b = ta.table(24), tb.table(24)
    expected = int(golden.mac(table_a, table_b, codes_a, codes_b, np.zeros(1, np.uint32))[0])
    dut = S2FP8MAC(acc_stages=acc_stages)
    measured = {}

    async def bench(ctx):
        for address in range(len(table_a)):
            for port, table in ((dut.table_a, table_a), (dut.table_b, table_b)):
                ctx.set(port.en, 1)
                ctx.set(port.addr, address)
                ctx.set(port.data.as_value(), int(table[address]))
            await ctx.tick()
        for port in (dut.table_a, dut.table_b):
            ctx.set(port.en, 0)
        first_last = None
        for beat in range(3 * acc_stages):              # every slot sums the same sequence
            k = beat // acc_stages
            ctx.set(dut.operands.valid, 1)
            ctx.set(dut.operands.payload.a.as_value(), int(codes_a[0, k]))
            ctx.set(dut.operands.payload.b.as_value(), int(codes_b[0, k]))
            ctx.set(dut.operands.payload.first, k == 0)
            ctx.set(dut.operands.payload.last, k == 2)
            assert ctx.get(dut.operands.ready)
            assert not ctx.get(dut.result.valid)
            await ctx.tick()
            if k == 2 and first_last is None:
                first_last = beat
        ctx.set(dut.operands.valid, 0)
        cycle = 3 * acc_stages - 1 - first_last       # cycles since slot 0's `last` beat
        for _ in range(20):
            cycle += 1
            if ctx.get(dut.result.valid):
                measured.setdefault("latency", cycle)
                measured.setdefault("results", []).append(ctx.get(dut.result.payload.as_value()))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert measured["latency"] == arch.mac_latency(acc_stages) == dut.latency
    assert measured["latency"] == arch.MAC_LATENCY or acc_stages > 1
    assert measured["results"] == [expected] * acc_stages


@pytest.mark.parametrize("rows, cols", [(2, 3), (3, 2), (1, 1)])
def test_array_timing_measured(rows, cols):
    """On the RTL, with K = 1 (every beat is a tile's last): the first result row appears
    (C - 1) + pipeline latency cycles after its beat, the last row ``drain_cycles`` after;
    last beats are ``tile_spacing`` apart; with ``c.ready`` held low the array accepts
    exactly ``result_fifo_depth / R`` tiles and loses none of them."""
    config = ArrayConfig(rows, cols)
    rng = np.random.default_rng(rows * 10 + cols)
    tiles = config.result_fifo_depth // rows + 3
    ta, tb = _operands(rows * tiles, 1, cols, rng)
    dut = S2FP8Array(config=config)

    run = run_array(dut, ta, tb)
    assert_complete_and_exact(run, dut, ta, tb)
    assert run.pops[0] - run.accept[0] == (cols - 1) + config.pipeline_latency
    assert run.pops[rows - 1] - run.accept[0] == config.drain_cycles
    assert set(np.diff(run.accept)) == {config.tile_spacing}

    stalled = 4 * len(run.pops)                      # c.ready low long enough to fill up
    held = run_array(dut, ta, tb, ready=np.zeros(stalled, bool))
    assert_complete_and_exact(held, dut, ta, tb)
    accepted_while_stalled = sum(cycle < stalled for cycle in held.accept)
    assert accepted_while_stalled * rows == config.result_fifo_depth
    assert held.pops[0] == stalled                   # the FIFO's head, offered all along


# --------------------------------------------------- back-pressure and the scheduled model

def random_schedule(beats: int, rng, *, gap_prob=0.3, max_gap=4, stall_prob=0.05,
                    max_stall=40, length=400):
    """Beat offers with random gaps, and a ``c.ready`` mask with random low bursts of up to
    ``max_stall`` cycles (long enough to fill the result FIFO of a small array)."""
    gaps = np.where(rng.random(beats) < gap_prob, rng.integers(1, max_gap + 1, beats), 0)
    offer = (np.cumsum(gaps + 1) - 1).astype(np.int64)   # gaps[i] idle cycles before beat i
    ready = np.ones(length, bool)
    for start in np.flatnonzero(rng.random(length) < stall_prob):
        ready[start:start + rng.integers(1, max_stall + 1)] = False
    return offer, ready


BACKPRESSURE_SHAPES = [  # (rows, cols, L, M, K, N): ragged, K = 1, K < S, K >> S
    (2, 2, 1, 16, 1, 2),
    (2, 3, 1, 5, 7, 4),
    (3, 2, 1, 7, 2, 5),
    (2, 2, 1, 3, 13, 3),
    # interleaved: a beat that misses its slot's phase waits for the next turn
    (2, 2, 6, 7, 3, 5),
    (2, 3, 2, 5, 7, 4),
]


@pytest.mark.parametrize("rows, cols, acc_stages, m, k, n", BACKPRESSURE_SHAPES)
@pytest.mark.parametrize("trial", [0, 1])
def test_backpressure_exact_and_cycles_equal_scheduled_model(rows, cols, acc_stages, m, k, n,
                                                             trial):
    """Random valid gaps on a/b and ready gaps on c: every result bit-exact and complete,
    and every beat's accept cycle and every row's pop cycle equal to gemm_schedule."""
    rng = np.random.default_rng([rows, cols, m, k, n, trial] + [acc_stages] * (acc_stages > 1))
    ta, tb = _operands(m, k, n, rng)
    config = ArrayConfig(rows, cols, acc_stages=acc_stages)
    beats = int(padded_tiles(-(-m // rows) * -(-n // cols), acc_stages)) * k
    offer, ready = random_schedule(beats, rng)
    dut = S2FP8Array(config=config)
    run = run_array(dut, ta, tb, offer=offer, ready=ready)
    assert_complete_and_exact(run, dut, ta, tb)
    model = gemm_schedule(m, k, n, config, offer=offer, ready=ready)
    assert run.accept == model.accept.tolist()
    assert run.pops == model.results.tolist()


def test_result_credits_hold_back_the_array():
    """The issue's case: 2x2, M, K, N = 16, 1, 2, c.ready low for 80 cycles. Without the
    result-credit check in ``ready`` the FIFO overflows and rows are lost."""
    rng = np.random.default_rng(80)
    ta, tb = _operands(16, 1, 2, rng)
    dut = S2FP8Array(rows=2, cols=2)
    ready = np.zeros(80, bool)
    run = run_array(dut, ta, tb, ready=ready)
    assert_complete_and_exact(run, dut, ta, tb)
    model = gemm_schedule(16, 1, 2, dut.config, ready=ready)
    assert run.accept == model.accept.tolist() and run.pops == model.results.tolist()
