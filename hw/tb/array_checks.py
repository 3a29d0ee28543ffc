"""Host side of the systolic-array regression: GEMM jobs tiled by ``pysim.perf.tiler``,
results bit-exact and complete against ``pysim.numerics.golden.gemm``, and the cycle of
every accepted beat and every result row equal to ``pysim.perf.cycles.gemm_schedule``.

Checks (``CHECKS``, collected by ``hw.tb.registry.all_checks``):
- ``array_cycles_{4x4,8x8}``: ``CYCLE_SHAPES`` (ragged edges, K = 1, K < max(R, C),
  K >> R, single-element and multi-tile GEMMs) fed back to back with ``c`` always ready:
  bit-exact, and the cycles equal to the closed form ``gemm_cycles`` too.
- ``array_gemm_4x4_w{24,8}``: random GEMMs with Inf/NaN codes, zeros, subnormal-producing
  statistics and ragged shapes, with random gaps on ``a``/``b`` and random ``c.ready``
  bursts long enough to exhaust the result credits (:func:`random_schedule`): bit-exact,
  no row lost, cycles equal to ``gemm_schedule``.
- ``array_memory_4x4_w24``: ragged GEMMs streamed as the memory model schedules them
  under limited DRAM bandwidth (``pysim.perf.memory.stream_plan``: ``MEMORY_CASES``, two
  bandwidths, single and double buffering, buffers from unlimited to a few beats): beats
  fed in the model's tile order, each no earlier than its release cycle; bit-exact, every
  cycle equal to ``gemm_schedule``, every step's first beat presented and last beat
  accepted when the model says, and the last row out in exactly the model's cycles.
"""
from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from pysim.numerics import golden, s2fp8
from pysim.perf.arch import LIFTED_ACC_STAGES, ArrayConfig
from pysim.perf.accel import Accelerator
from pysim.perf.cycles import gemm_cycles, gemm_schedule
from pysim.perf.gemm import Gemm
from pysim.perf.memory import stream_plan
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


def random_tensor(shape, rng, stats, special: float = 0.01) -> s2fp8.S2FP8Tensor:
    """Random finite codes, 15 % zeros and a share ``special`` of Inf/NaN codes."""
    finite = np.concatenate([np.arange(0, E5M2.inf_bits), np.arange(0x80, 0x80 + E5M2.inf_bits)])
    codes = rng.choice(finite, shape).astype(np.uint8)
    codes[rng.random(shape) < 0.15] = 0
    mask = rng.random(shape) < special
    codes[mask] = rng.integers(E5M2.inf_bits, 0x80, int(mask.sum()), dtype=np.uint8) \
        | (rng.integers(0, 2, int(mask.sum())) << 7).astype(np.uint8)
    return s2fp8.S2FP8Tensor(codes=codes, alpha=stats[0], beta=stats[1])


def random_schedule(beats: int, rng: np.random.Generator, config: ArrayConfig, *,
                    gap_prob: float = 0.25, max_gap: int = 3, stall_prob: float = 0.03):
    """Beat offers with random gaps (``gap_prob`` of the beats come 1..``max_gap`` cycles
    late) and a ``c.ready`` mask with random low bursts long enough to use up the result
    FIFO's credits (up to 3 x ``result_fifo_depth`` cycles), over the cycles the job is
    likely to take; the consumer is ready after the mask."""
    gaps = np.where(rng.random(beats) < gap_prob, rng.integers(1, max_gap + 1, beats), 0)
    offer = (np.cumsum(gaps + 1) - 1).astype(np.int64)   # gaps[i] idle cycles before beat i
    length = int(offer[-1]) + 2 * beats + 4 * config.result_fifo_depth
    ready = np.ones(length, bool)
    for first in np.flatnonzero(rng.random(length) < stall_prob):
        ready[first:first + rng.integers(1, 3 * config.result_fifo_depth + 1)] = False
    return offer, ready


