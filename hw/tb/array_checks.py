"""Host side of the systolic-array regression: GEMM jobs tiled by ``pysim.perf.tiler``, results
bit-exact against ``pysim.numerics.golden.gemm``, cycles equal to ``pysim.perf.cycles.gemm_cycles``.

Checks (``CHECKS``, collected by ``hw.tb.registry.all_checks``):
- ``array_cycles_{4x4,8x8}``: ``CYCLE_SHAPES`` (ragged edges, K = 1, K < max(R, C),
  K >> R, single-element and multi-tile GEMMs) fed without idle cycles: every result
  bit-exact and the counted cycles (first beat accepted to last result row, inclusive)
  equal to the cycle model.
- ``array_gemm_4x4_w{24,8}``: random GEMMs with Inf/NaN codes, zeros, subnormal-producing
  statistics and ragged shapes, fed with random idle cycles: bit-exact.
"""
from __future__ import annotations

import time

import numpy as np

from pysim.numerics import golden, s2fp8
from pysim.perf.arch import ArrayConfig
from pysim.perf.cycles import gemm_cycles
from pysim.numerics.formats import E5M2
from pysim.numerics.rounding import fp32_bits
from pysim.perf.tiler import operand_beats, place_results

from .runner import Check, add_build_notes, run_bench
from .scoreboard import MAX_RECORDED, Report

#: (M, K, N) shapes whose cycle counts are checked on each array size.
CYCLE_SHAPES = (
    (1, 1, 1), (1, 40, 1), (3, 1, 5), (8, 8, 8), (9, 17, 7), (5, 3, 11),
    (16, 2, 16), (7, 64, 9), (12, 5, 4), (4, 33, 12), (17, 9, 3), (2, 120, 2),
)
#: (alpha, beta) pairs for the operands of random jobs (the last makes subnormal products).
STATISTICS = ((5.0, 21.0), (1.5, 3.0), (0.25, 0.5), (16.0, 40.0), (1.0, 60.0), (1.0, 75.0))


def _random_tensor(shape, rng, stats) -> s2fp8.S2FP8Tensor:
    finite = np.concatenate([np.arange(0, E5M2.inf_bits), np.arange(0x80, 0x80 + E5M2.inf_bits)])
    codes = rng.choice(finite, shape).astype(np.uint8)
    codes[rng.random(shape) < 0.15] = 0
    special = rng.random(shape) < 0.01
    codes[special] = rng.integers(E5M2.inf_bits, 0x80, int(special.sum()), dtype=np.uint8) \
        | (rng.integers(0, 2, int(special.sum())) << 7).astype(np.uint8)
    return s2fp8.S2FP8Tensor(codes=codes, alpha=stats[0], beta=stats[1])


def make_job(shape, rng, config: ArrayConfig, idle):
    m, k, n = shape
    sa = STATISTICS[rng.integers(len(STATISTICS))]
    sb = STATISTICS[rng.integers(len(STATISTICS))]
    ta, tb = _random_tensor((m, k), rng, sa), _random_tensor((k, n), rng, sb)
    a_beats, b_beats = operand_beats(ta.codes, tb.codes, config.rows, config.cols)
    return dict(ta=ta, tb=tb, shape=shape, a_beats=a_beats, b_beats=b_beats, idle=idle,
                table_a=ta.table(config.mant_bits), table_b=tb.table(config.mant_bits),
                expected=fp32_bits(golden.gemm(ta, tb, mant_bits=config.mant_bits)))


