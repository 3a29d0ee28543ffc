"""Cycle model of the S2FP8 systolic array: closed form, equal to what the RTL does.

For one GEMM (M, K, N) on an R x C array, with T = ceil(M/R) * ceil(N/C) output tiles
(times ``count`` identical GEMMs streamed back to back), operands fed every cycle and a
result consumer that is always ready, counting from the cycle the first beat is accepted
to the cycle the last result row leaves, both included::

    cycles = K + (T - 1) * max(K, S) + D
    S = max(R, C)                          last beats of two tiles are >= S cycles apart
    D = (R - 1) + (C - 1) + P              drain: skew to the far corner plus pipeline
    P = decode + multiply + accumulate + result FIFO latencies
(S, D and P are ``ArrayConfig.tile_spacing``, ``.drain_cycles``, ``.pipeline_latency`` of
``pysim.perf.arch``, the numbers the RTL is built from).

Split as: steady state T*K (one beat per cycle), tile overhead (T-1)*(max(K,S) - K)
(beats held back when K < S), fill/drain D. Loading the two decode tables, in parallel,
takes ``TABLE_LOAD_CYCLES`` before the first beat. See docs/array.md for a worked example.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pysim.perf import arch
from pysim.perf.arch import ArrayConfig
from pysim.perf.tiler import tile_counts


class CycleBreakdown(NamedTuple):
    """Per GEMM (numpy arrays, or ints for one GEMM)."""
    tiles: np.ndarray
    table_load: np.ndarray
    steady: np.ndarray
    tile_overhead: np.ndarray
    fill_drain: np.ndarray

    @property
    def array_cycles(self):
        """First beat accepted to last result out (what :func:`gemm_cycles` returns)."""
        return self.steady + self.tile_overhead + self.fill_drain

    @property
    def total(self):
        """Including the table loads."""
        return self.table_load + self.array_cycles


def array_config(rows, cols=None) -> ArrayConfig:
    """``rows`` if it is already an :class:`ArrayConfig` (and ``cols`` is None), else
    ``ArrayConfig(rows, cols)``: the cycle model takes either."""
    if isinstance(rows, ArrayConfig) and cols is None:
        return rows
    return ArrayConfig(rows, cols)


def breakdown(m, k, n, rows, cols=None, count=1) -> CycleBreakdown:
    """Vectorized cycle breakdown for GEMMs given as arrays (or scalars) m, k, n, count,
    on an ``rows`` x ``cols`` array (or ``breakdown(m, k, n, config, count=...)``)."""
    config = array_config(rows, cols)
    k = np.asarray(k, dtype=np.int64)
    tiles = tile_counts(m, n, config.rows, config.cols) * np.asarray(count, dtype=np.int64)
    spacing = config.tile_spacing
    return CycleBreakdown(
        tiles=tiles,
        table_load=np.full_like(tiles, arch.TABLE_LOAD_CYCLES),
        steady=tiles * k,
        tile_overhead=(tiles - 1) * np.maximum(spacing - k, 0),
        fill_drain=np.full_like(tiles, config.drain_cycles),
    )


def gemm_cycles(M: int, K: int, N: int, rows, cols=None) -> int:
    """Cycles of one GEMM on the array (``rows`` x ``cols``, or an ArrayConfig), first
    beat accepted to last result out."""
    return int(breakdown(M, K, N, rows, cols).array_cycles)


def utilization(macs, cycles, rows: int, cols: int):
    """MACs / (R * C * cycles)."""
    return np.asarray(macs, dtype=np.float64) / (rows * cols * np.asarray(cycles, dtype=np.float64))
