"""Memory-model figures: ``python -m bench.memory [--rows R] [--cols C] [--points N]``.

Prints (a report, not a test):
- the time the memory model takes for a whole ResNet-50 training step (batch 32,
  224x224, 161 GEMMs: blocking search, schedule, traffic and energy of every GEMM) on the
  default accelerator (R x C, 256 KiB of operand buffers, 32 B/cycle), one format and
  three side by side (target < 200 ms for one);
- the per-format totals of that step;
- the wall time of an N-point sweep (default 1000: ResNet-50 x 5 arrays x 5 buffer sizes
  x 8 bandwidths x 5 formats) on a local Dask cluster of 2 worker processes, cluster
  start-up included (target < 2 minutes on this 2-core machine).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pysim.perf.accel import Accelerator
from pysim.perf.memory import memory_report
from pysim.workload.models import resnet50, training_step_gemms

TARGET_MODEL_MS = 200.0
TARGET_SWEEP_S = 120.0
SWEEP_AXES = {"arrays": [[8, 8], [16, 16], [32, 32], [64, 32], [64, 64]],
              "buffer_kib": [64, 128, 256, 512, 1024],
              "dram_bw": [4, 8, 16, 32, 64, 128, 256, "inf"],
              "formats": ["s2fp8", "e4m3", "bf16", "fp16", "fp32"]}


def time_model(acc, formats, repeats):
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        report = memory_report(training_step_gemms(resnet50(batch=32, image=224)), acc,
                               formats, "resnet50")
        times.append(time.perf_counter() - start)
    return report, min(times[1:]), statistics.median(times[1:])


def sweep_toml(points: int) -> str:
    axes = dict(SWEEP_AXES)
    per_format = len(axes["arrays"]) * len(axes["buffer_kib"]) * len(axes["dram_bw"])
    formats = max(1, min(len(axes["formats"]), points // per_format))
    axes["formats"] = axes["formats"][:formats]
    lines = ["[sweep]", 'workloads = ["resnet50"]']
    for key, values in axes.items():
        lines.append(f"{key} = {values!r}".replace("'", '"'))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--cols", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    acc = Accelerator(rows=args.rows, cols=args.cols)
    print(f"memory model: ResNet-50 training step (batch 32, 224x224), {acc.summary()}")
    report, best, median = time_model(acc, ["s2fp8"], args.repeats)
    mark = "PASS" if best * 1e3 < TARGET_MODEL_MS else "ABOVE"
    print(f"  one format:    best {best * 1e3:.1f} ms, median {median * 1e3:.1f} ms "
          f"(layers -> GEMMs -> blocking, schedule, traffic, energy; target < "
          f"{TARGET_MODEL_MS:.0f} ms  {mark})")
    report, best3, median3 = time_model(acc, ["s2fp8", "bf16", "fp32"], args.repeats)
    print(f"  three formats: best {best3 * 1e3:.1f} ms, median {median3 * 1e3:.1f} ms")
    print(f"\n  {'format':<7} {'cycles':>15} {'stall':>15} {'DRAM read GB':>13} "
          f"{'write GB':>9} {'energy mJ':>10}")
    for name, result in report.formats.items():
        t = result.total()
        print(f"  {name:<7} {t['cycles']:>15,} {t['stall_cycles']:>15,} "
              f"{t['dram_read_bytes'] / 1e9:>13.2f} {t['dram_write_bytes'] / 1e9:>9.2f} "
              f"{t['energy_pj'] / 1e9:>10.1f}")

    from pysim.cli.sweep import run_sweep
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "bench.toml"
        sweep.write_text(sweep_toml(args.points))
        start = time.perf_counter()
        counts = run_sweep(sweep, workers=args.workers, progress=False)
        elapsed = time.perf_counter() - start
    mark = "PASS" if elapsed < TARGET_SWEEP_S else "ABOVE"
    print(f"\nsweep: {counts['run']} points (ResNet-50 x {len(SWEEP_AXES['arrays'])} arrays x "
          f"{len(SWEEP_AXES['buffer_kib'])} buffers x {len(SWEEP_AXES['dram_bw'])} bandwidths x "
          f"formats) on a local Dask cluster of {args.workers} processes: {elapsed:.1f} s, "
          f"{counts['run'] / elapsed:.1f} points/s, cluster start-up and Pareto plot included "
          f"(target < {TARGET_SWEEP_S:.0f} s  {mark})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
