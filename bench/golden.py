"""Throughput of the golden model, printed side by side: ``python -m bench.golden [--quick]``.

Rows: E5M2 encode/decode and S2FP8 encode/decode (values/s) on float32 input with
log-uniform magnitudes and random signs; golden GEMM (MAC/s) at 256^3 and 512^3 next to
numpy float32 ``a @ b`` on the same shapes. Each figure is measured best-of-N and median
with time.perf_counter. Targets are printed next to the figures with PASS/BELOW markers;
this is a report, not a test (tests/test_golden_gemm.py only checks that it runs).

"previous" rows time, in the same run, the numpy implementations that the compiled
kernels of pysim.numerics.kernels replaced (issue 14): the machine is shared, so only
figures measured side by side compare. The README's figures of those implementations
are printed under the table.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

from pysim.numerics import s2fp8
from pysim.numerics.formats import E5M2
from pysim.numerics.fp8 import e5m2_decode, e5m2_encode
from pysim.numerics.golden import gemm
from pysim.numerics.rounding import canonicalize_nan, fp32_bits, fp32_from_bits
from pysim.numerics.s2fp8 import S2FP8Tensor, decode, encode

#: Targets (values/s, or golden/numpy throughput ratio) and the row they apply to.
TARGET_S2FP8_ENCODE = 1e8
TARGET_GEMM_512_RATIO = 1 / 30

#: The README's figures before issue 14 (numpy implementations, this 2-core machine).
PREVIOUS_FIGURES = (
    "previous (README): s2fp8 encode 4.9e7 - 7.4e7 values/s; E5M2 encode 4.0e7 - 4.8e7 values/s;",
    "                   golden gemm 512^3 1.5e9 - 1.8e9 MAC/s, ratio to numpy 0.018 - 0.024",
    "previous session (exp2 per value, numpy min/max): s2fp8 encode 5.4e7 - 1.38e8 values/s wall",
    "                   under load, 1.2e8 per CPU-second",
)


def _previous_gemm(a: S2FP8Tensor, b: S2FP8Tensor) -> np.ndarray:
    """The golden GEMM before issue 14: one broadcast multiply and one add per k."""
    a_t = np.ascontiguousarray(decode(a).T)
    b_dec = decode(b)
    acc = np.zeros((a.shape[0], b.shape[1]), np.float32)
    product = np.empty_like(acc)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        for k in range(a.shape[1]):
            np.multiply(a_t[k][:, None], b_dec[k][None, :], out=product)
            np.add(acc, product, out=acc)
    return fp32_from_bits(canonicalize_nan(fp32_bits(acc)))


def _previous_e5m2_magnitude_codes(mag: np.ndarray) -> np.ndarray:
    """The E5M2 rounding before issue 14: 12 numpy passes on the float64 bit pattern."""
    saturated = np.minimum(mag, E5M2.max_finite, out=mag)
    f64_bits = saturated.view(np.uint64)
    drop = np.uint64(52 - E5M2.frac_bits)
    rounded = f64_bits >> drop
    rounded &= np.uint64(1)
    rounded += np.uint64((1 << (52 - E5M2.frac_bits - 1)) - 1)
    rounded += f64_bits
    rounded >>= drop
    code = rounded.astype(np.uint8)
    code -= np.uint8(((1023 - E5M2.bias) << E5M2.frac_bits) & 0xFF)
    subnormal = saturated < 2.0 ** E5M2.emin
    if subnormal.any():
        code[subnormal] = np.rint(saturated[subnormal] * 2.0 ** -E5M2.subnormal_quantum_exp)
    return code


def _previous_s2fp8_encode(x: np.ndarray) -> np.ndarray:
    """The S2FP8 codes before issue 14 (same statistics, numpy scaling and rounding)."""
    log2_mag, moments = s2fp8._log2_and_moments(x)
    _, _, alpha, beta = s2fp8._stats_from_moments(*moments)
    alpha, beta = float(np.float32(alpha)), float(np.float32(beta))
    flat_x, flat_log2 = x.reshape(-1), log2_mag.reshape(-1)
    codes = np.empty(flat_x.shape, np.uint8)

    def block_codes(block):
        scaled = np.multiply(flat_log2[block], alpha)
        scaled += beta
        with np.errstate(over="ignore"):
            np.exp2(scaled, out=scaled)
        codes[block] = _previous_e5m2_magnitude_codes(scaled)
        codes[block] |= np.signbit(flat_x[block]).view(np.uint8) << np.uint8(E5M2.width - 1)

    s2fp8._map_blocks(block_codes, flat_x.size)
    return codes


def _encode_codes_per_value(x: np.ndarray) -> np.ndarray:
    """Today's statistics, then the codes by exp2 and rounding per value, as the session
    before computed every tensor's codes (now only float64 and small tensors)."""
    log2_mag, moments = s2fp8._log2_and_moments(x)
    _, _, alpha, beta = s2fp8._stats_from_moments(*moments)
    alpha, beta = float(np.float32(alpha)), float(np.float32(beta))
    return s2fp8._codes(x, log2_mag, alpha, beta, through_exp2=True)


