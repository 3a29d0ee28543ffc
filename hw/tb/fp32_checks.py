"""Regression checks of the FP32 multiplier and adder: TestFloat-style pairs
(``pysim.numerics.testfloat``) through the RTL, checked against ``pysim.numerics.golden``."""
from __future__ import annotations

import time

import numpy as np

from pysim.numerics import golden, testfloat
from pysim.numerics.formats import FP32
from pysim.perf import arch

from .runner import Check, add_build_notes, run_bench
from .scoreboard import Report, check_stream


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
    """``n`` TestFloat-style pairs (pysim.numerics.testfloat) through FPMul(W) / FPAddUnit."""
    if op == "mul":
        top, latency, reference = f"fp32_mul_w{sig_bits}", arch.MUL_LATENCY, golden.fp32_mul
    elif op == "add":
        top, latency, reference = "fp32_add", arch.ACC_LATENCY, golden.fp32_add
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
    return add_build_notes(report, built, result)


CHECKS: list[Check] = [
    Check("fp32_mul_w24", {"quick": 5_000, "full": 60_000},
          lambda n, seed, **kw: run_fp32_binop("mul", n, seed, **kw)),
    Check("fp32_mul_w8", {"quick": 2_000, "full": 20_000},
          lambda n, seed, **kw: run_fp32_binop("mul", n, seed, sig_bits=8, **kw)),
    Check("fp32_add", {"quick": 5_000, "full": 60_000},
          lambda n, seed, **kw: run_fp32_binop("add", n, seed, **kw)),
]