def run_array_jobs(name: str, jobs: list, *, config: ArrayConfig, seed: int,
                   check_cycles: bool, build_root=None) -> Report:
    start = time.monotonic()
    rows, cols = config.rows, config.cols
    top = config.top_name
    vectors = {
        "tables_a": np.stack([j["table_a"] for j in jobs]),
        "tables_b": np.stack([j["table_b"] for j in jobs]),
        "k": np.array([j["shape"][1] for j in jobs], np.int64),
        "beats": np.array([len(j["a_beats"]) for j in jobs], np.int64),
        "idle": np.array([j["idle"] for j in jobs], np.float64),
        "a_beats": np.concatenate([j["a_beats"] for j in jobs]),
        "b_beats": np.concatenate([j["b_beats"] for j in jobs]),
        "rows": np.array([len(j["a_beats"]) // j["shape"][1] * rows for j in jobs], np.int64),
    }
    result, built = run_bench(top, "hw.tb.bench_array", vectors, seed=seed,
                              params={"row_bits": max(rows - 1, 0).bit_length(), "cols": cols},
                              build_root=build_root)
    got = result.results
    macs = sum(int(np.prod(j["shape"])) for j in jobs)
    report = Report(name, vectors=macs)
    row_offset = 0
    for index, job in enumerate(jobs):
        m, k, n = job["shape"]
        count = int(vectors["rows"][index])
        indices = got["row_index"][row_offset:row_offset + count]
        values = got["row_values"][row_offset:row_offset + count]
        row_offset += count
        if not np.array_equal(indices, np.tile(np.arange(rows), count // rows)):
            report.errors.append(f"job {index} {m}x{k}x{n}: result rows out of order: "
                                 f"{indices[:2 * rows].tolist()} ...")
        out = place_results(values, m, n, rows, cols)
        bad = np.argwhere(out != job["expected"])
        report.mismatches += len(bad)
        for position in bad[:max(0, MAX_RECORDED - len(report.errors))]:
            i, j = (int(p) for p in position)
            report.errors.append(f"job {index} {m}x{k}x{n}: C[{i},{j}] expected "
                                 f"{int(job['expected'][i, j]):#010x}, got {int(out[i, j]):#010x}")
        if check_cycles:
            counted = int(got["last_cycle"][index] - got["first_cycle"][index] + 1)
            model = gemm_cycles(m, k, n, config)
            if counted != model:
                report.errors.append(f"job {index} {m}x{k}x{n}: RTL took {counted} cycles, "
                                     f"the cycle model says {model}")
    report.seconds = time.monotonic() - start
    report.notes.append(f"{len(jobs)} GEMMs, {macs:,} MACs (the vectors column)")
    if check_cycles:
        report.notes.append(f"cycles equal to the model on all {len(jobs)} shapes"
                            if not any("cycles" in e for e in report.errors) else
                            "cycle model mismatch")
    return add_build_notes(report, built, result)


def run_cycle_shapes(n: int, seed: int, *, config: ArrayConfig, build_root=None) -> Report:
    rng = np.random.default_rng(seed)
    jobs = [make_job(shape, rng, config, idle=0.0) for shape in CYCLE_SHAPES[:n]]
    return run_array_jobs(cycles_check_name(config), jobs, config=config, seed=seed,
                          check_cycles=True, build_root=build_root)


def run_random_gemms(n: int, seed: int, *, config: ArrayConfig, build_root=None) -> Report:
    rng = np.random.default_rng(seed)
    rows = config.rows
    shapes = [tuple(int(v) for v in rng.integers(1, limit, 3))
              for limit in rng.choice([3 * rows, 4 * rows, 40], n)]
    jobs = [make_job(shape, rng, config, idle=0.25) for shape in shapes]
    return run_array_jobs(gemm_check_name(config), jobs, config=config, seed=seed,
                          check_cycles=False, build_root=build_root)


def cycles_check_name(config: ArrayConfig) -> str:
    return f"array_cycles_{config.rows}x{config.cols}"


def gemm_check_name(config: ArrayConfig) -> str:
    return f"array_gemm_{config.name}"


#: the configurations whose cycle counts are checked, and those run with random GEMMs
CYCLE_CONFIGS = (ArrayConfig(4, 4), ArrayConfig(8, 8))
GEMM_CONFIGS = ((ArrayConfig(4, 4), {"quick": 6, "full": 30}),
                (ArrayConfig(4, 4, mant_bits=8), {"quick": 3, "full": 10}))


def _checks():
    shapes = len(CYCLE_SHAPES)
    checks = [Check(cycles_check_name(c), {"quick": shapes, "full": shapes},
                    lambda n, seed, c=c, **kw: run_cycle_shapes(n, seed, config=c, **kw))
              for c in CYCLE_CONFIGS]
    checks += [Check(gemm_check_name(c), counts,
                     lambda n, seed, c=c, **kw: run_random_gemms(n, seed, config=c, **kw))
               for c, counts in GEMM_CONFIGS]
    return checks


CHECKS = _checks()
