"""Host side of every bench: the build cache, running a bench, the ``Check`` record.

A *check* builds (once, cached) one RTL configuration, runs one cocotb bench on it with
vectors made here, compares the results with the golden model and returns a
``hw.tb.scoreboard.Report``. ``s2fp8 regress`` and tests/test_rtl_registry.py both run them.

Adding a bench + regression check (e.g. for the MAC):

1. ``hw/tb/bench_mac.py``: a ``@cocotb.test()`` that uses ``hw.tb.harness`` (``load_job``,
   ``start_clock_and_reset``, ``StreamDriver``/``StreamMonitor``/``run_stream`` or its own
   loop) and ``job.save(...)`` its observations;
2. a host function ``def run_mac_random(n, seed, *, build_root=None) -> Report`` that makes
   vectors, calls ``run_bench(top, "hw.tb.bench_mac", vectors, seed=..., params=...)``,
   computes the golden expectation (``pysim.numerics.golden``) and returns
   ``scoreboard.check_stream(...)`` (or its own comparison as a ``Report``);
3. one line in the module's ``CHECKS`` list: ``Check("mac_random_w24", {"quick": 5_000,
   "full": 100_000}, run_mac_random)``; a new check module is one more entry in
   ``hw.tb.registry.CHECK_MODULES``. ``s2fp8 regress`` and the pytest suite
   (tests/test_rtl_registry.py) both run every registered check.
The top-level block itself is one ``Top(...)`` line in ``hw.verilog.TOPS``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

from . import sim
from .scoreboard import Report

LEVELS = ("quick", "full")

_BUILDS: dict[tuple, sim.Build] = {}


def get_build(top: str, build_root=None) -> sim.Build:
    """The (cached) Verilator build of registered top-level block ``top``; one per process
    per configuration, and on disk across processes (``sim_build/``)."""
    key = (top, str(build_root), sim.waves_enabled())
    if key not in _BUILDS:
        _BUILDS[key] = sim.build(top, build_root=build_root)
    return _BUILDS[key]


def run_bench(top: str, bench: str, vectors: dict, *, seed: int, params: dict | None = None,
              build_root=None) -> tuple[sim.RunResult, sim.Build]:
    built = get_build(top, build_root)
    return sim.run(built, bench, vectors, seed=seed, params=params), built


def add_build_notes(report: Report, built: sim.Build, result: sim.RunResult) -> Report:
    report.sim_seconds += float(result.results.get("sim_seconds", 0.0))
    if not built.cached:
        report.notes.append(f"built {built.top} in {built.seconds:.1f} s")
    if built.waves:
        report.notes.append(f"waves {result.run_dir / 'dump.vcd'}")
    return report


@dataclass(frozen=True)
class Check:
    """One regression check: ``run(n, seed)`` -> Report with ``n = counts[level]``."""

    name: str
    counts: dict            # level -> number of vectors (or sequences)
    run: Callable[..., Report]

    def vectors(self, level: str) -> int:
        return self.counts[level]


def run_checks(checks: Iterable, level: str, seed: int, *, progress=None) -> list:
    """Run each check at ``level``; a check that cannot build or run becomes a failed
    Report (its error text as first mismatch) instead of stopping the regression."""
    reports = []
    for check in checks:
        n = check.vectors(level)
        if progress:
            progress(f"{check.name}: {n} vectors ...")
        start = time.monotonic()
        try:
            report = check.run(n, seed)
            report.name = check.name
            report.seconds = time.monotonic() - start   # wall time, build included
        except Exception as error:   # build/sim failure: report it, keep going
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            report = Report(check.name, vectors=n, seconds=time.monotonic() - start,
                            errors=[f"{type(error).__name__}: {first}"])
            report.notes.append(str(error))
        reports.append(report)
    return reports
