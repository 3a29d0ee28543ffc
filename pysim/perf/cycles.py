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

With an interleaved array (``ArrayConfig.interleave`` L > 1: each PE accumulates L tiles
at once, beats k-major within a group of L tiles, the last group padded to L tiles, a
beat accepted only in a cycle congruent to its slot mod L; docs/array.md), G = ceil(T/L)
groups and::

    cycles = (K - 1) L + G (L - 1) d1 + (G - 1) d0 + 1 + D
    d1 = 1 + L ceil((S - 1) / L)                       between a group's last beats
    d0 = (K - 1) L + 1 + L ceil(max(0, S - (K - 1) L - 1) / L)   to the next group's

which is the formula above for L = 1.

Split as: steady state T*K (one beat per cycle), tile overhead (T-1)*(max(K,S) - K)
(beats held back when K < S; with L > 1 also the padding tiles and the spacing of a
group's last beats), fill/drain D. Loading the two decode tables, in parallel,
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
from pysim.perf.tiler import check_dims, exact, padded_tiles, tile_counts


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
    last_beat = _last_beat_cycle(tiles, k, spacing, config.interleave)
    parts = (tiles, np.full_like(tiles, arch.TABLE_LOAD_CYCLES), tiles * k,
             last_beat + 1 - tiles * k, np.full_like(tiles, config.drain_cycles),
             outputs.astype(tiles.dtype) if tiles.dtype == object else outputs)
    return CycleBreakdown(*(part.reshape(shape) for part in parts))


def _last_beat_cycle(tiles, k, spacing: int, interleave: int):
    """The cycle (from 0, the first beat) of the GEMM's last beat with beats offered every
    cycle and ``c`` always ready (the module docstring's formula)."""
    if interleave == 1:
        return k - 1 + (tiles - 1) * np.maximum(k, spacing)
    L = interleave
    groups = -(-tiles // L)
    first_last = (k - 1) * L                               # a group's first last beat
    between = 1 + L * -(-(spacing - 1) // L)               # d1
    to_next = first_last + 1 + L * -(-np.maximum(spacing - first_last - 1, 0) // L)  # d0
    return first_last + groups * (L - 1) * between + (groups - 1) * to_next


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
    (:func:`gemm_schedule`); cycle 0 is the first cycle after the decode tables are loaded.
    T counts the padding tiles of an interleaved array (``tiler.padded_tiles``)."""

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
    first cycle it is offered (with an interleaved array, the first such cycle congruent
    to its slot, its index mod L; beats in ``operand_beats(..., interleave=L)`` order,
    padding tiles included) unless it is the last beat of a tile, which also waits
    until ``tile_spacing`` cycles after the previous tile's last beat and until the
    result FIFO has credit for its R rows (``result_fifo_depth`` minus the rows of
    accepted tiles not yet popped); a tile's row i enters the FIFO so that it could leave
    ``(C - 1) + pipeline_latency + i`` cycles after the tile's last beat, and rows leave
    in order, one per cycle in which ``c.ready`` is high. One Python step per tile.
    Cycle 0 has phase 0 (the array restarts its phase counter while a table is written).
    """
    config = array_config(rows, cols)
    M, K, N = (check_gemm_dim(name, value) for name, value in (("M", M), ("K", K), ("N", N)))
    R, C, L = config.rows, config.cols, config.interleave
    tiles = int(padded_tiles(-(-M // R) * -(-N // C), L))
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
    row = np.arange(R)
    first_row = (C - 1) + config.pipeline_latency
    spacing, depth = config.tile_spacing, config.result_fifo_depth
    # Beat i is accepted in a cycle congruent to i mod L (its slot's phase; L = 1: any
    # cycle): a[i] = i + L u[i], u[i] = max(u[i-1], ceil((lower bound of a[i] - i) / L)),
    # a running maximum. The lower bound is its offer, and for the last beat of a tile
    # also the spacing after the previous tile's last beat and the result credits.
    previous_u, previous_last, previous_pop = -1, -spacing, -1
    group_beats, body = L * K, L * (K - 1)
    for group in range(tiles // L):
        start = group * group_beats
        index = np.arange(start, start + body)
        u = np.maximum.accumulate(np.maximum(-((index - offer[start:start + body]) // L),
                                             previous_u))
        accept[start:start + body] = index + L * u
        previous_u = int(u[-1]) if body else previous_u
        for slot in range(L):
            tile, beat = group * L + slot, start + body + slot
            bound = max(int(offer[beat]), previous_last + spacing)
            popped_needed = R * (tile + 1) - depth          # credits: rows popped before
            if popped_needed > 0:
                bound = max(bound, int(results[popped_needed - 1]) + 1)
            previous_u = max(previous_u, -((beat - bound) // L))
            last = accept[beat] = beat + L * previous_u
            # row i can leave from last + first_row + i on, after row i-1, when c.ready
            ranks = np.maximum.accumulate(np.maximum(rank(last + first_row + row) - row,
                                                     previous_pop + 1)) + row
            results[tile * R:(tile + 1) * R] = cycle_of(ranks)
            previous_last, previous_pop = last, int(ranks[-1])
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
