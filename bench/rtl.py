"""RTL figures: ``python -m bench.rtl [--tops NAME ...] [--skip-builds]``.

Prints (a report, not a test):
- Verilator build time of each RTL configuration, built from scratch into a temporary
  directory (the regression's cache in sim_build/ is not touched);
- verified operations per second through cocotb (time inside the simulator, every result
  compared with the golden model): MAC products (random sequences, idle gaps on), and MACs
  of GEMMs through the 4x4 and 8x8 arrays (target 1e6 MAC/s on 8x8). The 8x8 model's own
  evaluation takes ~45 us per clock cycle under cocotb (measured with an empty bench loop),
  which caps a cocotb-driven 8x8 run near 1.4e6 MAC/s before any Python work.
"""
from __future__ import annotations

import argparse
import tempfile
import time

from hw.tb import array_checks, mac_checks, sim
from pysim.perf.arch import ArrayConfig

DEFAULT_TOPS = ("fp32_mul_w24", "fp32_add", "s2fp8_mac_w24", "s2fp8_mac_w8",
                "s2fp8_array_4x4_w24", "s2fp8_array_8x8_w24")
TARGET_ARRAY_MACS = 1e6
SEED = 7


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rtl", description=__doc__)
    parser.add_argument("--tops", nargs="+", default=list(DEFAULT_TOPS),
                        help="configurations to time the build of")
    parser.add_argument("--skip-builds", action="store_true",
                        help="skip the from-scratch build timings")
    args = parser.parse_args(argv)

    info = sim.ensure_verilator()
    print(f"RTL benchmark: Verilator {info.version_text} ({info.source}), "
          f"build args {' '.join(sim.BUILD_ARGS)}")
    if not args.skip_builds:
        print(f"\n  {'configuration':<24} {'build s':>8}")
        with tempfile.TemporaryDirectory(prefix="s2fp8-bench-") as root:
            for top in args.tops:
                start = time.monotonic()
                sim.build(top, build_root=root, waves=False)
                print(f"  {top:<24} {time.monotonic() - start:>8.1f}", flush=True)

    print(f"\n  {'throughput (cocotb, Verilator)':<34} {'ops':>10} {'sim s':>7} {'ops/s':>11}")
    mac = mac_checks.run_sequences(2000, SEED, mant_bits=24)
    print(f"  {'MAC W=24, products':<34} {mac.vectors:>10,} {mac.sim_seconds:>7.1f} "
          f"{mac.rate:>11,.0f}  {'ok' if mac.ok else 'MISMATCH'}")
    for rows in (4, 8):
        report = array_checks.run_random_gemms(24, SEED, config=ArrayConfig(rows, rows)) \
            if rows == 4 else _array_8x8()
        mark = ""
        if rows == 8:
            mark = f"target >= {TARGET_ARRAY_MACS:.0e}  " \
                   f"{'PASS' if report.rate >= TARGET_ARRAY_MACS else 'BELOW'}"
        print(f"  {f'array {rows}x{rows}, verified MACs':<34} {report.vectors:>10,} "
              f"{report.sim_seconds:>7.1f} {report.rate:>11,.0f}  "
              f"{'ok' if report.ok else 'MISMATCH'}  {mark}")
    return 0


def _array_8x8():
    """GEMMs large enough that the per-GEMM table loads (128 cycles) and the result rows
    are a few percent of the run: K of several hundred, several tiles each."""
    import numpy as np
    rng = np.random.default_rng(SEED)
    shapes = [(int(m), int(k), int(n)) for m, k, n in rng.integers((24, 300, 24), (40, 500, 40), (4, 3))]
    config = ArrayConfig(8, 8)
    jobs = [array_checks.make_job(shape, rng, config, gaps=False) for shape in shapes]
    return array_checks.run_array_jobs("array_8x8", jobs, config=config,
                                       seed=SEED)


if __name__ == "__main__":
    raise SystemExit(main())
