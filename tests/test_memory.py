"""Memory model (pysim.perf.memory): exact reduction to the cycle model, physical bounds
on every built-in model, S2FP8 against BF16/FP32, the schedule algebra against the step-
by-step schedule, the blocking search against brute force, exact large counts, the
worked example of docs/memory.md, configuration errors and the ``s2fp8 cycles`` flags."""
from __future__ import annotations

import itertools
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pysim.cli import main
from pysim.errors import BadInput
from pysim.perf import arch
from pysim.perf.accel import Accelerator, load_accelerator
from pysim.perf.cycles import breakdown, gemm_cycles, gemm_schedule
from pysim.perf.energy import EnergyTable
from pysim.perf.formats_cost import OPERAND_FORMATS
from pysim.perf.gemm import Gemm
from pysim.perf.memory import (MODES, Timing, beat_release, choose_blocking,
                               explicit_schedule, gemm_timing, memory_report, model_format,
                               stream_plan)
from pysim.perf.report import cycle_report, format_table, to_json
from pysim.workload.models import MODELS, build_model, training_step_gemms

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model_gemms():
    return {name: training_step_gemms(build_model(name)) for name in MODELS}


def compulsory(gemm: Gemm, fmt: str, out_bytes: int):
    e = OPERAND_FORMATS[fmt].element_bytes
    meta = 2 * OPERAND_FORMATS[fmt].metadata_bytes
    reads = (gemm.m * gemm.k + gemm.k * gemm.n) * e * gemm.count + meta * gemm.count
    return reads, gemm.m * gemm.n * out_bytes * gemm.count


# ------------------------------------------------------------------ exact reduction

@pytest.mark.parametrize("buffers", [None, 4096])
def test_unlimited_bandwidth_reduces_to_the_cycle_model(model_gemms, buffers):
    """Unlimited bandwidth: cycles = breakdown().total (table load + gemm_cycles) for every
    GEMM, whatever the buffers (unlimited, or 4 KiB forcing chunked streaming)."""
    for name, gemms in model_gemms.items():
        acc = Accelerator(rows=16, cols=8, a_bytes=buffers, b_bytes=buffers,
                          results_bytes=None, dram_bw=None)
        result = model_format(gemms, acc, "s2fp8")
        ref = cycle_report(gemms, 16, 8)
        assert result.cycles == [int(c) for c in ref.cycles.total], name
        assert result.compute == result.cycles and set(result.stall) == {0}
        for g, cycles in zip(gemms, result.cycles):
            if g.count == 1:
                assert cycles == arch.TABLE_LOAD_CYCLES + gemm_cycles(g.m, g.k, g.n, 16, 8)


# ------------------------------------------------------------------ physical bounds

BOUND_CONFIGS = [  # (rows, cols, operand KiB, bandwidth, double-buffered)
    (32, 32, 256, Fraction(32), True),
    (8, 16, 16, Fraction(5, 2), False),
    (64, 64, 64, Fraction(128), True),
]


