"""cocotb bench (runs inside the simulator): a pipelined two-operand block with ports
``a``, ``b``, ``valid_in``, ``result``, ``valid_out`` (hw.fp32.FPMul, FPAddUnit).

Job vectors: ``a``, ``b`` (uint32). Params: ``latency`` (drain length), ``idle_prob``,
``max_gap``. Results: ``in_cycle``, ``out_cycle``, ``out_result``, ``cycles``, ``sim_seconds``.
The host side is ``hw.tb.fp32_checks.run_fp32_binop``.
"""
from __future__ import annotations

import time

import numpy as np

import cocotb

from hw.tb.harness import (StreamDriver, StreamMonitor, as_int_list, issue_schedule, load_job,
                           run_stream, start_clock_and_reset)


@cocotb.test()
async def binop_stream(dut):
    job = load_job()
    rng = np.random.default_rng(job.seed)
    a, b = job.vectors["a"], job.vectors["b"]
    schedule = issue_schedule(a.size, rng, job.params.get("idle_prob", 0.2),
                              job.params.get("max_gap", 3))
    edge = await start_clock_and_reset(dut)
    driver = StreamDriver(dut.valid_in, [(dut.a, as_int_list(a)), (dut.b, as_int_list(b))],
                          schedule)
    monitor = StreamMonitor(dut.valid_out, {"result": dut.result})
    start = time.perf_counter()
    cycles = await run_stream(edge, driver, monitor, drain=int(job.params["latency"]) + 4)
    seconds = time.perf_counter() - start
    dut._log.info("%d vectors in %d cycles, %.2f s, %.0f vectors/s", a.size, cycles, seconds,
                  a.size / max(seconds, 1e-9))
    job.save(in_cycle=driver.in_cycles(), cycles=np.int64(cycles),
             sim_seconds=np.float64(seconds), **monitor.arrays())