def make_job(shape, rng, config: ArrayConfig, gaps: bool, plan=None, special: float = 0.01):
    """One GEMM job with random operands (a share ``special`` of Inf/NaN codes); ``gaps``:
    random operand gaps and result back-pressure (:func:`random_schedule`), else beats
    back to back and ``c`` always ready; ``plan`` (a memory-model ``StreamPlan``): tiles
    in its order, beats offered at its release cycles, ``c`` always ready."""
    m, k, n = shape
    sa = STATISTICS[rng.integers(len(STATISTICS))]
    sb = STATISTICS[rng.integers(len(STATISTICS))]
    ta, tb = random_tensor((m, k), rng, sa, special), random_tensor((k, n), rng, sb, special)
    a_beats, b_beats = operand_beats(ta.codes, tb.codes, config.rows, config.cols,
                                     config.interleave)
    order = None
    if plan is not None:
        if config.interleave > 1:
            raise ValueError("memory plans stream whole tiles: an interleaved array "
                             f"({config.name}) is not modelled by pysim.perf.memory")
        col_tiles = -(-n // config.cols)
        order = np.array([i * col_tiles + j for i, j in plan.tiles])
        a_beats = a_beats.reshape(len(order), k, -1)[order].reshape(-1, config.rows)
        b_beats = b_beats.reshape(len(order), k, -1)[order].reshape(-1, config.cols)
        offer, ready = plan.release - plan.table_load, np.ones(0, bool)
    elif gaps:
        offer, ready = random_schedule(len(a_beats), rng, config)
    else:
        offer, ready = np.zeros(len(a_beats), np.int64), np.ones(0, bool)
    return dict(ta=ta, tb=tb, shape=shape, a_beats=a_beats, b_beats=b_beats, offer=offer,
                ready=ready, plan=plan, order=order, table_a=ta.table(config.mant_bits),
                table_b=tb.table(config.mant_bits),
                expected=fp32_bits(golden.gemm(ta, tb, mant_bits=config.mant_bits)))


def job_vectors(jobs: list, config: ArrayConfig) -> dict:
    """The stimulus of ``jobs`` (:func:`make_job` dicts) as the array benches' job vectors
    (the cocotb bench and the bulk harness read the same)."""
    rows = config.rows
    return {
        "tables_a": np.stack([j["table_a"] for j in jobs]),
        "tables_b": np.stack([j["table_b"] for j in jobs]),
        "k": np.array([j["shape"][1] for j in jobs], np.int64),
        "beats": np.array([len(j["a_beats"]) for j in jobs], np.int64),
        "a_beats": np.concatenate([j["a_beats"] for j in jobs]),
        "b_beats": np.concatenate([j["b_beats"] for j in jobs]),
        "rows": np.array([len(j["a_beats"]) // j["shape"][1] * rows for j in jobs], np.int64),
        "offer": np.concatenate([j["offer"] for j in jobs]),
        "ready": np.concatenate([j["ready"] for j in jobs]).astype(np.uint8),
        "ready_len": np.array([len(j["ready"]) for j in jobs], np.int64),
    }


def score_jobs(name: str, jobs: list, rows_per_job, got: dict, config: ArrayConfig) -> Report:
    """The array scoreboard: every result row present, in order and bit-exact (against
    each job's ``expected``), every beat's accept cycle and row's pop cycle equal to
    ``gemm_schedule`` under the job's own offer and ready patterns (and to a memory plan's
    steps, for a job that has one). ``got``: the bench's results (accept, pop, row_index,
    row_values, stalled_job)."""
    rows, cols = config.rows, config.cols
    report = Report(name, vectors=sum(int(np.prod(j["shape"])) for j in jobs))
    row_offset = beat_offset = 0
    stalled = int(got["stalled_job"])
    for index, job in enumerate(jobs):
        m, k, n = job["shape"]
        label = f"job {index} {m}x{k}x{n}"
        count, beats = int(rows_per_job[index]), len(job["a_beats"])
        indices = got["row_index"][row_offset:row_offset + count]
        values = got["row_values"][row_offset:row_offset + count]
        pops = got["pop"][row_offset:row_offset + count]
        accepted = got["accept"][beat_offset:beat_offset + beats]
        row_offset += count
        beat_offset += beats
        if index == stalled or len(indices) < count:
            report.mismatches += sum(int(np.prod(j["shape"][::2])) for j in jobs[index:])
            report.errors.append(f"{label}: {len(indices)} of {count} result rows, "
                                 f"{len(accepted)} of {beats} beats accepted: rows lost")
            break
        if not np.array_equal(indices, np.tile(np.arange(rows), count // rows)):
            report.errors.append(f"{label}: result rows out of order: "
                                 f"{indices[:2 * rows].tolist()} ...")
        if job.get("order") is not None:   # tiles back from the model's order to row-major
            unordered = np.empty_like(values.reshape(len(job["order"]), rows, cols))
            unordered[job["order"]] = values.reshape(len(job["order"]), rows, cols)
            values = unordered.reshape(-1, cols)
        out = place_results(values, m, n, rows, cols)
        bad = np.argwhere(out != job["expected"])
        report.mismatches += len(bad)
        for position in bad[:max(0, MAX_RECORDED - len(report.errors))]:
            i, j = (int(p) for p in position)
            report.errors.append(f"{label}: C[{i},{j}] expected "
                                 f"{int(job['expected'][i, j]):#010x}, got {int(out[i, j]):#010x}")
        model = gemm_schedule(m, k, n, config, offer=job["offer"], ready=job["ready"])
        for what, rtl, predicted in (("beat", accepted, model.accept),
                                     ("result row", pops, model.results)):
            differ = np.flatnonzero(rtl != predicted)
            # past MAX_RECORDED errors the report has failed already: no longer list
            if differ.size and len(report.errors) < MAX_RECORDED:
                first = int(differ[0])
                report.errors.append(f"{label}: {what} {first} at cycle {int(rtl[first])} in "
                                     f"the RTL, {int(predicted[first])} in gemm_schedule "
                                     f"({differ.size} differ)")
        if job.get("plan") is not None:
            report.errors += memory_plan_errors(label, job["plan"], accepted, pops)
        if not len(job["ready"]) and not job["offer"].any() \
                and model.cycles != gemm_cycles(m, k, n, config):
            report.errors.append(f"{label}: gemm_schedule {model.cycles} cycles, "
                                 f"gemm_cycles {gemm_cycles(m, k, n, config)}")
    if row_offset != len(got["row_index"]) and stalled < 0:
        report.errors.append(f"{len(got['row_index']) - row_offset} result rows more than "
                             f"the jobs produce")
    return report


def run_array_jobs(name: str, jobs: list, *, config: ArrayConfig, seed: int,
                   build_root=None) -> Report:
    """Run the jobs through the array's RTL (the cocotb bench) and score them
    (:func:`score_jobs`)."""
    start = time.monotonic()
    vectors = job_vectors(jobs, config)
    result, built = run_bench(config.top_name, "hw.tb.bench_array", vectors, seed=seed,
                              params={"row_bits": max(config.rows - 1, 0).bit_length(),
                                      "cols": config.cols},
                              build_root=build_root)
    report = score_jobs(name, jobs, vectors["rows"], result.results, config)
    report.seconds = time.monotonic() - start
    report.notes.append(f"{len(jobs)} GEMMs, {report.vectors:,} MACs (the vectors column); "
                        f"accept and result cycles "
                        f"{'equal to' if report.ok else 'checked against'} gemm_schedule")
    return add_build_notes(report, built, result)


def memory_plan_errors(label: str, plan, accepted, pops) -> list[str]:
    """The RTL against the memory model's own schedule (``plan.steps``): each step's first
    beat presented (offered, the previous beat accepted) at its ``start``, its last beat
    accepted one cycle before its ``end``, and the last result row out at the model's
    total minus the last store (cycles counted from the first table-load cycle)."""
    errors = []
    base = plan.table_load        # the bench counts from the cycle after the table load
    accept = np.concatenate([[-1 - base], np.asarray(accepted, np.int64)]) + base
    first = 0
    for index, step in enumerate(plan.steps):
        presented = max(int(plan.release[first]), int(accept[first]) + 1)
        first += step["beats"]
        ends = (int(accept[first]) + 1 if index + 1 < len(plan.steps)
                else base + int(pops[-1]) + 1)
        if (presented, ends) != (step["start"], step["end"]):
            errors.append(f"{label}: step {index} ({plan.blocking}) presented its first beat "
                          f"in cycle {presented} and ended in {ends} in the RTL, "
                          f"{step['start']} and {step['end']} in the memory model")
            break
    rtl_cycles = base + int(pops[-1]) + 1 + plan.last_store
    if rtl_cycles != plan.cycles:
        errors.append(f"{label}: {rtl_cycles} cycles in the RTL (last row + last store), "
                      f"{plan.cycles} in the memory model ({plan.blocking})")
    return errors


#: (M, K, N), bytes/cycle, double-buffered, A and B operand buffers (bytes; None:
#: unlimited) for the memory-stream check on a 4 x 4 array: ragged edges, K = 1 and
#: K < S (the spacing after a stall), K >> S; 4 B/cycle starves every step (a beat is
#: 8 bytes), 16 B/cycle hides most transfers; buffers from unlimited down to a few
#: beats give every blocking mode (mn, nm, a-panel, b-panel, stream).
MEMORY_CASES = (
    ((9, 2, 7), 4, True, (None, None)), ((9, 2, 7), 16, False, (None, None)),
    ((8, 1, 12), 16, True, (None, None)), ((6, 3, 10), 4, False, (96, 96)),
    ((10, 17, 9), 4, True, (160, 24)), ((10, 17, 9), 16, False, (24, 80)),
    ((13, 5, 6), 16, True, (64, 64)), ((5, 23, 11), 16, False, (40, 40)),
    ((12, 6, 5), 4, True, (32, 32)), ((21, 6, 6), 4, True, (48, 96)),
    ((16, 2, 16), 4, False, (256, 256)), ((3, 12, 14), 16, True, (24, 24)),
    ((5, 3, 11), 4, True, (24, 48)),
)


def run_memory_stream(n: int, seed: int, *, config: ArrayConfig, build_root=None) -> Report:
    rng = np.random.default_rng(seed)
    jobs = []
    for shape, bandwidth, double, (a_bytes, b_bytes) in MEMORY_CASES[:n]:
        acc = Accelerator(rows=config.rows, cols=config.cols, mant_bits=config.mant_bits,
                          a_bytes=a_bytes, b_bytes=b_bytes, results_bytes=None,
                          double_buffered=double, dram_bw=Fraction(bandwidth))
        plan = stream_plan(Gemm("memory", "forward", *shape), acc, "s2fp8")
        jobs.append(make_job(shape, rng, config, gaps=False, plan=plan))
    return run_array_jobs(memory_check_name(config), jobs, config=config, seed=seed,
                          build_root=build_root)


def run_cycle_shapes(n: int, seed: int, *, config: ArrayConfig, build_root=None) -> Report:
    rng = np.random.default_rng(seed)
    jobs = [make_job(shape, rng, config, gaps=False) for shape in CYCLE_SHAPES[:n]]
    return run_array_jobs(cycles_check_name(config), jobs, config=config, seed=seed,
                          build_root=build_root)


def run_random_gemms(n: int, seed: int, *, config: ArrayConfig, build_root=None) -> Report:
    rng = np.random.default_rng(seed)
    rows = config.rows
    shapes = [tuple(int(v) for v in rng.integers(1, limit, 3))
              for limit in rng.choice([3 * rows, 4 * rows, 40], n)]
    jobs = [make_job(shape, rng, config, gaps=True) for shape in shapes]
    return run_array_jobs(gemm_check_name(config), jobs, config=config, seed=seed,
                          build_root=build_root)


def cycles_check_name(config: ArrayConfig) -> str:
    return f"array_cycles_{config.rows}x{config.cols}{config.pipeline_suffix}"


def gemm_check_name(config: ArrayConfig) -> str:
    return f"array_gemm_{config.name}"


def memory_check_name(config: ArrayConfig) -> str:
    return f"array_memory_{config.name}"


#: the configurations whose cycle counts are checked, and those run with random GEMMs
#: (the pipelined 4x4, L = LIFTED_ACC_STAGES tiles interleaved, shares one build)
LIFTED_CONFIG = ArrayConfig(4, 4, acc_stages=LIFTED_ACC_STAGES)
CYCLE_CONFIGS = (ArrayConfig(4, 4), ArrayConfig(8, 8), LIFTED_CONFIG)
#: the array the memory-stream check runs on (the same build as array_gemm_4x4_w24)
MEMORY_CONFIG = ArrayConfig(4, 4)
GEMM_CONFIGS = ((ArrayConfig(4, 4), {"quick": 6, "full": 30}),
                (ArrayConfig(4, 4, mant_bits=8), {"quick": 3, "full": 10}),
                (LIFTED_CONFIG, {"quick": 4, "full": 20}))


def _checks():
    shapes = len(CYCLE_SHAPES)
    checks = [Check(cycles_check_name(c), {"quick": shapes, "full": shapes},
                    lambda n, seed, c=c, **kw: run_cycle_shapes(n, seed, config=c, **kw))
              for c in CYCLE_CONFIGS]
    checks += [Check(gemm_check_name(c), counts,
                     lambda n, seed, c=c, **kw: run_random_gemms(n, seed, config=c, **kw))
               for c, counts in GEMM_CONFIGS]
    memory = MEMORY_CONFIG
    checks.append(Check(memory_check_name(memory), {"quick": 6, "full": len(MEMORY_CASES)},
                        lambda n, seed, **kw: run_memory_stream(n, seed, config=memory, **kw)))
    return checks


CHECKS = _checks()
