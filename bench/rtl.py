"""RTL figures: ``python -m bench.rtl [--tops NAME ...] [--skip-builds]``.

Prints (a report, not a test):
- Verilator build time of each RTL configuration, built from scratch into a temporary
  directory (the regression's cache in sim_build/ is not touched);
- verified operations per second through cocotb (time inside the simulator, every result
  compared with the golden model): MAC products (random sequences, idle gaps on), and MACs
  of GEMMs through the 4x4 and 8x8 arrays (target 1e6 MAC/s on 8x8). The 8x8 model's own
  evaluation takes ~45 us per clock cycle under cocotb (measured with an empty bench loop),
  which caps a cocotb-driven 8x8 run near 1.4e6 MAC/s before any Python work;
- the bulk co-simulation (``hw.tb.bulk``: a C++ Verilator harness runs a whole stimulus,
  no cocotb per cycle) of the 8x8 array, linked against the cocotb build's model and on
  the registered-input build (one harness process, and one per CPU on consecutive runs of
  jobs): verified MACs per second of the harness's cycle loop (wall,
  target ``TARGET_BULK_MACS``), per CPU second of the harness process (what an unloaded
  core gives), and end to end (stimulus files, harness, scoreboard);
- the full regression (every registered check at ``--level full``, as pytest runs it):
  vectors and wall time (target >= ``TARGET_REGRESSION_VECTORS`` in ``TARGET_REGRESSION_S``
  with warm builds); ``--skip-regression`` leaves it out.
The load average is printed with the figures: the machine may be shared.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from hw.tb import array_checks, bulk_checks, mac_checks, sim
from hw.tb.registry import all_checks
from hw.tb.runner import run_checks
from pysim.perf.arch import ArrayConfig

DEFAULT_TOPS = ("fp32_mul_w24", "fp32_add", "s2fp8_mac_w24", "s2fp8_mac_w8",
                "s2fp8_array_4x4_w24", "s2fp8_array_8x8_w24")
TARGET_ARRAY_MACS = 1e6
TARGET_BULK_MACS = 1e7
#: MACs of the bulk 8x8 figure
BULK_MACS = 12_000_000
TARGET_REGRESSION_VECTORS, TARGET_REGRESSION_S = 1e7, 300.0
SEED = 7
#: the bulk 8x8 figures of the session before (docs/cosim.md), printed beside this run's
PREVIOUS_BULK = ("previous: 8x8 registered-input build 9.1 - 9.6 us CPU per cycle, 5.3e6 "
                 "MAC/s wall (cycle loop), 5.8e6 with two processes, at load 4 - 6; "
                 "PE inlined into the array")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rtl", description=__doc__)
    parser.add_argument("--tops", nargs="+", default=list(DEFAULT_TOPS),
                        help="configurations to time the build of")
    parser.add_argument("--skip-builds", action="store_true",
                        help="skip the from-scratch build timings")
    parser.add_argument("--skip-regression", action="store_true",
                        help="skip the timed full regression")
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
    print(f"  load average {_load()}")
    _bulk_8x8()
    if not args.skip_regression:
        _regression()
    return 0


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def _bulk_8x8() -> None:
    import numpy as np
    config = ArrayConfig(8, 8)
    begin = time.monotonic()
    # the per-cycle 8x8 row's kind of GEMM (K of several hundred, several tiles, fed back
    # to back), enough of them for BULK_MACS; the registered check array_bulk_8x8 mixes in
    # small GEMMs, gaps and back-pressure
    rng = np.random.default_rng(SEED)
    jobs, macs = [], 0
    while macs < BULK_MACS:
        shape = tuple(int(v) for v in rng.integers((24, 300, 24), (40, 500, 40)))
        jobs.append(bulk_checks.make_bulk_job(shape, rng, config, gaps=False))
        macs += int(np.prod(shape))
    made = time.monotonic()
    print(f"\n  {'bulk co-simulation (C++ harness)':<34} {'MACs':>10} {'cycles':>9} "
          f"{'loop s':>7} {'CPU s':>6} {'MAC/s':>11} {'MAC/CPU-s':>11}")
    best = 0.0
    cores = os.cpu_count() or 1
    for label, registered, shards in (("8x8, the cocotb build's model", False, 1),
                                      ("8x8, registered-input build", True, 1),
                                      (f"8x8, registered, {cores} processes", True, cores)):
        bulk_checks.run_and_score("warm-up", jobs[:1], config=config,   # builds, page cache
                                  registered=registered)
        start = time.monotonic()
        report, result = bulk_checks.run_and_score("array_bulk_8x8", jobs, config=config,
                                                   registered=registered, shards=shards)
        end_to_end = time.monotonic() - start
        cycles, macs = int(result.results["cycles"]), report.vectors
        best = max(best, macs / report.sim_seconds)
        print(f"  {label:<34} {macs:>10,} {cycles:>9,} {report.sim_seconds:>7.2f} "
              f"{result.cpu_seconds:>6.2f} {macs / report.sim_seconds:>11,.0f} "
              f"{macs / result.cpu_seconds:>11,.0f}  {'ok' if report.ok else 'MISMATCH'}")
        print(f"    {result.cpu_seconds / cycles * 1e6:.1f} us CPU per cycle; end to end "
              f"(stimulus files, harness, scoreboard) {end_to_end:.2f} s = "
              f"{macs / end_to_end:,.0f} MAC/s")
        if not report.ok:
            print("    " + "\n    ".join(report.errors))
    print(f"  target >= {TARGET_BULK_MACS:.0e} verified MAC/s (cycle loop, wall): "
          f"{'PASS' if best >= TARGET_BULK_MACS else 'BELOW'}; making the {len(jobs)} jobs "
          f"and their golden results took {made - begin:.1f} s; load average {_load()}")
    print(f"  {PREVIOUS_BULK}")


def _regression() -> None:
    checks = all_checks()
    print(f"\n  full regression: {len(checks)} checks at --level full (as pytest runs them)",
          flush=True)
    start = time.monotonic()
    reports = run_checks(checks, "full", SEED)
    seconds = time.monotonic() - start
    vectors = sum(r.vectors for r in reports)
    failed = [r.name for r in reports if not r.ok]
    for r in reports:
        print(f"  {r.name:<28} {r.vectors:>11,} {r.seconds:>7.1f} s  {'ok' if r.ok else 'FAIL'}")
    met = vectors >= TARGET_REGRESSION_VECTORS and seconds <= TARGET_REGRESSION_S and not failed
    print(f"  {'total':<28} {vectors:>11,} {seconds:>7.1f} s  target >= "
          f"{TARGET_REGRESSION_VECTORS:.0e} vectors in <= {TARGET_REGRESSION_S:.0f} s: "
          f"{'PASS' if met else 'BELOW'}{'; failed: ' + ', '.join(failed) if failed else ''}; "
          f"load average {_load()}")
    builds = [note for r in reports for note in r.notes if note.startswith("built ")]
    print("  warm builds" if not builds else f"  includes builds: {'; '.join(builds)}")


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
