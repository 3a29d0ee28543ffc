"""Tiling of a GEMM onto an R x C output-stationary systolic array.

An ``(M, K, N)`` GEMM ``C[M, N] = A[M, K] @ B[K, N]`` is cut into output tiles of at
most ``R`` rows by ``C`` columns; each tile stays in the array while the full K
dimension streams through it. Tiles are ordered row-major over the output: tile (0, 0),
(0, 1), ... along N first, then down M. Tiles on the bottom and right edges are ragged
(fewer rows / columns) when R does not divide M or C does not divide N; the driver pads
them with zero codes.

- :func:`tile_counts`: tiles per GEMM, vectorized over numpy arrays of shapes (a whole
  training step, millions of tiles, in microseconds); :func:`gemm_arrays` turns a list
  of :class:`pysim.perf.gemm.Gemm` into those arrays;
- :func:`operand_beats` / :func:`place_results`: the beats the array consumes for one
  GEMM, and its result rows put back into C (the RTL benches use them).

(A tile-by-tile enumeration is the test oracle of these, in tests/test_layers_tiler.py.)
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np

from pysim.errors import ShapeError
from pysim.perf.arch import check_array
from pysim.perf.gemm import Gemm
from pysim.validate import is_int


#: Counts derived from shape fields by a few products (cycles = tiles * K, MACs, bytes =
#: 4 * count * (M*K + K*N + M*N)) stay below 2**63 when the product of the fields'
#: largest values is below this; above it, the arrays become Python ints (exact, ~50x
#: slower per element), so no count ever wraps around.
INT64_SAFE_PRODUCT = 1 << 58


def exact(*arrays, factor: int = 1) -> tuple:
    """The integer arrays as int64 if ``factor`` times the product of their largest
    entries is below :data:`INT64_SAFE_PRODUCT`, else as object arrays of Python ints."""
    bound = factor
    for array in arrays:
        if np.size(array):
            bound *= max(int(np.max(array)), 1)
    dtype = np.int64 if bound < INT64_SAFE_PRODUCT else object
    return tuple(np.asarray(array).astype(dtype) for array in arrays)


def check_dims(name: str, value, *, maximum: int | None = None) -> np.ndarray:
    """An integer array (or scalar) with every entry in ``1..maximum`` -> int64 array, or
    an object array of Python ints if some entry does not fit int64 (ShapeError naming
    the field, the first bad value and its index otherwise)."""
    array = np.asarray(value)
    if array.dtype == object:
        flat = array.ravel()
        if not all(is_int(v) for v in flat):
            bad = next(i for i, v in enumerate(flat) if not is_int(v))
            raise ShapeError(f"GEMM dimension {name} must be integers, got {flat[bad]!r} "
                             f"at index {bad}")
    elif array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ShapeError(f"GEMM dimension {name} must be integers, got dtype {array.dtype}")
    elif array.dtype == np.uint64 and array.size and int(array.max()) >= 1 << 63:
        array = array.astype(object)
    else:
        array = array.astype(np.int64)
    for relation, limit, bad in ((">=", 1, array < 1),
                                 ("<=", maximum, array > maximum if maximum else False)):
        where = np.flatnonzero(np.asarray(bad, bool))
        if where.size:
            raise ShapeError(f"GEMM dimension {name} must be {relation} {limit}, got "
                             f"{array.flat[where[0]]} at index {where[0]} "
                             f"({where.size} bad entries)", index=int(where[0]))
    return array


def tile_counts(m, n, rows: int, cols: int) -> np.ndarray:
    """Output tiles of GEMMs with output sizes ``m`` x ``n`` (int arrays or scalars,
    broadcast together): ``ceil(m / rows) * ceil(n / cols)``, int64 (Python ints where
    that could wrap)."""
    m, n = np.broadcast_arrays(*exact(check_dims("M", m), check_dims("N", n)))
    rows, cols = check_array(rows, cols)
    return -(-m // rows) * -(-n // cols)


class GemmArrays(NamedTuple):
    """Shapes of many GEMMs, one entry per :class:`Gemm`: int64 arrays, or Python-int
    (object) arrays when products of the fields could exceed int64 (:func:`exact`)."""

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
    fields = [np.array([getattr(g, name) for g in gemms], dtype=object).reshape(len(gemms))
              for name in ("m", "k", "n", "count")]
    # bytes are up to 4 * 3 * MACs + 24 * count: 16x headroom on the product of the fields
    return GemmArrays(*exact(*fields, factor=16))


def operand_beats(a_codes: np.ndarray, b_codes: np.ndarray, rows: int, cols: int,
                  interleave: int = 1):
    """The beats the array consumes for C = A @ B: ``(a_beats, b_beats)``.

    ``a_codes`` (M, K) and ``b_codes`` (K, N) are uint8 code matrices. Tiles run in
    row-major tile order; tile t's K beats are rows ``t*K .. t*K + K-1``: ``a_beats``
    uint8[T*K, rows] holds A[row0 : row0+rows, k] and ``b_beats`` uint8[T*K, cols] holds
    B[k, col0 : col0+cols], both zero-padded past a ragged edge.

    ``interleave`` L > 1 (an array whose PEs accumulate L tiles at once,
    ``ArrayConfig.interleave``): the tiles go in groups of L, the last group padded with
    all-zero tiles (:func:`padded_tiles`), and a group's beats run k-major, tile-minor:
    beat k of its tiles 0..L-1, then beat k + 1, ...
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
    a_beats = np.repeat(a_tiles, col_tiles, axis=0)
    b_beats = np.tile(b_tiles, (row_tiles, 1, 1))
    if interleave > 1:
        a_beats, b_beats = (_interleave(beats, interleave) for beats in (a_beats, b_beats))
    return a_beats.reshape(-1, rows), b_beats.reshape(-1, cols)


def padded_tiles(tiles, interleave: int = 1):
    """Tiles the array runs for ``tiles`` output tiles: rounded up to a multiple of the
    interleave L (the last group's missing tiles are all-zero padding)."""
    return -(-np.asarray(tiles) // interleave) * interleave


def _interleave(tile_beats: np.ndarray, interleave: int) -> np.ndarray:
    """(T, K, width) beats -> groups of ``interleave`` tiles, beats k-major within a group."""
    tiles, k_dim, width = tile_beats.shape
    padded = np.zeros((int(padded_tiles(tiles, interleave)), k_dim, width), tile_beats.dtype)
    padded[:tiles] = tile_beats
    return padded.reshape(-1, interleave, k_dim, width).transpose(0, 2, 1, 3)


def place_results(row_beats: np.ndarray, m: int, n: int, rows: int, cols: int) -> np.ndarray:
    """Assemble the array's result rows into C (M, N).

    ``row_beats`` [T*rows, cols] holds, tile after tile in row-major order, each
    tile's ``rows`` result rows; padding rows and columns are dropped, and so are the
    rows of any padding tiles after the last tile (an interleaved array, see
    :func:`operand_beats`, finishes a group's tiles in tile order).
    """
    rows, cols = check_array(rows, cols)
    row_tiles, col_tiles = -(-m // rows), -(-n // cols)
    rows_used = row_tiles * col_tiles * rows
    grid = np.asarray(row_beats)[:rows_used].reshape(row_tiles, col_tiles, rows, cols)
    return grid.transpose(0, 2, 1, 3).reshape(row_tiles * rows, col_tiles * cols)[:m, :n]
