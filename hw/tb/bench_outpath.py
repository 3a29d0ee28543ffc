"""cocotb bench (runs inside the simulator): the output path (hw.outpath.OutputPath).

Job vectors: ``values`` (uint32 [beats, C], every tensor zero-padded to whole beats,
tensors one after the other), ``first``, ``last`` (uint8 per beat). Params: ``lanes``,
``idle_prob``, ``max_gap``.

Pass 1: every tensor streams through the statistics unit back to back, with random idle
gaps; each ``stats_result`` beat is recorded. Then per tensor, as the controller would:
the scalar step (``pysim.numerics.outpath.scalar_step`` on the RTL's own statistics),
the threshold table written through ``thresholds`` while ``encoder_busy`` is low, and
pass 2: the tensor's beats through the encoder (random gaps), codes recorded.
Results: ``stats`` (the raw result words as decimal strings: up to 220 bits), ``alpha``,
``beta`` (float32 per tensor), ``codes`` (uint8 [beats, C]), ``stats_in_cycle`` (cycle
of each `last` beat), ``stats_out_cycle``, ``encode_lag`` (cycles from each encoder
beat to its codes), ``sim_seconds``. The host side is ``hw.tb.outpath_checks``.
"""
from __future__ import annotations

import time

import numpy as np

import cocotb

from hw.tb.harness import (StreamDriver, StreamMonitor, as_int_list, issue_schedule, load_job,
                           reader, run_stream, start_clock_and_reset, writer)
from pysim.numerics.formats import FP32
from pysim.numerics.outpath import scalar_step, threshold_table

_WORD = FP32.width


def _pack(rows, extra=None) -> list[int]:
    """Per beat, the lanes' words as one int (lane i at bit 32 i), plus ``extra`` bits
    (list of (array, bit offset)) above."""
    words = []
    for index, row in enumerate(rows.tolist()):
        word = 0
        for lane, value in enumerate(row):
            word |= value << (_WORD * lane)
        for array, offset in extra or ():
            word |= int(array[index]) << offset
        words.append(word)
    return words


class WideMonitor(StreamMonitor):
    """A monitor whose words may be wider than 64 bits: kept as Python ints."""

    def words(self, name: str) -> list[int]:
        index = self.names.index(name)
        mask = (1 << self.widths[index]) - 1
        return [value & mask for value in self.values[index]]


@cocotb.test()
async def outpath_two_passes(dut):
    from hw.tb.outpath_checks import decode_stats   # host helpers, no simulator state
    job = load_job()
    rng = np.random.default_rng(job.seed)
    lanes = int(job.params["lanes"])
    idle, gap = job.params.get("idle_prob", 0.2), job.params.get("max_gap", 3)
    values, first, last = job.vectors["values"], job.vectors["first"], job.vectors["last"]
    edge = await start_clock_and_reset(dut)
    start = time.perf_counter()

    # --- pass 1: statistics, all tensors back to back ---------------------------------
    beats = _pack(values, [(first, _WORD * lanes), (last, _WORD * lanes + 1)])
    driver = StreamDriver(dut.stats_in__valid, [(dut.stats_in__payload, beats)],
                          issue_schedule(len(beats), rng, idle, gap))
    monitor = WideMonitor(dut.stats_result__valid, {"stats": dut.stats_result__payload})
    await run_stream(edge, driver, monitor, drain=12)
    stats_words, stats_cycles = monitor.words("stats"), np.asarray(monitor.cycles, np.int64)
    last_cycles = driver.in_cycles()[np.flatnonzero(last)]

    # --- controller + pass 2: per tensor, table then encode ---------------------------
    busy = reader(dut.encoder_busy)
    en, addr, data = writer(dut.thresholds__en), writer(dut.thresholds__addr), \
        writer(dut.thresholds__data)
    tensors = np.split(np.arange(values.shape[0]), np.flatnonzero(last)[:-1] + 1)
    alphas, betas, codes, lags = [], [], [], []
    for tensor, word in zip(tensors, stats_words):
        alpha, beta = scalar_step(decode_stats(word))
        alphas.append(alpha)
        betas.append(beta)
        if busy():
            raise AssertionError("encoder_busy high with no value in flight")
        for address, entry in enumerate(as_int_list(threshold_table(alpha, beta))):
            en(1)
            addr(address)
            data(entry)
            await edge
        en(0)
        driver = StreamDriver(dut.encode_in__valid, [(dut.encode_in__payload, _pack(values[tensor]))],
                              issue_schedule(tensor.size, rng, idle, gap))
        monitor = StreamMonitor(dut.codes__valid, {"codes": dut.codes__payload})
        await run_stream(edge, driver, monitor, drain=10)
        got = monitor.arrays()
        codes.append(got["out_codes"])
        lags.append(got["out_cycle"] - driver.in_cycles()[:got["out_cycle"].size])
    seconds = time.perf_counter() - start
    codes = np.concatenate(codes).astype(np.uint64)
    lanes_codes = (codes[:, None] >> (8 * np.arange(lanes, dtype=np.uint64))) & np.uint64(0xFF)
    job.save(stats=np.array([str(w) for w in stats_words]),
             stats_out_cycle=stats_cycles, stats_in_cycle=last_cycles,
             alpha=np.array(alphas, np.float32), beta=np.array(betas, np.float32),
             codes=lanes_codes.astype(np.uint8), encode_lag=np.concatenate(lags),
             sim_seconds=np.float64(seconds))
