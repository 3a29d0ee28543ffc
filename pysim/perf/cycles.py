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
The output path (FP32 results -> S2FP8, :func:`output_path_cycles`) is a separate term,
``output_path``, after the last result row.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pysim.errors import ShapeError
from pysim.perf import arch
from pysim.perf.arch import ArrayConfig
from pysim.validate import check_int
from pysim.perf.tiler import check_dims, exact, tile_counts


class CycleBreakdown(NamedTuple):
    """Per GEMM (numpy arrays, or ints for one GEMM). ``output_path``: the cycles the
    output path adds after the array's last result row (:func:`output_path_cycles`); not
    part of ``array_cycles`` or ``total`` (``layer_total`` includes it)."""
    tiles: np.ndarray
    table_load: np.ndarray
    steady: np.ndarray
    tile_overhead: np.ndarray
    fill_drain: np.ndarray
    output_path: np.ndarray

    @property
    def array_cycles(self):
        """First beat accepted to last result out (what :func:`gemm_cycles` returns)."""
        return self.steady + self.tile_overhead + self.fill_drain

    @property
    def total(self):
        """Including the table loads."""
        return self.table_load + self.array_cycles

    @property
    def layer_total(self):
        """S2FP8 in to S2FP8 out: ``total`` plus the output path (the layer engine,
        hw/engine.py, with its output path serialized after the array)."""
        return self.total + self.output_path


#: Output-path cycles of every GEMM that do not depend on its shape: statistics latency,
#: scalar step, threshold-table writes, output-buffer read and encoder latency
#: (pysim.perf.arch).
OUTPUT_PATH_FIXED = (arch.STATS_LATENCY + arch.SCALAR_STEP_CYCLES + arch.THRESHOLD_LOAD_CYCLES
                     + arch.OUTPUT_BUFFER_READ_LATENCY + arch.ENCODE_LATENCY)


