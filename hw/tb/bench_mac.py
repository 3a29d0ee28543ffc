"""cocotb bench (runs inside the simulator): the S2FP8 MAC (hw.mac.S2FP8MAC).

Job vectors: ``table_a``, ``table_b`` (uint32[128]); ``payload`` (uint32 per beat: a code,
b code, first, last packed as the ``operands.payload`` port lays them out); ``init``
(uint32 per beat, the FP32 start value, meaningful on `first` beats). Params:
``idle_prob``, ``max_gap``, ``latency``.

The bench loads both tables through their write ports, then streams every beat with
random idle gaps (``operands.valid`` low) and records each ``result`` beat. Results:
``in_cycle`` (the cycle each beat was presented and accepted), ``out_cycle``,
``out_result``, ``cycles``, ``sim_seconds``. The host side is ``hw.tb.mac_checks``.
"""
from __future__ import annotations

import time

import numpy as np

import cocotb

from hw.tb.harness import (StreamDriver, StreamMonitor, as_int_list, issue_schedule, load_job,
                           load_tables, reader, run_stream, start_clock_and_reset)


@cocotb.test()
async def mac_stream(dut):
    job = load_job()
    rng = np.random.default_rng(job.seed)
    payload, init = job.vectors["payload"], job.vectors["init"]
    schedule = issue_schedule(payload.size, rng, job.params.get("idle_prob", 0.2),
                              job.params.get("max_gap", 3))
    edge = await start_clock_and_reset(dut)
    await load_tables(edge, dut, {"table_a": job.vectors["table_a"],
                                  "table_b": job.vectors["table_b"]})
    await edge
    ready = reader(dut.operands__ready)
    if not ready():
        raise AssertionError("operands.ready is low with no table write in progress")
    driver = StreamDriver(dut.operands__valid, [(dut.operands__payload, as_int_list(payload)),
                                                (dut.init, as_int_list(init))], schedule)
    monitor = StreamMonitor(dut.result__valid, {"result": dut.result__payload})
    start = time.perf_counter()
    cycles = await run_stream(edge, driver, monitor, drain=int(job.params["latency"]) + 4)
    seconds = time.perf_counter() - start
    dut._log.info("%d beats in %d cycles, %.2f s, %.0f beats/s", payload.size, cycles, seconds,
                  payload.size / max(seconds, 1e-9))
    job.save(in_cycle=driver.in_cycles(), cycles=np.int64(cycles),
             sim_seconds=np.float64(seconds), **monitor.arrays())
