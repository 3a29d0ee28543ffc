"""Cycle-model figures: ``python -m bench.cycles [--rows R] [--cols C]``.

Prints (a report, not a test):
- the time the cycle model takes for a whole ResNet-50 training step (batch 32, 224x224,
  forward + dgrad + wgrad of every convolution and the FC layer), layers -> GEMMs ->
  cycles, on an R x C array (default 32 x 32; target < 50 ms);
- the cycles and utilization of that step, and for the largest layers their utilization
  next to the fill/drain bound MACs / (R*C*(T*K + D)) (padding and one pipeline
  fill/drain are the only losses the bound allows; target: within 2%);
- the time the exact scheduled model (``gemm_schedule``) takes per tile.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from pysim.perf.cycles import breakdown, gemm_schedule, utilization
from pysim.workload.models import resnet50, training_step_gemms
from pysim.perf.tiler import gemm_arrays

TARGET_MS = 50.0
TARGET_BOUND_GAP = 0.02


def training_step_cycles(rows: int, cols: int):
    """Layers -> GEMMs -> per-GEMM cycle breakdown for one ResNet-50 training step."""
    gemms = training_step_gemms(resnet50(batch=32, image=224))
    shapes = gemm_arrays(gemms)
    return gemms, shapes, breakdown(shapes.m, shapes.k, shapes.n, rows, cols, shapes.count)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cycles", description=__doc__)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--cols", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    rows, cols = args.rows, args.cols

    times = []
    for _ in range(args.repeats + 1):
        start = time.perf_counter()
        gemms, shapes, cycles = training_step_cycles(rows, cols)
        times.append(time.perf_counter() - start)
    best, median = min(times[1:]), statistics.median(times[1:])
    total = cycles.total
    macs = shapes.macs
    print(f"cycle model: ResNet-50 training step (batch 32, 224x224), {rows}x{cols} array")
    print(f"  GEMMs {len(gemms)}, tiles {int(cycles.tiles.sum()):,}, MACs {int(macs.sum()):,}")
    print(f"  cycles {int(total.sum()):,} (table loads {int(cycles.table_load.sum()):,}, "
          f"steady {int(cycles.steady.sum()):,}, tile overhead {int(cycles.tile_overhead.sum()):,}, "
          f"fill/drain {int(cycles.fill_drain.sum()):,})")
    print(f"  utilization {float(utilization(macs.sum(), total.sum(), rows, cols)):.4f}")
    mark = "PASS" if best * 1e3 < TARGET_MS else "ABOVE"
    print(f"  model time: best {best * 1e3:.2f} ms, median {median * 1e3:.2f} ms "
          f"(layers -> GEMMs -> cycles; target < {TARGET_MS:.0f} ms  {mark})")

    bound_cycles = cycles.steady + cycles.fill_drain
    util = utilization(macs, cycles.array_cycles, rows, cols)
    bound = utilization(macs, bound_cycles, rows, cols)
    largest = np.argsort(macs)[::-1][:8]
    print(f"\n  largest GEMMs: utilization vs the fill/drain bound "
          f"(target: within {TARGET_BOUND_GAP:.0%})")
    print(f"  {'layer':<22} {'phase':<7} {'M':>8} {'K':>8} {'N':>6} {'util':>7} {'bound':>7} {'gap':>7}")
    worst = 0.0
    for index in largest:
        g = gemms[index]
        gap = 1 - util[index] / bound[index]
        worst = max(worst, gap)
        print(f"  {g.layer:<22} {g.phase:<7} {g.m:>8} {g.k:>8} {g.n:>6} "
              f"{util[index]:>7.4f} {bound[index]:>7.4f} {gap:>7.2%}")
    print(f"  worst gap {worst:.2%}  {'PASS' if worst <= TARGET_BOUND_GAP else 'ABOVE'}")
    scheduled_model_speed(rows, cols)
    return 0


def scheduled_model_speed(rows: int, cols: int) -> None:
    """Time of the exact scheduled model (``gemm_schedule``) on one GEMM with random
    operand gaps and result back-pressure; it steps tile by tile, so per tile."""
    rng = np.random.default_rng(0)
    m, k, n = 32 * rows, 64, 32 * cols
    beats = 32 * 32 * k
    offer = np.cumsum(1 + rng.integers(0, 2, beats)) - 1    # an idle cycle before half the beats
    ready = rng.random(2 * beats) > 0.1
    start = time.perf_counter()
    run = gemm_schedule(m, k, n, rows, cols, offer=offer, ready=ready)
    seconds = time.perf_counter() - start
    print(f"\n  gemm_schedule ({m}x{k}x{n}, 1,024 tiles, random gaps and back-pressure): "
          f"{seconds * 1e3:.1f} ms, {seconds / 1024 * 1e6:.0f} us per tile, "
          f"{run.cycles:,} cycles (back to back: {int(breakdown(m, k, n, rows, cols).array_cycles):,})")


if __name__ == "__main__":
    raise SystemExit(main())