@pytest.mark.parametrize("config", BOUND_CONFIGS, ids=lambda c: f"{c[0]}x{c[1]}-{c[2]}KiB-{c[3]}")
def test_physical_bounds_on_every_builtin_model(model_gemms, config):
    """DRAM reads >= compulsory (each operand element once, plus metadata), writes ==
    compulsory (each result once), cycles >= max(compute, ceil(bytes / bandwidth))."""
    rows, cols, kib, bw, double = config
    acc = Accelerator(rows=rows, cols=cols, a_bytes=kib * 512, b_bytes=kib * 512,
                      dram_bw=bw, double_buffered=double)
    for name, gemms in model_gemms.items():
        report = memory_report(gemms, acc, ["s2fp8", "bf16", "fp32"], name)
        for fmt, result in report.formats.items():
            for i, g in enumerate(gemms):
                reads, writes = compulsory(g, fmt, 4)
                assert result.dram_read[i] >= reads, (name, fmt, g)
                assert result.dram_write[i] == writes, (name, fmt, g)
                moved = result.dram_read[i] + result.dram_write[i]
                assert result.cycles[i] >= result.compute[i]
                assert result.cycles[i] >= -(-moved * bw.denominator // bw.numerator), (name, g)


def test_s2fp8_fewer_stalls_and_bytes_when_memory_bound(model_gemms):
    """Where a GEMM is memory-bound in BF16 or FP32, S2FP8 has strictly fewer stall cycles
    and DRAM bytes; compute cycles are the same in every format. The only exceptions
    allowed are GEMMs so small that S2FP8's per-tensor metadata (2 x 520 bytes) outweighs
    what its 1-byte elements save (docs/memory.md)."""
    checked, exceptions = 0, set()
    for name, gemms in model_gemms.items():
        for rows, kib, bw in itertools.product((8, 32), (16, 256), (8, 64)):
            acc = Accelerator(rows=rows, cols=rows, a_bytes=kib * 512, b_bytes=kib * 512,
                              dram_bw=Fraction(bw))
            report = memory_report(gemms, acc, ["s2fp8", "bf16", "fp32"], name)
            s2 = report.formats["s2fp8"]
            for fmt in ("bf16", "fp32"):
                other = report.formats[fmt]
                e = OPERAND_FORMATS[fmt].element_bytes
                assert s2.compute == other.compute
                for i, g in enumerate(gemms):
                    if other.bound(i, acc) != "memory":
                        continue
                    saved = (g.m * g.k + g.k * g.n) * (e - 1)
                    if saved <= 2 * OPERAND_FORMATS["s2fp8"].metadata_bytes:
                        exceptions.add((name, g.layer, g.phase))
                        continue
                    checked += 1
                    assert s2.stall[i] < other.stall[i], (name, fmt, rows, kib, bw, g)
                    assert (s2.dram_read[i] + s2.dram_write[i]
                            < other.dram_read[i] + other.dram_write[i]), (name, fmt, g)
    assert checked > 500            # the property is not vacuous
    assert exceptions <= {("ncf", "predict", "dgrad")}


# ------------------------------------------------------- schedule algebra = explicit steps

@settings(max_examples=300, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 6), m=st.integers(1, 40),
       k=st.integers(1, 40), n=st.integers(1, 40), count=st.integers(1, 3),
       mode=st.sampled_from(MODES), data=st.data(), double=st.booleans(),
       bw=st.sampled_from([None, Fraction(1), Fraction(3, 2), Fraction(7), Fraction(64)]),
       e=st.sampled_from([1, 2, 4]), o=st.sampled_from([2, 4]), meta=st.sampled_from([0, 1040]))
