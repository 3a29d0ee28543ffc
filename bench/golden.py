"""Throughput of the golden model, printed side by side: ``python -m bench.golden [--quick]``.

Rows: E5M2 encode/decode and S2FP8 encode/decode (values/s) on float32 input with
log-uniform magnitudes and random signs; golden GEMM (MAC/s) at 256^3 and 512^3 next to
numpy float32 ``a @ b`` on the same shapes. Each figure is measured best-of-N and median
with time.perf_counter. Targets are printed next to the figures with PASS/BELOW markers;
this is a report, not a test (tests/test_golden_gemm.py only checks that it runs).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

from pysim.numerics.fp8 import e5m2_decode, e5m2_encode
from pysim.numerics.golden import gemm
from pysim.numerics.s2fp8 import decode, encode

#: Targets (values/s or MAC/s) and the row they apply to.
TARGET_S2FP8_ENCODE = 5e7
TARGET_GEMM_512 = 5e8


def _time(fn, repeats: int) -> tuple[float, float]:
    """(best, median) wall time in seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


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

    best, med = _time(lambda: e5m2_encode(x), repeats)
    print(_row(f"e5m2 encode ({n_values:,})", "values/s", n_values, best, med))
    best, med = _time(lambda: e5m2_decode(codes), repeats)
    print(_row(f"e5m2 decode ({n_values:,})", "values/s", n_values, best, med))
    best, med = _time(lambda: encode(x), repeats)
    print(_row(f"s2fp8 encode ({n_values:,})", "values/s", n_values, best, med,
               target=TARGET_S2FP8_ENCODE))
    best, med = _time(lambda: decode(tensor), repeats)
    print(_row(f"s2fp8 decode ({n_values:,})", "values/s", n_values, best, med))

    for size in gemm_sizes:
        macs = float(size) ** 3
        xa = rng.standard_normal((size, size)).astype(np.float32)
        xb = rng.standard_normal((size, size)).astype(np.float32)
        ta, tb = encode(xa), encode(xb)
        da, db = decode(ta), decode(tb)
        g_best, g_med = _time(lambda: gemm(ta, tb), gemm_repeats)
        n_best, n_med = _time(lambda: da @ db, max(gemm_repeats, 5))
        target = TARGET_GEMM_512 if size == 512 else None
        print(_row(f"golden gemm {size}^3", "MAC/s", macs, g_best, g_med, target=target))
        print(_row(f"numpy matmul {size}^3", "MAC/s", macs, n_best, n_med))
        print(f"{f'ratio golden/numpy {size}^3':<28} {n_best / g_best:>10.4f} "
              f"{n_med / g_med:>10.4f} {'x':<9}  (golden MAC/s / numpy MAC/s; "
              f"golden takes {g_best / n_best:.1f}x numpy's time, best)")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