def output_path_cycles(m, n, cols: int, count=1):
    """Cycles the output path adds after the array's last result row, per GEMM output
    tensor (the ``count`` instances of a GEMM are one tensor, one alpha and beta):

    - pass 1 (statistics) runs on the array's result rows as they leave: only its
      latency ``arch.STATS_LATENCY`` after the last row;
    - the controller's scalar step, ``arch.SCALAR_STEP_CYCLES``;
    - the threshold-table writes, ``arch.THRESHOLD_LOAD_CYCLES``;
    - pass 2: the FP32 output buffer through the encoder, one row of C values a cycle:
      ``count * M * ceil(N / C)`` beats (the buffer holds the array's result rows; a
      ragged tile's padding columns are read, its padding rows skipped), then
      ``arch.OUTPUT_BUFFER_READ_LATENCY + arch.ENCODE_LATENCY``.
    """
    m, n, count = np.broadcast_arrays(*exact(m, n, count, factor=OUTPUT_PATH_FIXED))
    return OUTPUT_PATH_FIXED + count * m * -(-n // cols)


def array_config(rows, cols=None) -> ArrayConfig:
    """``rows`` if it is already an :class:`ArrayConfig` (and ``cols`` is None), else
    ``ArrayConfig(rows, cols)``: the cycle model takes either."""
    if isinstance(rows, ArrayConfig) and cols is None:
        return rows
    return ArrayConfig(rows, cols)


def breakdown(m, k, n, rows, cols=None, count=1) -> CycleBreakdown:
    """Vectorized cycle breakdown for GEMMs given as arrays (or scalars) m, k, n, count,
    on an ``rows`` x ``cols`` array (or ``breakdown(m, k, n, config, count=...)``).

    int64 arrays, or Python-int (object) arrays when a count could exceed int64: exact
    at any size. K must fit the array's ``k`` port (below 2**arch.K_BITS)."""
    config = array_config(rows, cols)
    k = check_dims("K", k, maximum=arch.K_MAX)
    count = check_dims("count", count)
    spacing = config.tile_spacing
    tiles, count, k = exact(tile_counts(m, n, config.rows, config.cols), count, k,
                            factor=spacing + config.drain_cycles + arch.TABLE_LOAD_CYCLES)
    # computed on 1-d arrays: numpy turns 0-d results into scalars (int64 or Python int)
    tiles, count, k = np.broadcast_arrays(tiles, count, k)
    shape = tiles.shape
    tiles, k = tiles.reshape(-1) * count.reshape(-1), k.reshape(-1)
    outputs = np.asarray(output_path_cycles(m, n, config.cols, count.reshape(shape))).reshape(-1)
    parts = (tiles, np.full_like(tiles, arch.TABLE_LOAD_CYCLES), tiles * k,
             (tiles - 1) * np.maximum(spacing - k, 0), np.full_like(tiles, config.drain_cycles),
             outputs.astype(tiles.dtype) if tiles.dtype == object else outputs)
    return CycleBreakdown(*(part.reshape(shape) for part in parts))


def gemm_cycles(M: int, K: int, N: int, rows, cols=None) -> int:
    """Cycles of one GEMM on the array (``rows`` x ``cols``, or an ArrayConfig), first
    beat accepted to last result out; a Python int, exact at any size. M, K, N are
    integers >= 1 (ShapeError otherwise), K at most ``arch.K_MAX``."""
    M, K, N = (check_gemm_dim(name, value) for name, value in (("M", M), ("K", K), ("N", N)))
    return int(breakdown(M, K, N, rows, cols).array_cycles)


def utilization(macs, cycles, rows: int, cols: int):
    """MACs / (R * C * cycles)."""
    return np.asarray(macs, dtype=np.float64) / (rows * cols * np.asarray(cycles, dtype=np.float64))


class GemmSchedule(NamedTuple):
    """What the array does with one GEMM under a given operand and result schedule
    (:func:`gemm_schedule`); cycle 0 is the first cycle after the decode tables are loaded."""

    accept: np.ndarray      # int64[T*K]: the cycle each beat was accepted, in beat order
    results: np.ndarray     # int64[T*R]: the cycle each result row left on ``c``

    @property
    def finish(self) -> int:
        """The cycle the last result row leaves."""
        return int(self.results[-1])

    @property
    def cycles(self) -> int:
        """First beat accepted to last result row, both included (:func:`gemm_cycles`
        when every beat is offered at cycle 0 and ``c`` is always ready)."""
        return self.finish - int(self.accept[0]) + 1


def gemm_schedule(M: int, K: int, N: int, rows, cols=None, *, offer=None,
                  ready=None) -> GemmSchedule:
    """The RTL's exact timing of one GEMM when operand beats arrive late and the result
    consumer back-pressures: the hook a memory model plugs into.

    ``offer`` (int[T*K], default all 0): the first cycle beat i (in
    :func:`pysim.perf.tiler.operand_beats` order) is offered; the driver then holds it
    valid until it is accepted, and beat i is offered no earlier than the cycle after
    beat i-1 was accepted. ``ready`` (bool[L], default empty): ``c.ready`` in cycles
    0..L-1; the consumer is ready in every cycle from L on.

    The rules are the array's (hw/array.py, docs/array.md): a beat is accepted in the
    first cycle it is offered unless it is the last beat of a tile, which also waits
    until ``tile_spacing`` cycles after the previous tile's last beat and until the
    result FIFO has credit for its R rows (``result_fifo_depth`` minus the rows of
    accepted tiles not yet popped); a tile's row i enters the FIFO so that it could leave
    ``(C - 1) + pipeline_latency + i`` cycles after the tile's last beat, and rows leave
    in order, one per cycle in which ``c.ready`` is high. One Python step per tile.
    """
    config = array_config(rows, cols)
    M, K, N = (check_gemm_dim(name, value) for name, value in (("M", M), ("K", K), ("N", N)))
    R, C = config.rows, config.cols
    tiles = -(-M // R) * -(-N // C)
    beats = tiles * K
    offer = _schedule_array("offer", offer, beats)
    ready = np.zeros(0, bool) if ready is None else np.asarray(ready)
    if ready.ndim != 1 or not (ready.dtype == np.bool_ or np.issubdtype(ready.dtype, np.integer)):
        raise ShapeError(f"ready must be a 1-D bool array (c.ready per cycle), got dtype "
                         f"{ready.dtype} and shape {list(ready.shape)}")
    ready_cycles = np.flatnonzero(ready)
    known, count = len(ready), len(ready_cycles)

    def rank(cycle):            # ready cycles before ``cycle``
        return np.where(cycle <= known, np.searchsorted(ready_cycles, np.minimum(cycle, known)),
                        count + (cycle - known))

    def cycle_of(index):        # the ``index``-th ready cycle
        inside = ready_cycles[np.minimum(index, count - 1)] if count else index
        return np.where(index < count, inside, known + (index - count))

    accept = np.empty(beats, np.int64)
    results = np.empty(tiles * R, np.int64)
    in_tile, row = np.arange(K), np.arange(R)
    first_row = (C - 1) + config.pipeline_latency
    spacing, depth = config.tile_spacing, config.result_fifo_depth
    previous_accept, previous_last, previous_pop = -1, -spacing, -1
    for tile in range(tiles):
        beat = slice(tile * K, (tile + 1) * K)
        # a[i] = max(offer[i], a[i-1] + 1): a running maximum of offer[i] - i
        times = np.maximum.accumulate(np.maximum(offer[beat] - in_tile, previous_accept + 1))
        times += in_tile
        last = max(int(times[-1]), previous_last + spacing)
        popped_needed = R * (tile + 1) - depth          # credits: rows popped before `last`
        if popped_needed > 0:
            last = max(last, int(results[popped_needed - 1]) + 1)
        times[-1] = last
        accept[beat] = times
        # row i can leave from last + first_row + i on, after row i-1, when c.ready
        ranks = np.maximum.accumulate(np.maximum(rank(last + first_row + row) - row,
                                                 previous_pop + 1)) + row
        results[tile * R:(tile + 1) * R] = cycle_of(ranks)
        previous_accept, previous_last, previous_pop = last, last, int(ranks[-1])
    return GemmSchedule(accept, results)


def check_gemm_dim(name: str, value) -> int:
    """A GEMM dimension: an integer >= 1 (K also below 2**arch.K_BITS, the width of the
    array's ``k`` port)."""
    maximum = arch.K_MAX if name == "K" else None
    return check_int(value, f"GEMM dimension {name}", minimum=1, maximum=maximum,
                     error=ShapeError)


def _schedule_array(name: str, value, length: int) -> np.ndarray:
    if value is None:
        return np.zeros(length, np.int64)
    array = np.asarray(value)
    if array.shape != (length,) or not np.issubdtype(array.dtype, np.integer) \
            or array.dtype == np.bool_:
        raise ShapeError(f"{name} must be an integer array of {length} beat cycles, got "
                         f"dtype {array.dtype} and shape {list(array.shape)}")
    if length and array.min() < 0:
        raise ShapeError(f"{name} cycles must be >= 0, got {int(array.min())}")
    return array.astype(np.int64)
