"""Host side of the bulk co-simulation of the systolic array (``hw.tb.bulk``): random GEMM
jobs up to a MAC budget, run by the C++ harness (one process per CPU on consecutive runs
of jobs), and the scoreboard that checks every result bit-exact and complete against
``pysim.numerics.golden.gemm`` and the cycle of every accepted beat and every result row
against ``pysim.perf.cycles.gemm_schedule``.

The jobs are like those of the cocotb array bench (``hw.tb.array_checks``: Inf/NaN codes,
zeros, subnormal-producing statistics, ragged shapes), except that the share of Inf/NaN
codes falls with K (:func:`make_bulk_job`); they alternate between back to back with
``c`` always ready and random operand gaps with result back-pressure bursts that use up
the result FIFO's credits. The per-cycle cocotb bench stays for the directed cycle shapes
and the small random GEMMs (``hw.tb.array_checks``); this one carries the volume.

Checks (``CHECKS``, collected by ``hw.tb.registry.all_checks``; the count is a MAC budget):
- ``array_bulk_4x4_w24``: 1e6 MACs on the 4x4 array at the full level;
- ``array_bulk_8x8_w24``: the volume, 1.2e7 MACs on the 8x8 array at the full level
  (~8 s with warm builds; what lifts the full regression past 1e7 vectors).
"""
from __future__ import annotations

import os
import time

import numpy as np

from pysim.perf.arch import ArrayConfig

from .array_checks import job_vectors, make_job, score_jobs
from .bulk import get_bulk_build, run_bulk
from .runner import Check
from .scoreboard import Report


def make_bulk_job(shape, rng, config: ArrayConfig, gaps: bool) -> dict:
    """One GEMM job (the fields of ``hw.tb.array_checks.make_job``) whose Inf/NaN codes are
    ~0.05/K of the operands: about one result in ten is Inf/NaN whatever K. (At the cocotb
    bench's fixed 1 %, a K = 500 dot product of 1000 codes has a special one in all but
    0.99**1000 = 4e-5 of the results: the volume would check NaN propagation only.)"""
    return make_job(shape, rng, config, gaps, special=min(0.01, 0.05 / shape[1]))


def random_jobs(macs: int, rng: np.random.Generator, config: ArrayConfig) -> list:
    """Random GEMM jobs until ``macs`` multiply-accumulates: one in three small and
    ragged (dimensions up to 3 tiles or 40, as the cocotb bench's), the others with
    K of a few hundred and several tiles (so table loads and drains are a small part of
    the run); every other job with random gaps and back-pressure."""
    jobs, total = [], 0
    rows, cols = config.rows, config.cols
    while total < macs:
        if len(jobs) % 3 == 0:
            limit = int(rng.choice([3 * rows, 40]))
            shape = tuple(int(v) for v in rng.integers(1, limit, 3))
        else:
            shape = (int(rng.integers(1, 6 * rows + 1)), int(rng.integers(100, 600)),
                     int(rng.integers(1, 6 * cols + 1)))
        jobs.append(make_bulk_job(shape, rng, config, gaps=len(jobs) % 2 == 1))
        total += int(np.prod(shape))
    return jobs


def run_bulk_jobs(name: str, jobs: list, *, config: ArrayConfig, build_root=None,
                  keep: bool = False, registered: bool = False, shards: int = 1) -> Report:
    """Run ``jobs`` through the bulk harness and score them (:func:`run_and_score`)."""
    return run_and_score(name, jobs, config=config, build_root=build_root, keep=keep,
                         registered=registered, shards=shards)[0]


def run_and_score(name: str, jobs: list, *, config: ArrayConfig, build_root=None,
                  keep: bool = False, registered: bool = False, shards: int = 1):
    """(Report, hw.tb.bulk.BulkResult) of one harness run of ``jobs``; ``registered``:
    on the registered-input build (``hw.tb.bulk.build_harness``); ``shards``: harness
    processes side by side (``hw.tb.bulk.run_bulk``). The report's ``sim_seconds`` is the
    cycle loop (wall, the longest shard's), the notes add the cycles, the harness
    processes' CPU time and the builds."""
    start = time.monotonic()
    built = get_bulk_build(config, build_root, registered=registered)
    vectors = job_vectors(jobs, config)
    result = run_bulk(built, vectors, keep=keep, shards=shards)
    report = score_jobs(name, jobs, vectors["rows"], result.results, config)
    report.sim_seconds = float(result.results["sim_seconds"])
    report.seconds = time.monotonic() - start
    cycles = int(result.results["cycles"])
    report.notes.append(f"{len(jobs)} GEMMs, {cycles:,} cycles in {report.sim_seconds:.2f} s "
                        f"of C++ loop ({shards} harness processes {result.seconds:.2f} s wall, "
                        f"{result.cpu_seconds:.2f} s CPU); accept and result cycles "
                        f"{'equal to' if report.ok else 'checked against'} gemm_schedule")
    if not built.model.cached:
        report.notes.append(f"built {built.model.top} in {built.model.seconds:.1f} s")
    if not built.cached:
        report.notes.append(f"built the bulk harness in {built.seconds:.1f} s")
    return report, result


def run_random_bulk(macs: int, seed: int, *, config: ArrayConfig, build_root=None) -> Report:
    """The registered check: ``random_jobs`` on the cocotb build's model (no Verilator
    build of its own: CI builds the array for the cocotb checks anyway), one harness
    process per CPU."""
    rng = np.random.default_rng(seed)
    return run_bulk_jobs(bulk_check_name(config), random_jobs(macs, rng, config),
                         config=config, build_root=build_root, shards=os.cpu_count() or 1)


def bulk_check_name(config: ArrayConfig) -> str:
    return f"array_bulk_{config.name}"


#: configurations and MAC budgets per level
BULK_CONFIGS = ((ArrayConfig(4, 4), {"quick": 200_000, "full": 1_000_000}),
                (ArrayConfig(8, 8), {"quick": 1_000_000, "full": 12_000_000}))

CHECKS = [Check(bulk_check_name(c), counts,
                lambda n, seed, c=c, **kw: run_random_bulk(n, seed, config=c, **kw))
          for c, counts in BULK_CONFIGS]
