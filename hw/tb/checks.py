"""Host side of the benches and the regression registry (``CHECKS``).

A *check* builds (once, cached) one RTL configuration, runs one cocotb bench on it with
vectors made here, compares the results with the golden model and returns a
``hw.tb.scoreboard.Report``. ``s2fp8 regress`` and tests/test_rtl_*.py both use them.

Adding a bench + regression check (e.g. for the MAC):

1. ``hw/tb/bench_mac.py``: a ``@cocotb.test()`` that uses ``hw.tb.harness`` (``load_job``,
   ``start_clock_and_reset``, ``StreamDriver``/``StreamMonitor``/``run_stream`` or its own
   loop) and ``job.save(...)`` its observations;
2. a host function ``def run_mac_random(n, seed, *, build_root=None) -> Report`` that makes
   vectors, calls ``run_bench(top, "hw.tb.bench_mac", vectors, seed=..., params=...)``,
   computes the golden expectation (``pysim.golden``) and returns
   ``scoreboard.check_stream(...)`` (or its own comparison as a ``Report``);
3. one registry line: ``CHECKS.append(Check("mac_random_w24", {"quick": 5_000,
   "full": 100_000}, run_mac_random))`` (or ``register(...)``).
The top-level block itself is one ``Top(...)`` line in ``hw.verilog.TOPS``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pysim import golden, testfloat
from pysim.formats import FP32

from . import sim
from .scoreboard import Report, check_stream

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


def _notes(report: Report, built: sim.Build, result: sim.RunResult) -> Report:
    report.sim_seconds += float(result.results.get("sim_seconds", 0.0))
    if not built.cached:
        report.notes.append(f"built {built.top} in {built.seconds:.1f} s")
    if built.waves:
        report.notes.append(f"waves {result.run_dir / 'dump.vcd'}")
    return report


# --- FP32 multiplier and adder ----------------------------------------------------------

def _truncate_significands(bits: np.ndarray, w: int) -> np.ndarray:
    """Keep the top ``w`` significant bits of each FP32 operand (after the leading one,
    subnormals included): what ``FPMul(sig_bits=w)`` is promised. NaN/Inf untouched."""
    bits = np.asarray(bits, np.uint32)
    exp = (bits >> np.uint32(FP32.frac_bits)) & np.uint32(FP32.exp_max_code)
    frac = bits & np.uint32(FP32.frac_mask)
    # significant bits below the leading one: 23 for normals, floor(log2(frac)) if subnormal
    lead = np.where(exp == 0, np.floor(np.log2(np.maximum(frac, 1))).astype(np.int64),
                    FP32.frac_bits)
    drop = np.clip(lead + 1 - w, 0, FP32.frac_bits).astype(np.uint32)
    mask = ~((np.uint32(1) << drop) - np.uint32(1))
    special = exp == np.uint32(FP32.exp_max_code)
    return np.where(special, bits, bits & mask).astype(np.uint32)


def run_fp32_binop(op: str, n: int, seed: int, *, sig_bits: int = FP32.precision,
                   build_root=None, idle_prob: float = 0.2) -> Report:
    """``n`` TestFloat-style pairs (pysim.testfloat) through FPMul(W) / FPAddUnit."""
    if op == "mul":
        top, latency, reference = f"fp32_mul_w{sig_bits}", 2, golden.fp32_mul
    elif op == "add":
        top, latency, reference = "fp32_add", 1, golden.fp32_add
    else:
        raise ValueError(f"op must be 'mul' or 'add', got {op!r}")
    start = time.monotonic()
    a, b, family = testfloat.fp32_pairs(op, n, seed)
    if op == "mul" and sig_bits < FP32.precision:
        a, b = _truncate_significands(a, sig_bits), _truncate_significands(b, sig_bits)
    expected = reference(a, b)
    result, built = run_bench(top, "hw.tb.bench_binop", {"a": a, "b": b}, seed=seed,
                              params={"latency": latency, "idle_prob": idle_prob},
                              build_root=build_root)
    got = result.results
    report = check_stream(
        top, inputs={"a": a, "b": b}, expected=expected, out_cycle=got["out_cycle"],
        out_value=got["out_result"], in_cycle=got["in_cycle"], latency=latency,
        describe=lambda i: testfloat.FAMILIES[int(family[i])],
        seconds=time.monotonic() - start)
    return _notes(report, built, result)


# --- the registry -----------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """One regression check: ``run(n, seed)`` -> Report with ``n = counts[level]``."""

    name: str
    counts: dict            # level -> number of vectors (or sequences)
    run: Callable[..., Report]

    def vectors(self, level: str) -> int:
        return self.counts[level]


CHECKS: list[Check] = [
    Check("fp32_mul_w24", {"quick": 5_000, "full": 60_000},
          lambda n, seed, **kw: run_fp32_binop("mul", n, seed, **kw)),
    Check("fp32_mul_w8", {"quick": 2_000, "full": 20_000},
          lambda n, seed, **kw: run_fp32_binop("mul", n, seed, sig_bits=8, **kw)),
    Check("fp32_add", {"quick": 5_000, "full": 60_000},
          lambda n, seed, **kw: run_fp32_binop("add", n, seed, **kw)),
]





def all_checks() -> list[Check]:
    """Every regression check: the FP32 operators above, the MAC (``mac_checks``) and the
    systolic array (``array_checks``)."""
    from . import array_checks, mac_checks
    return list(CHECKS) + mac_checks.CHECKS + array_checks.CHECKS
