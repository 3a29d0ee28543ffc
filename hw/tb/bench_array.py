"""cocotb bench (runs inside the simulator): GEMM jobs through the systolic array
(hw.array.S2FP8Array), with operand gaps and result back-pressure given by the host.

Job vectors (J jobs): ``tables_a``, ``tables_b`` (uint32[J, 128]), ``k`` (int64[J]),
``beats`` (int64[J], beats per job), ``rows`` (int64[J], result rows to collect),
``a_beats`` (uint8[sum(beats), R]), ``b_beats`` (uint8[sum(beats), C]), ``offer``
(int64[sum(beats)]: the first cycle of its job each beat may be offered), ``ready``
(uint8[sum(ready_len)]: ``c.ready`` per cycle of each job, high past its end) and
``ready_len`` (int64[J]). Cycle 0 of a job is the first cycle after its table load; the
schedule semantics are those of ``pysim.perf.cycles.gemm_schedule``.

Per job: set ``k``, load both tables, then one step per cycle with the harness's timing
convention (``hw.tb.harness``): in step k the bench reads ``a.ready``, ``c.valid`` and
``c.payload`` as they were in cycle k-1 (a beat offered then and ready was accepted in
cycle k-1; a valid row with ``c.ready`` driven high then left in cycle k-1) and drives
cycle k. ``a`` and ``b`` are valid together. Results: ``accept`` (int64 per beat),
``pop`` (int64 per result row), ``row_index``, ``row_values`` (uint32[rows, C]),
``stalled_job`` (the job that stopped producing rows, which ends the run; -1 if none),
``cycles``, ``sim_seconds``. The host side is ``hw.tb.array_checks``.
"""
from __future__ import annotations

import time

import numpy as np

import cocotb

from hw.tb.harness import (load_job, load_tables, pack_lanes, reader, start_clock_and_reset,
                           writer)


@cocotb.test()
async def array_gemms(dut):
    job = load_job()
    vectors = job.vectors
    row_bits = int(job.params["row_bits"])
    cols = int(job.params["cols"])
    edge = await start_clock_and_reset(dut)
    a_valid, b_valid, c_ready = writer(dut.a__valid), writer(dut.b__valid), writer(dut.c__ready)
    a_payload, b_payload = writer(dut.a__payload), writer(dut.b__payload)
    a_ready = reader(dut.a__ready)
    c_valid, c_payload = reader(dut.c__valid), reader(dut.c__payload)
    a_words, b_words = pack_lanes(vectors["a_beats"]), pack_lanes(vectors["b_beats"])
    offers = vectors["offer"].tolist()
    ready_masks = np.split(vectors["ready"].astype(bool),
                           np.cumsum(vectors["ready_len"])[:-1])
    accept, pop, row_index, row_values = [], [], [], []
    steps, offset, stalled = 0, 0, -1
    start = time.perf_counter()
    for j in range(len(vectors["k"])):
        dut.k.value = int(vectors["k"][j])
        a_valid(0)
        b_valid(0)
        c_ready(1)                                # ready_driven below starts True
        await load_tables(edge, dut, {"table_a": vectors["tables_a"][j],
                                      "table_b": vectors["tables_b"][j]})
        steps += len(vectors["tables_a"][j])
        beats, rows_wanted = int(vectors["beats"][j]), int(vectors["rows"][j])
        ready_mask = ready_masks[j].tolist()
        ready_len = len(ready_mask)
        never = 1 << 62
        next_offer = offers[offset] if beats else never   # offer cycle of beat `beat`
        limit = 100 * (beats + 1000) + len(ready_mask) + (offers[offset + beats - 1] if beats else 0)
        beat, rows_seen, cycle = 0, 0, 0
        presented_beat = -1                       # the beat whose payload is on the ports
        valid_driven, ready_driven = False, True  # written only when they change (speed)
        while True:
            # --- drive cycle `cycle` ---
            offered = cycle >= next_offer
            if offered and presented_beat != beat:
                a_payload(a_words[offset + beat])
                b_payload(b_words[offset + beat])
                presented_beat = beat
            if offered != valid_driven:
                a_valid(int(offered))
                b_valid(int(offered))
                valid_driven = offered
            ready_now = cycle >= ready_len or ready_mask[cycle]
            if ready_now != ready_driven:
                c_ready(int(ready_now))
                ready_driven = ready_now
            await edge
            # --- what happened in cycle `cycle` ---
            if offered and a_ready() & 1:
                accept.append(cycle)
                beat += 1
                next_offer = offers[offset + beat] if beat < beats else never
            if ready_now and c_valid() & 1:
                word = c_payload()
                row_index.append(word & ((1 << row_bits) - 1))
                values = word >> row_bits
                row_values.append([(values >> (32 * i)) & 0xFFFFFFFF for i in range(cols)])
                pop.append(cycle)
                rows_seen += 1
            cycle += 1
            if rows_seen == rows_wanted and beat == beats:
                break
            if cycle > limit:                      # lost rows: the host reports them
                dut._log.error("job %d: %d of %d result rows, %d of %d beats after %d cycles",
                               j, rows_seen, rows_wanted, beat, beats, cycle)
                stalled = j
                break
        steps += cycle
        offset += beats
        if stalled >= 0:
            break
    a_valid(0)
    b_valid(0)
    seconds = time.perf_counter() - start
    job.save(accept=np.asarray(accept, np.int64), pop=np.asarray(pop, np.int64),
             row_index=np.asarray(row_index, np.int64),
             row_values=np.asarray(row_values, np.uint32).reshape(-1, cols),
             stalled_job=np.int64(stalled), cycles=np.int64(steps), sim_seconds=np.float64(seconds))