def _time(fn, repeats: int) -> tuple[float, float]:
    """(best, median) wall time in seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def _per_cpu_second(fn, count: float, repeats: int) -> float:
    """``count`` / best CPU time of ``fn()`` (all threads, time.process_time): what the
    code costs, whatever else the machine runs (wall time counts waiting for a core)."""
    fn()
    best = min(_cpu_seconds(fn) for _ in range(repeats))
    return count / best


def _cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def _load_note() -> str:
    try:
        return "  (load average %.2f %.2f %.2f)" % os.getloadavg()
    except OSError:
        return ""


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _row(name: str, unit: str, count: float, best: float, median: float,
         target: float | None = None, extra: str = "") -> str:
    rate_best, rate_median = count / best, count / median
    mark = ""
    if target is not None:
        mark = f"target >= {target:.1e}  {'PASS' if rate_best >= target else 'BELOW'}"
    return (f"{name:<28} {rate_best:>10.3e} {rate_median:>10.3e} {unit:<9}"
            f" {best * 1e3:>9.2f} {median * 1e3:>9.2f}  {mark}{extra}")


def _loguniform(rng, n: int) -> np.ndarray:
    mags = np.exp2(rng.uniform(-20.0, 20.0, n))
    return (mags * rng.choice(np.array([-1.0, 1.0]), n)).astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.golden", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per row")
    args = parser.parse_args(argv)

    n_values = 1 << 18 if args.quick else 1 << 22
    gemm_sizes = (64, 128) if args.quick else (256, 512)
    repeats = args.repeats or (2 if args.quick else 5)
    gemm_repeats = args.repeats or (2 if args.quick else 3)

    print("bench.golden: golden-model throughput" + ("  [--quick]" if args.quick else ""))
    print(f"  cpu count   : {os.cpu_count()}  ({_cpu_name()})")
    print(f"  python      : {platform.python_version()}  numpy {np.__version__}  "
          f"({platform.system()} {platform.machine()})")
    try:
        load = "  load average %.2f %.2f %.2f (other processes skew the figures)" % os.getloadavg()
    except OSError:
        load = ""
    print(f"  machine     : {platform.node()}{load}")
    print(f"  timing      : best and median of {repeats} (codecs) / {gemm_repeats} (GEMM) "
          f"runs, time.perf_counter, after one warm-up")
    print()
    print(f"{'row':<28} {'best':>10} {'median':>10} {'unit':<9} {'best ms':>9} {'med ms':>9}")

    rng = np.random.default_rng(0)
    x = _loguniform(rng, n_values)
    codes = e5m2_encode(x)
    tensor = encode(x)

    assert np.array_equal(_previous_s2fp8_encode(x), tensor.codes), "previous encode differs"
    assert np.array_equal(_encode_codes_per_value(x), tensor.codes), "per-value codes differ"
    best, med = _time(lambda: e5m2_encode(x), repeats)
    print(_row(f"e5m2 encode ({n_values:,})", "values/s", n_values, best, med))
    best, med = _time(lambda: _previous_e5m2_magnitude_codes(np.abs(x).astype(np.float64))
                      | (np.signbit(x).view(np.uint8) << np.uint8(E5M2.width - 1)), repeats)
    print(_row("  previous (numpy rounding)", "values/s", n_values, best, med))
    best, med = _time(lambda: e5m2_decode(codes), repeats)
    print(_row(f"e5m2 decode ({n_values:,})", "values/s", n_values, best, med))
    best, med = _time(lambda: encode(x), repeats)
    print(_row(f"s2fp8 encode ({n_values:,})", "values/s", n_values, best, med,
               target=TARGET_S2FP8_ENCODE))
    prev_best, prev_med = _time(lambda: _previous_s2fp8_encode(x), repeats)
    print(_row("  previous (numpy rounding)", "values/s", n_values, prev_best, prev_med,
               extra=f"  new/previous {prev_best / best:.2f}x (best)"))
    pv_best, pv_med = _time(lambda: _encode_codes_per_value(x), repeats)
    print(_row("  codes by exp2 per value", "values/s", n_values, pv_best, pv_med,
               extra=f"  new/this {pv_best / best:.2f}x (best)"))
    print(f"  per CPU-second (all threads): new "
          f"{_per_cpu_second(lambda: encode(x), n_values, repeats):.3e}, codes by exp2 per value "
          f"{_per_cpu_second(lambda: _encode_codes_per_value(x), n_values, repeats):.3e}, "
          f"previous {_per_cpu_second(lambda: _previous_s2fp8_encode(x), n_values, repeats):.3e} "
          f"values{_load_note()}")
    best, med = _time(lambda: decode(tensor), repeats)
    print(_row(f"s2fp8 decode ({n_values:,})", "values/s", n_values, best, med))

    for size in gemm_sizes:
        macs = float(size) ** 3
        xa = rng.standard_normal((size, size)).astype(np.float32)
        xb = rng.standard_normal((size, size)).astype(np.float32)
        ta, tb = encode(xa), encode(xb)
        da, db = decode(ta), decode(tb)
        assert np.array_equal(gemm(ta, tb).view(np.uint32),
                              _previous_gemm(ta, tb).view(np.uint32)), "previous gemm differs"
        g_best, g_med = _time(lambda: gemm(ta, tb), gemm_repeats)
        p_best, p_med = _time(lambda: _previous_gemm(ta, tb), gemm_repeats)
        n_best, n_med = _time(lambda: da @ db, max(gemm_repeats, 5))
        print(_row(f"golden gemm {size}^3", "MAC/s", macs, g_best, g_med))
        print(_row("  previous (numpy loop)", "MAC/s", macs, p_best, p_med,
                   extra=f"  new/previous {p_best / g_best:.1f}x (best)"))
        print(f"  per CPU-second (all threads): new "
              f"{_per_cpu_second(lambda: gemm(ta, tb), macs, gemm_repeats):.3e}, previous "
              f"{_per_cpu_second(lambda: _previous_gemm(ta, tb), macs, gemm_repeats):.3e} MAC")
        print(_row(f"numpy matmul {size}^3", "MAC/s", macs, n_best, n_med))
        ratio_best, ratio_med = n_best / g_best, n_med / g_med
        mark = ""
        if size == gemm_sizes[-1] and not args.quick:
            mark = (f"  target >= {TARGET_GEMM_512_RATIO:.4f} (<= 30x numpy's time)  "
                    f"{'PASS' if ratio_best >= TARGET_GEMM_512_RATIO else 'BELOW'}")
        print(f"{f'ratio golden/numpy {size}^3':<28} {ratio_best:>10.4f} "
              f"{ratio_med:>10.4f} {'x':<9}  (golden takes {g_best / n_best:.1f}x numpy's time, "
              f"best; previous {p_best / n_best:.1f}x){mark}")
    print()
    for line in PREVIOUS_FIGURES:
        print(line)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
