"""Tiling of a GEMM onto an R x C output-stationary systolic array.

An ``(M, K, N)`` GEMM ``C[M, N] = A[M, K] @ B[K, N]`` is cut into output tiles of at
most ``R`` rows by ``C`` columns; each tile stays in the array while the full K
dimension streams through it. Tiles are ordered row-major over the output: tile (0, 0),
(0, 1), ... along N first, then down M. Tiles on the bottom and right edges are ragged
(fewer rows / columns) when R does not divide M or C does not divide N.

Two interfaces:

- :func:`tiles` lazily lists the :class:`Tile` objects of one GEMM (for traces and
  tests) and :func:`tile_count` counts them;
- :func:`tile_grid`, :func:`tile_counts`, :func:`tile_classes` and
  :func:`utilization` work on numpy arrays of GEMM shapes with no Python loop over
  tiles, so a whole training step (hundreds of GEMMs, millions of tiles) is counted in
  milliseconds. :func:`gemm_arrays` turns a list of :class:`pysim.workload.layers.Gemm` into
  those arrays.

A ragged tile has at most four shapes per GEMM: ``(R, C)``, ``(R, n % C)``,
``(m % R, C)`` and ``(m % R, n % C)``; :func:`tile_classes` gives how many tiles of each.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from pysim.perf.arch import ARRAY_DIM_MAX, check_array
from pysim.errors import ShapeError
from pysim.perf.gemm import Gemm

#: largest array side the simulator supports
MAX_ARRAY_DIM = ARRAY_DIM_MAX


@dataclass(frozen=True)
class Tile:
    """One output tile: rows ``row0 : row0+rows`` and columns ``col0 : col0+cols`` of
    the result, accumulated over the full ``k``."""

    row0: int
    col0: int
    rows: int
    cols: int
    k: int

    @property
    def macs(self) -> int:
        return self.rows * self.cols * self.k


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_dim(name: str, value) -> int:
    if not _is_int(value) or value < 1:
        raise ShapeError(f"GEMM dimension {name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_dims(name: str, value) -> np.ndarray:
    """Array form: an integer array (or scalar) with every entry >= 1 -> int64 array."""
    array = np.asarray(value)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ShapeError(f"GEMM dimension {name} must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    bad = np.flatnonzero(array < 1)
    if bad.size:
        raise ShapeError(f"GEMM dimension {name} must be >= 1, got {array.flat[bad[0]]} "
                         f"at index {bad[0]} ({bad.size} bad entries)")
    return array


def tiles(m: int, k: int, n: int, rows: int, cols: int) -> Iterator[Tile]:
    """The output tiles of an ``(m, k, n)`` GEMM on a ``rows x cols`` array, lazily, in
    row-major order over the output. Arguments are checked when called."""
    m, k, n = _check_dim("M", m), _check_dim("K", k), _check_dim("N", n)
    rows, cols = check_array(rows, cols)

    def generate():
        for row0 in range(0, m, rows):
            tile_rows = min(rows, m - row0)
            for col0 in range(0, n, cols):
                yield Tile(row0, col0, tile_rows, min(cols, n - col0), k)

    return generate()


def tile_count(m: int, n: int, rows: int, cols: int) -> int:
    """Number of output tiles: ``ceil(m / rows) * ceil(n / cols)``."""
    m, n = _check_dim("M", m), _check_dim("N", n)
    rows, cols = check_array(rows, cols)
    return -(-m // rows) * -(-n // cols)


class TileGrid(NamedTuple):
    """Per GEMM: ``full_row_tiles`` tiles of ``rows`` rows plus one of ``ragged_rows``
    rows if nonzero (down M); the same across N with ``cols``."""

    full_row_tiles: np.ndarray
    ragged_rows: np.ndarray
    full_col_tiles: np.ndarray
    ragged_cols: np.ndarray


def tile_grid(m, n, rows: int, cols: int) -> TileGrid:
    """Vectorized tiling of GEMMs with output sizes ``m`` x ``n`` (int arrays or
    scalars, broadcast together): ``(m // rows, m % rows, n // cols, n % cols)`` as
    int64 arrays."""
    m, n = np.broadcast_arrays(_check_dims("M", m), _check_dims("N", n))
    rows, cols = check_array(rows, cols)
    return TileGrid(m // rows, m % rows, n // cols, n % cols)


def tile_counts(m, n, rows: int, cols: int) -> np.ndarray:
    """Vectorized :func:`tile_count` (int64 array)."""
    grid = tile_grid(m, n, rows, cols)
    return ((grid.full_row_tiles + (grid.ragged_rows > 0))
            * (grid.full_col_tiles + (grid.ragged_cols > 0)))


class TileClasses(NamedTuple):
    """The (at most) four tile shapes of each GEMM, along a trailing axis of length 4,
    in the order full x full, full x ragged-columns, ragged-rows x full,
    ragged x ragged. ``count[..., j]`` tiles have shape ``tile_rows[..., j]`` x
    ``tile_cols[..., j]``; an absent class has count 0 (and a 0 side)."""

    count: np.ndarray
    tile_rows: np.ndarray
    tile_cols: np.ndarray


def tile_classes(m, n, rows: int, cols: int) -> TileClasses:
    """Vectorized: how many tiles of each shape every GEMM has. The total of ``count``
    over the last axis is :func:`tile_counts`; ``sum(count * tile_rows * tile_cols)``
    over the last axis is ``m * n``."""
    rows, cols = check_array(rows, cols)
    fr, rr, fc, rc = tile_grid(m, n, rows, cols)
    has_rr, has_rc = (rr > 0).astype(np.int64), (rc > 0).astype(np.int64)
    count = np.stack([fr * fc, fr * has_rc, has_rr * fc, has_rr * has_rc], axis=-1)
    full_r, full_c = np.full_like(rr, rows), np.full_like(rc, cols)
    tile_rows = np.stack([full_r, full_r, rr, rr], axis=-1)
    tile_cols = np.stack([full_c, rc, full_c, rc], axis=-1)
    present = count > 0
    return TileClasses(count, np.where(present, tile_rows, 0), np.where(present, tile_cols, 0))


def utilization(m, k, n, rows: int, cols: int) -> np.ndarray:
    """Vectorized fraction of the array's MAC slots doing useful work if every tile
    costs the full ``rows * cols * k`` (no fill/drain): ``m*n / (tiles*rows*cols)``.
    ``k`` is validated and broadcast but cancels out."""
    k = _check_dims("K", k)
    m, n = _check_dims("M", m), _check_dims("N", n)
    counts = tile_counts(m, n, rows, cols)
    shape = np.broadcast_shapes(counts.shape, k.shape)
    useful = np.broadcast_to(m * n, shape)
    return useful / (np.broadcast_to(counts, shape) * (rows * cols))


class GemmArrays(NamedTuple):
    """Shapes of many GEMMs as int64 arrays (one entry per :class:`Gemm`)."""

    m: np.ndarray
    k: np.ndarray
    n: np.ndarray
    count: np.ndarray

    @property
    def macs(self) -> np.ndarray:
        return self.m * self.k * self.n * self.count


def gemm_arrays(gemms: Iterable[Gemm]) -> GemmArrays:
    """``[Gemm, ...]`` -> :class:`GemmArrays` for the vectorized helpers."""
    gemms = list(gemms)
    data = np.array([(g.m, g.k, g.n, g.count) for g in gemms], dtype=np.int64)
    data = data.reshape(len(gemms), 4)
    return GemmArrays(data[:, 0], data[:, 1], data[:, 2], data[:, 3])


def operand_beats(a_codes: np.ndarray, b_codes: np.ndarray, rows: int, cols: int):
    """The beats the array consumes for C = A @ B: ``(a_beats, b_beats)``.

    ``a_codes`` (M, K) and ``b_codes`` (K, N) are uint8 code matrices. Tiles run in
    :func:`tiles` order; tile t's K beats are rows ``t*K .. t*K + K-1``: ``a_beats``
    uint8[T*K, rows] holds A[row0 : row0+rows, k] and ``b_beats`` uint8[T*K, cols] holds
    B[k, col0 : col0+cols], both zero-padded past a ragged edge.
    """
    rows, cols = check_array(rows, cols)
    m, k_dim = a_codes.shape
    n = b_codes.shape[1]
    row_tiles, col_tiles = -(-m // rows), -(-n // cols)
    a_pad = np.zeros((row_tiles * rows, k_dim), np.uint8)
    a_pad[:m] = a_codes
    b_pad = np.zeros((k_dim, col_tiles * cols), np.uint8)
    b_pad[:, :n] = b_codes
    # (row_tiles, K, rows) repeated over column tiles, and (col_tiles, K, cols) over row tiles
    a_tiles = a_pad.reshape(row_tiles, rows, k_dim).transpose(0, 2, 1)
    b_tiles = b_pad.reshape(k_dim, col_tiles, cols).transpose(1, 0, 2)
    a_beats = np.repeat(a_tiles, col_tiles, axis=0).reshape(-1, rows)
    b_beats = np.tile(b_tiles, (row_tiles, 1, 1)).reshape(-1, cols)
    return a_beats, b_beats


def place_results(row_beats: np.ndarray, m: int, n: int, rows: int, cols: int) -> np.ndarray:
    """Assemble the array's result rows into C (M, N).

    ``row_beats`` [T*rows, cols] holds, tile after tile in :func:`tiles` order, each
    tile's ``rows`` result rows; padding rows and columns are dropped.
    """
    rows, cols = check_array(rows, cols)
    row_tiles, col_tiles = -(-m // rows), -(-n // cols)
    grid = np.asarray(row_beats).reshape(row_tiles, col_tiles, rows, cols)
    return grid.transpose(0, 2, 1, 3).reshape(row_tiles * rows, col_tiles * cols)[:m, :n]
