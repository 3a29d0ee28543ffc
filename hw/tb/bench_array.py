"""cocotb bench (runs inside the simulator): GEMM jobs through the systolic array
(hw.array.S2FP8Array).

Job vectors (J jobs): ``tables_a``, ``tables_b`` (uint32[J, 128]), ``k`` (int64[J]),
``beats`` (int64[J], beats per job), ``idle`` (float64[J], probability of an idle cycle
before a beat), ``a_beats`` (uint8[sum(beats), R]), ``b_beats`` (uint8[sum(beats), C]),
``rows`` (int64[J], result rows to collect).

Per job: load both tables, set ``k``, stream the beats and collect ``rows`` result rows.
The loop samples and drives at the falling clock edge: under Verilator, right after a
rising edge the flops are updated but combinational outputs (``a.ready``, ``c.valid``
from the result FIFO) still show the previous cycle; mid-cycle everything has settled.
``b.valid`` stays high for the whole job and the random idle cycles are on ``a.valid``
(a beat moves only when both are valid), so ``a.ready`` is the array's own ready for the
cycle. Step k is the falling edge inside cycle k: outputs read then are cycle k's, inputs
written then are what the next rising edge samples. Results: ``row_index``, ``row_values`` (uint32[rows, C]),
``first_cycle``/``last_cycle`` per job (first beat accepted, last row on ``c``), ``cycles``,
``sim_seconds``. The host side is ``hw.tb.array_checks``.
"""
from __future__ import annotations

import time

import numpy as np

import cocotb

from cocotb.triggers import FallingEdge

from hw.tb.harness import load_job, reader, start_clock_and_reset, writer
from hw.tb.bench_mac import load_tables


def _pack(rows: np.ndarray) -> list[int]:
    """uint8[n, lanes] -> one int per beat, lane 0 in the low byte."""
    padded = np.zeros((rows.shape[0], 8 * ((rows.shape[1] + 7) // 8)), np.uint8)
    padded[:, :rows.shape[1]] = rows
    words = padded.view("<u8")
    return [sum(int(w) << (64 * i) for i, w in enumerate(row)) for row in words]


@cocotb.test()
async def array_gemms(dut):
    job = load_job()
    rng = np.random.default_rng(job.seed)
    vectors = job.vectors
    row_bits = int(job.params["row_bits"])
    cols = int(job.params["cols"])
    edge = await start_clock_and_reset(dut)
    falling = FallingEdge(dut.clk)
    a_valid, b_valid = writer(dut.a__valid), writer(dut.b__valid)
    a_payload, b_payload = writer(dut.a__payload), writer(dut.b__payload)
    a_ready = reader(dut.a__ready)
    c_valid, c_payload = reader(dut.c__valid), reader(dut.c__payload)
    dut.c__ready.value = 1
    a_words, b_words = _pack(vectors["a_beats"]), _pack(vectors["b_beats"])
    row_index, row_values, first_cycle, last_cycle = [], [], [], []
    step, offset = 0, 0
    start = time.perf_counter()
    for j in range(len(vectors["k"])):
        # k and b.valid settle during the table load, before the first beat
        dut.k.value = int(vectors["k"][j])
        b_valid(1)
        await load_tables(edge, dut, {"table_a": vectors["tables_a"][j],
                                      "table_b": vectors["tables_b"][j]})
        step += len(vectors["tables_a"][j]) + 1
        beats, rows_wanted = int(vectors["beats"][j]), int(vectors["rows"][j])
        idle = rng.random(beats) < float(vectors["idle"][j])
        beat, rows_seen, first, last = 0, 0, None, None
        while rows_seen < rows_wanted:
            await falling
            step += 1
            ready_now = a_ready() & 1          # the array's ready in this cycle
            if c_valid() & 1:
                word = c_payload()
                row_index.append(word & ((1 << row_bits) - 1))
                values = word >> row_bits
                row_values.append([(values >> (32 * i)) & 0xFFFFFFFF for i in range(cols)])
                rows_seen += 1
                last = step
            if beat < beats and idle[beat]:
                idle[beat] = False              # one idle cycle before this beat
                a_valid(0)
            elif beat < beats:
                a_payload(a_words[offset + beat])
                b_payload(b_words[offset + beat])
                a_valid(1)
                if ready_now:
                    first = step if first is None else first
                    beat += 1
            else:
                a_valid(0)
            if step - (first or step) > 100 * (beats + 1000):
                raise AssertionError(f"job {j}: {rows_seen} of {rows_wanted} result rows "
                                     f"after {step - first} cycles")
        a_valid(0)
        b_valid(0)
        offset += beats
        first_cycle.append(first)
        last_cycle.append(last)
    seconds = time.perf_counter() - start
    job.save(row_index=np.asarray(row_index, np.int64),
             row_values=np.asarray(row_values, np.uint32).reshape(-1, cols),
             first_cycle=np.asarray(first_cycle, np.int64),
             last_cycle=np.asarray(last_cycle, np.int64),
             cycles=np.int64(step), sim_seconds=np.float64(seconds))
