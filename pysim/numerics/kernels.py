"""Compiled inner loops of the golden model (numba).

Imported on first use by :func:`pysim.numerics.golden.gemm`, so that commands which
never run a GEMM do not pay numba's 0.5 s import.

numpy cannot express the golden GEMM's ordered FP32 accumulation without one broadcast
multiply and one add per k: at 512^3 that is 0.6 ns per MAC on this machine's cores
(1.6e9 MAC/s), the broadcast multiply alone paying ~180 ns per 512-element row of
ufunc set-up. The loop below does the same two IEEE binary32 operations per MAC in the
same order, vectorized by LLVM across n: 0.075 ns per MAC (1.3e10 MAC/s per core).

Bit-exactness: numba compiles with fastmath off, so LLVM neither contracts
``acc + x * b`` into a fused multiply-add (one rounding instead of two) nor reorders the
sum over k, and it keeps subnormals (no FTZ/DAZ). With fastmath on, 13 of 279 reference
GEMMs change. tests/test_golden_gemm.py checks results against Berkeley SoftFloat, Inf,
NaN, signed zeros and subnormals included.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

#: Output rows one kernel pass updates together: each b[k] row loaded once serves 4
#: accumulator rows (1.3e10 MAC/s per core against 1.1e10 for one row at a time).
ROWS_PER_PASS = 4
#: Below this many MACs a GEMM runs on the calling thread (thread hand-off costs ~50 us).
PARALLEL_MIN_MACS = 1 << 22

_pool: ThreadPoolExecutor | None = None


# Compiled code is cached on disk (cache=True), keyed by this file's mtime and size.
@njit(nogil=True, cache=True, fastmath=False, error_model="numpy")
def _gemm_rows(a, b, acc, row_start, row_stop):  # pragma: no cover - compiled
    """acc[m] += a[m, k] * b[k] for k in order, rows row_start..row_stop-1, 4 rows per pass."""
    k_dim, n_dim = b.shape
    m = row_start
    while m + ROWS_PER_PASS <= row_stop:
        out0, out1, out2, out3 = acc[m], acc[m + 1], acc[m + 2], acc[m + 3]
        for k in range(k_dim):
            x0, x1, x2, x3 = a[m, k], a[m + 1, k], a[m + 2, k], a[m + 3, k]
            b_row = b[k]
            for j in range(n_dim):
                y = b_row[j]
                out0[j] = out0[j] + x0 * y
                out1[j] = out1[j] + x1 * y
                out2[j] = out2[j] + x2 * y
                out3[j] = out3[j] + x3 * y
        m += ROWS_PER_PASS
    while m < row_stop:
        out = acc[m]
        for k in range(k_dim):
            x = a[m, k]
            b_row = b[k]
            for j in range(n_dim):
                out[j] = out[j] + x * b_row[j]
        m += 1


def gemm_accumulate(a: np.ndarray, b: np.ndarray, acc: np.ndarray) -> None:
    """acc[m, n] = FP32(acc[m, n] + FP32(a[m, k] * b[k, n])) for k = 0..K-1 in order, in place.

    ``a`` (M, K), ``b`` (K, N), ``acc`` (M, N) float32, ``acc`` C-contiguous. Rows are
    split over the cores (the kernel releases the GIL); each output depends on its own
    row alone, so the result does not depend on the number of threads.
    """
    global _pool
    a, b = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    rows = acc.shape[0]
    workers = min(os.cpu_count() or 1, 8)
    if workers == 1 or a.size * b.shape[1] < PARALLEL_MIN_MACS:
        _gemm_rows(a, b, acc, 0, rows)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="golden-gemm")
    # Several chunks per worker balance the load when other processes share the cores.
    chunk = max(ROWS_PER_PASS, -(-rows // (4 * workers) // ROWS_PER_PASS) * ROWS_PER_PASS)
    starts = range(0, rows, chunk)
    list(_pool.map(lambda start: _gemm_rows(a, b, acc, start, min(start + chunk, rows)), starts))