def test_closed_form_schedule_equals_step_by_step(rows, cols, m, k, n, count, mode, data,
                                                  double, bw, e, o, meta):
    """The O(1) segment sums (gemm_timing) give exactly the cycle count of simulating the
    same steps one by one (explicit_schedule), for every mode and blocking; the steps
    cover every beat, start only once their loads are done, and compute = breakdown."""
    acc = Accelerator(rows=rows, cols=cols, a_bytes=None, b_bytes=None, results_bytes=None,
                      double_buffered=double, dram_bw=bw, output={2: "bf16", 4: "fp32"}[o])
    mt = data.draw(st.integers(1, -(-m // rows)))
    nt = data.draw(st.integers(1, -(-n // cols)))
    kb = data.draw(st.integers(1, k))
    ref = breakdown(m, k, n, rows, cols, count)
    extra = int(breakdown(2 * rows, k, cols, rows, cols).tile_overhead)
    args = (acc, mode, m, k, n, count, mt, nt, kb, e, o, meta, extra, int(ref.fill_drain),
            int(ref.table_load))
    compute, total, loads, stores = gemm_timing(*args)
    steps = explicit_schedule(*args)
    assert compute == int(ref.total)
    assert total == steps[-1]["done"]
    assert sum(s["beats"] for s in steps) == int(ref.tiles) * k
    assert sum(s["load_bytes"] for s in steps) == loads
    assert sum(s["store_bytes"] for s in steps) == stores == m * n * o * count
    assert all(s["load_done"] <= s["start"] < s["end"] for s in steps)
    if bw is None:
        assert total == compute
    # the RTL hook: every tile once per instance, one release cycle per beat, in order
    tiles, release = beat_release(*args)
    mtiles, ntiles = -(-m // rows), -(-n // cols)
    assert sorted(tiles) == sorted(list(itertools.product(range(mtiles), range(ntiles))) * count)
    assert len(release) == len(tiles) * k and np.all(np.diff(release) >= 0)
    if mode in ("mn", "nm"):   # a step is one block: its tiles, in tile_order's blocks
        m_sizes = [min(mt, mtiles - i) for i in range(0, mtiles, mt)]
        n_sizes = [min(nt, ntiles - j) for j in range(0, ntiles, nt)]
        pairs = (itertools.product(m_sizes, n_sizes) if mode == "mn"
                 else ((a, b) for b, a in itertools.product(n_sizes, m_sizes)))
        blocks = list(pairs) * count
        assert [s["beats"] for s in steps] == [a * b * k for a, b in blocks]
        position = 0
        for a, b in blocks:     # the step's tiles are an a x b block of tile_order
            group = tiles[position:position + a * b]
            assert len({i for i, _ in group}) == a and len({j for _, j in group}) == b
            position += a * b
    else:                       # a step is one chunk of one tile
        assert all(s["beats"] <= kb for s in steps) and len(steps) == len(tiles) * -(-k // kb)
    assert release[0] >= ref.table_load and release[-1] <= steps[-1]["start"]


# ------------------------------------------- memory model = the array's own timing

def assert_array_agrees(steps, release, table_load, m_tiles, k, n, rows, cols, count):
    """The beats released at ``release`` through ``gemm_schedule`` (the RTL's exact
    timing): every step's first beat presented (offered, the beat before it accepted) at
    its ``start``, its last beat accepted one cycle before its ``end``, and the last
    result row one cycle before ``done`` minus the last store. ``count`` instances are
    ``count`` times the tiles (M padded to whole tiles)."""
    offer = release - table_load
    run = gemm_schedule(m_tiles * rows * count, k, n, rows, cols, offer=offer)
    accept = np.concatenate([[-1], run.accept]) + table_load   # accept[i + 1]: beat i
    first = 0
    for step in steps:
        presented = max(int(release[first]), int(accept[first]) + 1)
        assert presented == step["start"], step
        first += step["beats"]
        if step is not steps[-1]:
            assert accept[first] + 1 == step["end"], step
    assert table_load + run.finish + 1 == steps[-1]["end"]     # the last row, drained


@settings(max_examples=250, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 6), m=st.integers(1, 30),
       k=st.integers(1, 20), n=st.integers(1, 30), count=st.integers(1, 3),
       mode=st.sampled_from(MODES), data=st.data(), double=st.booleans(),
       bw=st.sampled_from([None, Fraction(1), Fraction(3, 2), Fraction(7), Fraction(64)]),
       e=st.sampled_from([1, 2, 4]), meta=st.sampled_from([0, 1040]))
def test_model_equals_gemm_schedule_of_its_released_beats(rows, cols, m, k, n, count, mode,
                                                         data, double, bw, e, meta):
    """Exactness under limited bandwidth: the memory model's step starts and ends and its
    total are what the array does (``gemm_schedule``, equal to the RTL cycle for cycle)
    with each beat offered at its release cycle, for every mode, blocking, buffering and
    bandwidth, K < S (the spacing can bind after a stall) included; and the closed form
    (gemm_timing) gives the same total."""
    acc = Accelerator(rows=rows, cols=cols, a_bytes=None, b_bytes=None, results_bytes=None,
                      double_buffered=double, dram_bw=bw)
    mt = data.draw(st.integers(1, -(-m // rows)))
    nt = data.draw(st.integers(1, -(-n // cols)))
    kb = data.draw(st.integers(1, k))
    ref = breakdown(m, k, n, rows, cols, count)
    extra = int(breakdown(2 * rows, k, cols, rows, cols).tile_overhead)
    args = (acc, mode, m, k, n, count, mt, nt, kb, e, 4, meta, extra, int(ref.fill_drain),
            int(ref.table_load))
    steps = explicit_schedule(*args)
    _, release = beat_release(*args)
    assert_array_agrees(steps, release, int(ref.table_load), -(-m // rows), k, n, rows, cols,
                        count)
    assert gemm_timing(*args)[1] == steps[-1]["done"]


def test_model_equals_gemm_schedule_on_chosen_blockings():
    """The same through model_format's own choice (stream_plan), on seeded random ragged
    GEMMs, accelerators whose small buffers force every mode, and two bandwidths."""
    rng = np.random.default_rng(11)
    modes = set()
    for _ in range(100):
        rows, cols = (int(v) for v in rng.integers(1, 9, 2))
        m, k, n = (int(v) for v in rng.integers(1, 60, 3))
        e = 4
        acc = Accelerator(rows=rows, cols=cols, a_bytes=int(rng.integers(2, 40)) * rows * e,
                          b_bytes=int(rng.integers(2, 40)) * cols * e,
                          results_bytes=int(rng.integers(2, 6)) * rows * cols * 4,
                          double_buffered=bool(rng.integers(2)),
                          dram_bw=Fraction(int(rng.choice([2, 16]))))
        plan = stream_plan(Gemm("g", "forward", m, k, n), acc, "fp32")
        modes.add(plan.blocking.split()[0])
        assert_array_agrees(plan.steps, plan.release, plan.table_load, -(-m // rows), k, n,
                            rows, cols, 1)
    assert modes == set(MODES)


def test_a_stall_covers_the_spacing():
    """K = 2 < S = 4 on a 4 x 4 array, 8 B/cycle: each 8 x 2 x 8 S2FP8 block waits for its
    bytes, and while it waits the spacing of its tiles' last beats elapses: the array
    finishes 2 cycles earlier than charging max(K, S) per tile after the stall would."""
    g = Gemm("x", "forward", 8, 2, 8)
    acc = Accelerator(rows=4, cols=4, a_bytes=None, b_bytes=None, results_bytes=None,
                      dram_bw=Fraction(8))
    result = model_format([g], acc, "s2fp8")
    assert result.compute[0] == 128 + 2 + 3 * 4 + 3 + 3 + 5 == 153
    assert result.cycles[0] == 183      # charging the spacing after the stall: 185
    plan = stream_plan(g, acc, "s2fp8")
    run = gemm_schedule(8, 2, 8, 4, 4, offer=plan.release - plan.table_load)
    assert plan.table_load + run.finish + 1 + plan.last_store == 183


def test_double_buffering_hides_what_single_buffering_pays():
    """A block sequence whose transfers are shorter than its compute: no stall beyond the
    first load double-buffered; every transfer added single-buffered."""
    g = [Gemm("x", "forward", 256, 64, 64)]
    common = dict(rows=16, cols=16, a_bytes=None, b_bytes=None, dram_bw=Fraction(64))
    double = model_format(g, Accelerator(**common, double_buffered=True), "s2fp8")
    single = model_format(g, Accelerator(**common, double_buffered=False), "s2fp8")
    assert double.stall[0] < single.stall[0]
    moved = double.dram_read[0] + double.dram_write[0]
    assert single.cycles[0] >= single.compute[0] + moved // 64 - arch.TABLE_LOAD_CYCLES


# ------------------------------------------------------------- blocking search optimum

def brute_force_traffic(m, k, n, acc, e, o):
    """Minimum A + B bytes over every mt, nt, both orders and the streamed modes."""
    R, C, slots = acc.rows, acc.cols, acc.slots
    cap_a, cap_b, cap_r = acc.a_bytes // slots, acc.b_bytes // slots, acc.results_bytes // slots
    mtiles, ntiles = -(-m // R), -(-n // C)
    best = None
    for mt, nt in itertools.product(range(1, mtiles + 1), range(1, ntiles + 1)):
        rows, cols = min(mt * R, m), min(nt * C, n)
        if rows * k * e > cap_a or k * cols * e > cap_b or rows * cols * o > cap_r:
            continue
        nbm, nbn = -(-mtiles // mt), -(-ntiles // nt)
        mn = m * k * e + k * n * e * (1 if nbn == 1 else nbm)
        nm = k * n * e + m * k * e * (1 if nbm == 1 else nbn)
        best = min(x for x in (best, mn, nm) if x is not None)
    r1, c1 = min(R, m), min(C, n)
    if r1 * c1 * o <= cap_r:
        if r1 * k * e <= cap_a and cap_b >= c1 * e:
            best = min(x for x in (best, m * k * e + k * n * e * mtiles) if x is not None)
        if c1 * k * e <= cap_b and cap_a >= r1 * e:
            best = min(x for x in (best, m * k * e * ntiles + k * n * e) if x is not None)
        if cap_a >= r1 * e and cap_b >= c1 * e:
            best = min(x for x in (best, m * k * e * ntiles + k * n * e * mtiles)
                       if x is not None)
    return best


@settings(max_examples=150, deadline=None)
@given(rows=st.integers(1, 8), cols=st.integers(1, 8), m=st.integers(1, 70),
       k=st.integers(1, 70), n=st.integers(1, 70), a=st.integers(1, 600),
       b=st.integers(1, 600), r=st.integers(1, 12), e=st.sampled_from([1, 2, 4]))
def test_blocking_search_finds_the_minimum_traffic(rows, cols, m, k, n, a, b, r, e):
    """The vectorized search (powers of two, the largest fitting block, the whole
    dimension) finds the same minimum DRAM traffic as trying every mt x nt."""
    acc = Accelerator(rows=rows, cols=cols, a_bytes=2 * a * rows * e, b_bytes=2 * b * cols * e,
                      results_bytes=2 * r * rows * cols * 4)
    chosen = choose_blocking([m], [k], [n], acc, e, 4)
    assert int(chosen.a_read[0] + chosen.b_read[0]) == brute_force_traffic(m, k, n, acc, e, 4)


# ------------------------------------------------------------ exact integers, bounds

def test_counts_are_exact_beyond_float_precision():
    """Totals above 2**53 are exact Python ints (no float rounding, no int64 wrap)."""
    g = Gemm("big", "forward", m=2 ** 20 + 1, k=3, n=2 ** 12 + 3, count=2 ** 24 + 1)
    acc = Accelerator(rows=64, cols=64, dram_bw=Fraction(7, 3))
    result = model_format([g], acc, "fp32")
    writes = g.m * g.n * 4 * g.count
    assert result.dram_write[0] == writes and writes > 2 ** 53 and type(writes) is int
    tiles = -(-g.m // 64) * -(-g.n // 64) * g.count
    assert result.compute[0] == arch.TABLE_LOAD_CYCLES + 3 + (tiles - 1) * 64 + 63 + 63 + \
        arch.PIPELINE_CYCLES
    assert result.cycles[0] >= -(-(result.dram_read[0] + writes) * 3 // 7)


def test_overflowing_gemm_is_rejected_by_name():
    g = Gemm("huge", "wgrad", m=10 ** 7, k=10 ** 7, n=10 ** 7)
    with pytest.raises(BadInput, match=r"layer 'huge' \(wgrad\).*too large"):
        model_format([g], Accelerator(rows=8, cols=8), "bf16")


# ------------------------------------------------------------------- worked example

def test_worked_example_of_the_docs():
    """docs/memory.md: M=64, K=32, N=32 on 16x16, S2FP8, A = B = 1 KiB single-buffered
    (room for two A panels, two B panels), 16 B/cycle, FP32 results; then the same
    double-buffered with twice the buffers."""
    g = Gemm("example", "forward", 64, 32, 32)
    acc = Accelerator(rows=16, cols=16, a_bytes=1024, b_bytes=1024, results_bytes=4096,
                      double_buffered=False, dram_bw=Fraction(16))
    result = model_format([g], acc, "s2fp8")
    assert describe(result) == ("mn", 1, 2)
    assert result.a_read[0] == 2048 and result.b_read[0] == 1024
    assert result.metadata_read[0] == 1040 and result.dram_write[0] == 8192
    assert result.compute[0] == 128 + 32 + 7 * 32 + 15 + 15 + 5 == 419
    assert result.cycles[0] == 161 + 3 * (64 + 160) + 64 + 35 + 128 == 1060
    assert result.stall[0] == 641
    double = Accelerator(rows=16, cols=16, a_bytes=2048, b_bytes=2048, results_bytes=8192,
                         dram_bw=Fraction(16))
    steps = explicit_schedule(double, "mn", 64, 32, 32, 1, 1, 2, 32, 1, 4, 1040, 0, 35, 128)
    assert [s["start"] for s in steps] == [193, 353, 513, 641]
    assert steps[-1]["done"] == model_format([g], double, "s2fp8").cycles[0] == 868


def describe(result):
    b = result.blocking
    return MODES[int(b.mode[0])], int(b.mt[0]), int(b.nt[0])


# ------------------------------------------------------------------------ energy

def test_energy_table_published_points_and_overrides():
    table = EnergyTable()
    assert table.sram(8 << 10) == pytest.approx(1.25)
    assert table.sram(32 << 10) == pytest.approx(2.5)
    assert table.sram(1 << 20) == pytest.approx(12.5)
    assert table.sram(16 << 10) == pytest.approx(1.25 * 2 ** 0.5)
    assert table.mac(OPERAND_FORMATS["fp32"], 24) == pytest.approx(3.7 + 0.9)
    assert table.mac(OPERAND_FORMATS["fp16"], 24) == pytest.approx(1.1 + 0.9)
    assert table.mac(OPERAND_FORMATS["s2fp8"], 24) == pytest.approx(3.7 + 0.9)
    assert table.mac(OPERAND_FORMATS["s2fp8"], 8) == pytest.approx(
        table.mac(OPERAND_FORMATS["bf16"], 24))


def test_energy_of_a_gemm_adds_up(tmp_path):
    """energy = DRAM bytes x pJ/B + SRAM bytes x pJ/B(size) + MACs x pJ/MAC, and the TOML
    overrides reach it."""
    toml = tmp_path / "acc.toml"
    toml.write_text("[array]\nrows = 16\ncols = 16\n[buffers]\na_bytes = 32768\n"
                    "b_bytes = 32768\nresults_bytes = 32768\n[energy]\ndram_pj_per_byte = 100.0\n"
                    "sram_pj_per_byte = [[1024, 2.0]]\n[energy.mac_pj]\nbf16 = 1.5\n")
    acc = load_accelerator(toml)
    g = Gemm("x", "forward", 100, 70, 50)
    r = model_format([g], acc, "bf16")
    moved = r.dram_read[0] + r.dram_write[0]
    expected = 100.0 * moved + 2.0 * (r.sram_reads[0] + r.sram_writes[0]) + 1.5 * g.macs
    assert r.energy_pj[0] == pytest.approx(expected)


# ------------------------------------------------------------------- configuration

@pytest.mark.parametrize("text, message", [
    ("[array]\nrows = 8\ncols = 8\n[bufers]\n", r"acc.toml: unknown section \[bufers\]"),
    ("[array]\nrows = 8\ncols = 8\nrow = 3\n", r"\[array\] unknown key 'row'"),
    ("[array]\nrows = 80\ncols = 8\n", r"acc.toml: \[array\] rows: .*1..64, got 80"),
    ("[array]\nrows = 8\ncols = 8\n[dram]\nbytes_per_cycle = -3\n",
     r"\[dram\] bytes_per_cycle: must be > 0.*-3"),
    ("[array]\nrows = 8\ncols = 8\n[buffers]\na_bytes = 'lots'\n",
     r"\[buffers\] a_bytes: must be an integer number of bytes.*'lots'"),
    ("[array]\nrows = 8\ncols = 8\n[formats]\noperand = 'int8'\n",
     r"\[formats\] operand: unknown format 'int8'"),
    ("[array]\nrows = 8\ncols = 8\n[formats]\noutput = 's2fp8'\n", r"not supported yet"),
    ("[array]\nrows = 8\ncols = 8\n[buffers]\nresults_bytes = 100\n",
     r"results buffer of 100 bytes cannot hold"),
    ("[array]\nrows = 8\ncols = 8\n[energy]\nsram_pj_per_byte = [[2, 1.0], [1, 2.0]]\n",
     r"sizes must increase"),
    ("[array\n", r"acc.toml: malformed TOML"),
    ("[buffers]\na_bytes = 1024\n", r"array rows: not given"),
])
def test_bad_config_names_file_key_and_value(tmp_path, text, message):
    path = tmp_path / "acc.toml"
    path.write_text(text)
    with pytest.raises(BadInput, match=message):
        load_accelerator(path)


def test_flags_override_the_toml(tmp_path):
    path = tmp_path / "acc.toml"
    path.write_text("[array]\nrows = 8\ncols = 4\n[dram]\nbytes_per_cycle = 25.6\n"
                    "[buffers]\na_bytes = 1000\nb_bytes = 2000\n")
    acc = load_accelerator(path)
    assert (acc.rows, acc.cols, acc.dram_bw, acc.a_bytes) == (8, 4, Fraction(128, 5), 1000)
    acc = load_accelerator(path, rows=16, dram_bw="inf", buffer_kib="64")
    assert (acc.rows, acc.dram_bw, acc.a_bytes, acc.b_bytes) == (16, None, 32768, 32768)
    assert Timing(Fraction(128, 5), True).transfer(256) == 10   # 256 / 25.6 exactly


# ------------------------------------------------------------------------------ CLI

def test_cycles_without_memory_flags_is_unchanged(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["cycles", "transformer-tiny", "--rows", "8", "--cols", "8",
                 "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    gemms = training_step_gemms(build_model("transformer-tiny"))
    report = cycle_report(gemms, 8, 8, source="transformer-tiny")
    assert stdout == format_table(report) + f"wrote {out}\n"
    assert out.read_text() == to_json(report)


def test_cycles_formats_side_by_side(tmp_path, capsys):
    toml = tmp_path / "acc.toml"
    toml.write_text("[buffers]\nresults_bytes = 65536\ndouble_buffered = true\n")
    out, png = tmp_path / "m.json", tmp_path / "roof.png"
    assert main(["cycles", "resnet50", "--rows", "32", "--cols", "32", "--config", str(toml),
                 "--formats", "s2fp8,bf16,fp32", "--dram-bw", "32", "--buffer-kib", "256",
                 "--json", str(out), "--roofline", str(png), "-q"]) == 0
    stdout = capsys.readouterr().out
    assert "formats side by side" in stdout and "s2fp8" in stdout and "fp32" in stdout
    data = json.loads(out.read_text())
    assert list(data["formats"]) == ["s2fp8", "bf16", "fp32"]
    keys = {"name", "phase", "M", "K", "N", "count", "compute_cycles", "stall_cycles",
            "cycles", "dram_read_bytes", "dram_write_bytes", "energy_pj"}
    for fmt, block in data["formats"].items():
        assert len(block["gemms"]) == 161 and keys <= set(block["gemms"][0])
        for key in keys - {"name", "phase", "M", "K", "N", "count"}:
            assert block["total"][key] == pytest.approx(sum(g[key] for g in block["gemms"]))
    s2, bf = data["formats"]["s2fp8"]["total"], data["formats"]["bf16"]["total"]
    assert s2["compute_cycles"] == bf["compute_cycles"] and s2["cycles"] < bf["cycles"]
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_cycles_formats_on_a_scalesim_csv(tmp_path, capsys):
    from pysim.workload.importers.scalesim import import_scalesim
    csv_file = Path(__file__).parent / "data" / "alexnet.csv"
    out, png = tmp_path / "m.json", tmp_path / "roof.png"
    assert main(["cycles", str(csv_file), "--rows", "16", "--cols", "16", "--formats",
                 "s2fp8,bf16", "--json", str(out), "--roofline", str(png)]) == 0
    assert "== bf16 operands" in capsys.readouterr().out
    data = json.loads(out.read_text())
    gemms = import_scalesim(csv_file).gemms()
    assert [g["name"] for g in data["formats"]["s2fp8"]["gemms"]] == [g.layer for g in gemms]
    assert png.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("args, message", [
    (["--dram-bw", "0"], "--dram-bw: must be > 0"),
    (["--dram-bw", "fast"], "--dram-bw: must be a number of bytes per cycle"),
    (["--buffer-kib", "1.5"], "--buffer-kib: must be an integer"),
    (["--formats", "s2fp8,int4"], "--formats: unknown format 'int4'"),
    (["--formats", "bf16", "--roofline", "r.pdf"], "--roofline: the file name must end in .png"),
    (["--config", "missing.toml"], "missing.toml: cannot read"),
    (["--config", "acc.toml"], "acc.toml: [array] rows = 16 disagrees with --rows 8"),
])
def test_cycles_bad_memory_flags(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    if "acc.toml" in args:
        (tmp_path / "acc.toml").write_text("[array]\nrows = 16\n")
    assert main(["cycles", "ncf", "--rows", "8", "--cols", "8", "--json", "out.json",
                 *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir() if p.name != "acc.toml"] == []
