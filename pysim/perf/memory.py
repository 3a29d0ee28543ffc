"""Memory model: blocking search, per-block DRAM/compute schedule, stalls, traffic, energy.

For every GEMM (M, K, N, count) on an :class:`~pysim.perf.accel.Accelerator` and an
operand format (docs/memory.md has the full description and a worked example):

1. **Blocking search** (vectorized over all GEMMs, :func:`choose_blocking`). The array is
   output-stationary: a tile needs its whole A panel (R x K) and B panel (K x C), so the
   compute schedule (and the compute cycles, ``pysim.perf.cycles.breakdown``) is fixed;
   what the blocking chooses is which panels stay in the buffers. Candidates:

   - ``mn``: blocks of mt x nt tiles, A block (mt*R x K) and B block (K x nt*C) resident,
     m-blocks outer: A read once, B once per m-block (once in all if nt covers N);
   - ``nm``: the same with n-blocks outer (B read once, A once per n-block unless mt
     covers M);
   - ``a-panel``: one A panel resident, B streamed in K chunks for every tile (when a B
     panel does not fit); ``b-panel`` the mirror; ``stream``: both streamed in chunks.

   mt and nt run over the powers of two, the largest block that fits and the whole
   dimension. A candidate fits when its blocks (and the results of a block) fit in one
   slot of the buffers (half a buffer when double-buffered). The search **minimises DRAM
   bytes**; ties go to the smallest first block (the least start-up time before the
   first beat), then to the first candidate listed.
2. **Schedule** (:func:`gemm_timing`, exact integer arithmetic): the chosen blocking is a
   sequence of steps (a block, or one K chunk of a tile), each with its operand beats,
   bytes loaded and result bytes stored. The DRAM moves, between step b and step b+1,
   the results of b and the loads of b+1 at ``bandwidth`` bytes/cycle (ceil), from b's
   first beat (double-buffered) or after its last (single-buffered); step b+1's beats
   are released when the move ends. What the array does with them is the RTL's own
   rule (``pysim.perf.cycles.gemm_schedule``: a tile's last beat waits max(K, S) after
   the previous tile's), so the total equals the RTL cycle for cycle. Each step is a
   max-plus linear map of (first beat, one past the last beat, one past the last tile):
   runs are matrix products and repetitions matrix powers (:class:`Segment`); with
   K >= S the spacing never binds and a run sums in O(1) (:class:`Run`). The first load
   overlaps the decode-table load, the last store follows the drain.

With unlimited bandwidth the transfers take 0 cycles and the total is exactly
``breakdown(...).total`` (table loads + ``gemm_cycles``), whatever the buffers.
:func:`explicit_schedule` runs the same recurrence step by step; :func:`stream_plan`
gives a bandwidth-limited RTL driver its tile order and per-beat release cycles
(checked against the RTL by ``hw.tb.array_checks``' ``array_memory_*``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from pysim.errors import BadInput
from pysim.perf.accel import Accelerator, load_accelerator, parse_config, read_toml
from pysim.perf.cycles import breakdown
from pysim.perf.formats_cost import OPERAND_FORMATS, operand_format, output_format
from pysim.perf.gemm import Gemm
from pysim.perf.tiler import gemm_arrays

#: every byte count the vectorized search forms stays below this (checked per GEMM
#: before any int64 product, so nothing wraps; larger GEMMs are rejected by name)
INT64_BOUND = 1 << 62
#: stand-in capacity of an unlimited buffer in the int64 search
UNLIMITED = INT64_BOUND
MODES = ("mn", "nm", "a-panel", "b-panel", "stream")


# ------------------------------------------------------------------- pipeline algebra
#
# The array's timing, as the RTL does it (pysim.perf.cycles.gemm_schedule): a beat is
# accepted in the first cycle it is offered (never before the previous beat), except the
# last beat of a tile, which also waits max(K, S) cycles after the previous tile's last
# beat (the spacing; with K >= S it never binds). All the beats of a step are offered
# from the same cycle (its load done), so a step's timing is set by three cycles of the
# state before it: ``s`` its first beat, ``e`` one past its last beat and ``L`` one past
# the last beat of the last finished tile. Each step maps (s, e, L) to its own (s', e',
# L') by maxima of sums: a max-plus linear map, a 3 x 3 matrix, so a run of steps is a
# matrix product and ``count`` repetitions a matrix power (O(log count)).

NEG = float("-inf")       # max-plus zero: "no such path" (finite entries stay Python ints)
IDENTITY = (0, NEG, NEG, NEG, 0, NEG, NEG, NEG, 0)


def _mat_mul(a, b):
    """Max-plus product a (x) b of 3 x 3 matrices (row-major 9-tuples): apply b, then a."""
    a0, a1, a2, a3, a4, a5, a6, a7, a8 = a
    b0, b1, b2, b3, b4, b5, b6, b7, b8 = b
    return (max(a0 + b0, a1 + b3, a2 + b6), max(a0 + b1, a1 + b4, a2 + b7),
            max(a0 + b2, a1 + b5, a2 + b8),
            max(a3 + b0, a4 + b3, a5 + b6), max(a3 + b1, a4 + b4, a5 + b7),
            max(a3 + b2, a4 + b5, a5 + b8),
            max(a6 + b0, a7 + b3, a8 + b6), max(a6 + b1, a7 + b4, a8 + b7),
            max(a6 + b2, a7 + b5, a8 + b8))


def _mat_pow(a, times):
    out = IDENTITY
    while times:
        if times & 1:
            out = _mat_mul(out, a)
        times >>= 1
        if times:
            a = _mat_mul(a, a)
    return out


class Shape(NamedTuple):
    """What a step does to the array: ``beats`` operand beats; ``head`` of them up to and
    including the first tile's last beat, then ``tiles - 1`` more whole tiles (a block
    step: head = K; the last chunk of a tile: head = its beats, tiles = 1; any other
    chunk: tiles = 0, head = 0)."""

    beats: int
    head: int
    tiles: int


class Segment(NamedTuple):
    """A run of steps, summarised so that runs concatenate and repeat without expanding
    them: the shape and load bytes of its first step (they decide how it joins the step
    before), the store bytes of its last, and ``matrix``, the max-plus map from the
    (s, e, L) of its first step to those of its last."""

    first: Shape
    first_ld: int
    last_st: int
    matrix: tuple
    sum_ld: int
    sum_st: int
    sum_beats: int
    sum_tiles: int


class Timing:
    """One accelerator and one GEMM: transfer cycles ``ceil(bytes / bandwidth)`` (0 when
    unlimited), double or single buffering, and ``ks`` = max(K, S), the spacing of two
    tiles' last beats."""

    def __init__(self, bandwidth: Fraction | None, double_buffered: bool, ks: int = 0):
        self.bandwidth = bandwidth
        self.double_buffered = double_buffered
        self.ks = ks
        # bytes/cycle = num/den: cycles = ceil(bytes * den / num), exact
        self._num = None if bandwidth is None else bandwidth.numerator
        self._den = None if bandwidth is None else bandwidth.denominator

    def transfer(self, nbytes: int) -> int:
        if self._num is None or nbytes == 0:
            return 0
        return -(-nbytes * self._den // self._num)

    def entry(self, shape: Shape, nbytes: int) -> tuple:
        """The max-plus map (s, e, L) of a step -> those of the next step, whose shape is
        ``shape``, when ``nbytes`` (this step's results + the next step's operands) move
        between them. Double-buffered the move starts with this step's first beat (the
        next step's slot is free): the next first beat is offered at max(e, s + T);
        single-buffered it starts after its last beat: at e + T."""
        t = self.transfer(nbytes)
        s_row = (t, 0, NEG) if self.double_buffered else (NEG, t, NEG)
        if shape.tiles == 0:
            e_row = (s_row[0] + shape.beats, s_row[1] + shape.beats, NEG)
            return s_row + e_row + (NEG, NEG, 0)
        more = (shape.tiles - 1) * self.ks
        e_row = (s_row[0] + shape.head + more, s_row[1] + shape.head + more, self.ks + more)
        return s_row + e_row + e_row

    def first(self, shape: Shape, start: int) -> tuple:
        """(s, e, L) of the first step of a GEMM, its first beat at ``start`` (no tile
        before it: no spacing; L = NEG when it finishes no tile)."""
        if shape.tiles == 0:
            return start, start + shape.beats, NEG
        end = start + shape.head + (shape.tiles - 1) * self.ks
        return start, end, end

    def after(self, state, shape: Shape, nbytes: int) -> tuple:
        """One step of the recurrence on plain numbers (the step-by-step schedule)."""
        s, e, last = state
        t = self.transfer(nbytes)
        start = max(e, s + t) if self.double_buffered else e + t
        if shape.tiles == 0:
            return start, start + shape.beats, last
        end = max(start + shape.head, last + self.ks) + (shape.tiles - 1) * self.ks
        return start, end, end


class Algebra:
    """Builds :class:`Segment` summaries: the closed form when K < S (the spacing may
    bind after a stall); :class:`PairAlgebra` is the one for K >= S."""

    def __init__(self, timing: Timing):
        self.timing = timing

    def step(self, beats, head, tiles, ld, st):
        return Segment(Shape(beats, head, tiles), ld, st, IDENTITY, ld, st, beats, tiles)

    def _join(self, a: Segment, b: Segment, matrix_a) -> tuple:
        return _mat_mul(b.matrix, _mat_mul(self.timing.entry(b.first, a.last_st + b.first_ld),
                                           matrix_a))

    def seq(self, *parts):
        parts = [p for p in parts if p is not None]
        out = parts[0]
        for b in parts[1:]:
            out = Segment(out.first, out.first_ld, b.last_st,
                          self._join(out, b, out.matrix), out.sum_ld + b.sum_ld,
                          out.sum_st + b.sum_st, out.sum_beats + b.sum_beats,
                          out.sum_tiles + b.sum_tiles)
        return out

    def rep(self, part, times):
        if part is None or times <= 0:
            return None
        if times == 1:
            return part
        # x_last = (M E)^(times-1) M x_first: M the run's map, E the join of two runs
        cycle = self._join(part, part, IDENTITY)
        matrix = _mat_mul(_mat_pow(cycle, times - 1), part.matrix)
        return Segment(part.first, part.first_ld, part.last_st, matrix,
                       times * part.sum_ld, times * part.sum_st, times * part.sum_beats,
                       times * part.sum_tiles)

    def add_first_load(self, part, extra):
        return part._replace(first_ld=part.first_ld + extra, sum_ld=part.sum_ld + extra)


class Run(NamedTuple):
    """A run of steps when the spacing cannot bind (K >= S, the common case): a step's
    last beat is then always ``beats`` cycles after its first, the state is one number
    (the first beat) and a run sums in O(1). ``inner`` is the sum over adjacent steps
    (b, b+1) of ``pair(beats_b, st_b + ld_{b+1})``, the cycles from the first beat of b
    to that of b+1."""

    first_ld: int
    last_beats: int
    last_st: int
    inner: int
    sum_ld: int
    sum_st: int
    sum_beats: int
    sum_tiles: int


class PairAlgebra:
    """Builds :class:`Run` summaries: the max-plus map with K >= S reduces to
    s' = s + max(beats, T) double-buffered, s + beats + T single-buffered."""

    def __init__(self, timing: Timing):
        self.timing = timing

    def pair(self, beats: int, nbytes: int) -> int:
        t = self.timing.transfer(nbytes)
        return max(beats, t) if self.timing.double_buffered else beats + t

    def step(self, beats, head, tiles, ld, st):
        return Run(ld, beats, st, 0, ld, st, beats, tiles)

    def seq(self, *parts):
        parts = [p for p in parts if p is not None]
        out = parts[0]
        for b in parts[1:]:
            out = Run(out.first_ld, b.last_beats, b.last_st,
                      out.inner + b.inner + self.pair(out.last_beats, out.last_st + b.first_ld),
                      out.sum_ld + b.sum_ld, out.sum_st + b.sum_st, out.sum_beats + b.sum_beats,
                      out.sum_tiles + b.sum_tiles)
        return out

    def rep(self, part, times):
        if part is None or times <= 0:
            return None
        join = self.pair(part.last_beats, part.last_st + part.first_ld)
        return Run(part.first_ld, part.last_beats, part.last_st,
                   times * part.inner + (times - 1) * join, times * part.sum_ld,
                   times * part.sum_st, times * part.sum_beats, times * part.sum_tiles)

    def add_first_load(self, part, extra):
        return part._replace(first_ld=part.first_ld + extra, sum_ld=part.sum_ld + extra)


class Expand:
    """Builds the explicit list of steps ``[beats, head, tiles, ld, st]`` (small GEMMs,
    tests and the RTL hook)."""

    def step(self, beats, head, tiles, ld, st):
        return [[beats, head, tiles, ld, st]]

    def seq(self, *parts):
        return [list(s) for p in parts if p is not None for s in p]

    def rep(self, part, times):
        if part is None or times <= 0:
            return None
        return [list(s) for _ in range(times) for s in part]

    def add_first_load(self, part, extra):
        part = [list(s) for s in part]
        part[0][3] += extra
        return part


# ------------------------------------------------------------------------ steps

def _ceil(a, b):
    return -(-a // b)


def _resident_steps(B, M, N, K, R, C, mt, nt, e, o, prefetch):
    """Blocks of mt x nt tiles, m-blocks outer (the ``nm`` order is this with A and B
    swapped); a step is a block (its tiles in a row). With ``prefetch`` (double
    buffering) the next m-block's A block is loaded in even pieces during the steps of
    the current one (its slot is free); otherwise with the m-block's first step."""
    mtiles, ntiles = _ceil(M, R), _ceil(N, C)
    nbm, nbn = _ceil(mtiles, mt), _ceil(ntiles, nt)
    last_mt, last_nt = mtiles - (nbm - 1) * mt, ntiles - (nbn - 1) * nt
    last_rows, last_cols = M - (nbm - 1) * mt * R, N - (nbn - 1) * nt * C

    def block(tiles, ld, st):
        return B.step(tiles * K, K, tiles, ld, st)

    def mblock(rows, tiles_m, first, next_rows):
        own = rows * K * e if (first or not prefetch) else 0
        ahead = next_rows * K * e if prefetch else 0
        per, rest = divmod(ahead, nbn)   # per step, and the remainder on the first
        if nbn == 1:  # the whole of B is one block: loaded with the first m-block only
            return block(tiles_m * ntiles, own + (K * N * e if first else 0) + ahead,
                         rows * N * o)
        cols = nt * C
        return B.seq(
            block(tiles_m * nt, own + K * cols * e + per + rest, rows * cols * o),
            B.rep(block(tiles_m * nt, K * cols * e + per, rows * cols * o), nbn - 2),
            block(tiles_m * last_nt, K * last_cols * e + per, rows * last_cols * o))

    if nbm == 1:
        return mblock(last_rows, last_mt, True, 0)
    if nbm == 2:
        return B.seq(mblock(mt * R, mt, True, last_rows), mblock(last_rows, last_mt, False, 0))
    return B.seq(mblock(mt * R, mt, True, mt * R),
                 B.rep(mblock(mt * R, mt, False, mt * R), nbm - 3),
                 mblock(mt * R, mt, False, last_rows), mblock(last_rows, last_mt, False, 0))


def _chunked_tile(B, rows, cols, K, kb, e, o, a_stream, panel, per, rest):
    """One tile whose K is streamed in chunks of kb beats (B always streamed, A too if
    ``a_stream``); ``panel`` bytes (its resident panel) are loaded with the first chunk,
    ``per`` prefetch bytes with every chunk and ``rest`` more with the first. Its last
    chunk finishes the tile (and is the one the spacing can hold back)."""
    per_beat = (rows * e if a_stream else 0) + cols * e
    chunks = _ceil(K, kb)
    last = K - (chunks - 1) * kb
    if chunks == 1:
        return B.step(K, K, 1, K * per_beat + panel + per + rest, rows * cols * o)
    return B.seq(B.step(kb, 0, 0, kb * per_beat + panel + per + rest, 0),
                 B.rep(B.step(kb, 0, 0, kb * per_beat + per, 0), chunks - 2),
                 B.step(last, last, 1, last * per_beat + per, rows * cols * o))


def _panel_steps(B, M, N, K, R, C, kb, e, o, a_resident, prefetch):
    """Row-major tiles; A panel resident if ``a_resident`` (loaded with the first tile of
    its row, or spread over the previous row's steps with ``prefetch``), else streamed
    with B (``stream``)."""
    mtiles, ntiles = _ceil(M, R), _ceil(N, C)
    last_rows, last_cols = M - (mtiles - 1) * R, N - (ntiles - 1) * C
    steps_per_tile = _ceil(K, kb)

    def row(rows, first, next_rows):
        own = rows * K * e if a_resident and (first or not prefetch) else 0
        ahead = next_rows * K * e if a_resident and prefetch else 0
        per, rest = divmod(ahead, ntiles * steps_per_tile)

        def tile(cols, first_tile):
            return _chunked_tile(B, rows, cols, K, kb, e, o, not a_resident,
                                 own if first_tile else 0, per, rest if first_tile else 0)
        if ntiles == 1:
            return tile(last_cols, True)
        return B.seq(tile(C, True), B.rep(tile(C, False), ntiles - 2), tile(last_cols, False))

    if mtiles == 1:
        return row(last_rows, True, 0)
    if mtiles == 2:
        return B.seq(row(R, True, last_rows), row(last_rows, False, 0))
    return B.seq(row(R, True, R), B.rep(row(R, False, R), mtiles - 3), row(R, False, last_rows),
                 row(last_rows, False, 0))


def build_steps(B, mode, M, K, N, R, C, mt, nt, kb, e, o, prefetch=True):
    """The step sequence of one GEMM instance for a blocking, with builder ``B``;
    ``prefetch``: the buffers are double-buffered (the next outer block loads early)."""
    if mode == "mn":
        return _resident_steps(B, M, N, K, R, C, mt, nt, e, o, prefetch)
    if mode == "nm":  # A and B swap roles: loads, stores and tiles are symmetric
        return _resident_steps(B, N, M, K, C, R, nt, mt, e, o, prefetch)
    if mode == "a-panel":
        return _panel_steps(B, M, N, K, R, C, kb, e, o, True, prefetch)
    if mode == "b-panel":
        return _panel_steps(B, N, M, K, C, R, kb, e, o, True, prefetch)
    return _panel_steps(B, M, N, K, R, C, kb, e, o, False, prefetch)


# ------------------------------------------------------------------- blocking search

@dataclass(frozen=True)
class Blocking:
    """Per GEMM (numpy arrays): the chosen mode (index into MODES), mt, nt (tiles per
    block), kb (chunk beats, K when not chunked), DRAM bytes of A and B elements read
    (metadata excluded), and the bytes each buffer holds (one slot)."""

    mode: np.ndarray
    mt: np.ndarray
    nt: np.ndarray
    kb: np.ndarray
    a_read: np.ndarray
    b_read: np.ndarray
    a_footprint: np.ndarray
    b_footprint: np.ndarray
    r_footprint: np.ndarray


def _capacity(value, slots):
    return UNLIMITED if value is None else value // slots


def check_bounds(m, k, n, count, rows, cols, e, names):
    """Reject (BadInput naming the GEMM) any GEMM whose largest byte count (both operands
    re-read for every tile, results, times count) could reach INT64_BOUND."""
    mf, kf, nf, cf = (np.asarray(x).astype(np.float64) for x in (m, k, n, count))
    mtiles, ntiles = np.ceil(mf / rows), np.ceil(nf / cols)
    worst_bytes = ((mf * kf * ntiles + kf * nf * mtiles) * e + mf * nf * 4 + 4096) * cf
    worst_cycles = mtiles * ntiles * cf * (kf + 4096)
    worst = np.maximum(worst_bytes, worst_cycles)
    bad = np.flatnonzero(worst >= INT64_BOUND)
    if bad.size:
        i = bad[0]
        raise BadInput(f"{names[i]}: GEMM M={m[i]} K={k[i]} N={n[i]} count={count[i]} is too "
                       f"large for the memory model (byte/cycle counts up to {worst[i]:.3g} "
                       f"> 2**62)")


def _balanced_chunk(k, fit):
    """K split into the fewest chunks of at most ``fit`` beats, of equal size but the
    last: ceil(K / ceil(K / fit)). Equal chunks keep every transfer window hidden when
    the average one is (K = 576 in chunks of at most 512: 288 + 288, not 512 + 64,
    which stalls on the short chunk). 0 when not even one beat fits."""
    fit = np.minimum(k, fit)
    chunks = -(-k // np.maximum(fit, 1))
    return np.where(fit >= 1, -(-k // chunks), 0)


def choose_blocking(m, k, n, acc: Accelerator, e: int, o: int) -> Blocking:
    """Vectorized search (module docstring): minimum DRAM bytes, then smallest first
    block. Raises BadInput when even one beat does not fit the buffers."""
    R, C = acc.rows, acc.cols
    cap_a, cap_b = _capacity(acc.a_bytes, acc.slots), _capacity(acc.b_bytes, acc.slots)
    cap_r = _capacity(acc.results_bytes, acc.slots)
    if R * e > cap_a or C * e > cap_b:
        raise BadInput(f"buffers: A ({acc.a_bytes} bytes) or B ({acc.b_bytes} bytes) cannot "
                       f"hold one beat ({R} / {C} elements of {e} bytes"
                       f"{', x2 double-buffered' if acc.double_buffered else ''})")
    m, k, n = (np.asarray(x, dtype=np.int64)[:, None] for x in (m, k, n))
    mtiles, ntiles = -(-m // R), -(-n // C)
    levels = int(max(np.max(mtiles), np.max(ntiles)) - 1).bit_length() + 1
    powers = (1 << np.arange(levels, dtype=np.int64))[None, :]
    row_bytes = R * k * e                                # one A panel (full rows)
    col_bytes = C * k * e
    # the largest block of full tiles the operand and the results buffer allow with one
    # tile across: with the whole dimension, the optimum of each order (docs/memory.md)
    fit_m = np.clip(np.minimum(cap_a // row_bytes,
                               cap_r // (R * np.minimum(C, n) * o)), 1, mtiles)
    fit_n = np.clip(np.minimum(cap_b // col_bytes,
                               cap_r // (C * np.minimum(R, m) * o)), 1, ntiles)
    mts = np.concatenate([np.minimum(powers, mtiles), fit_m, mtiles], axis=1)
    nts = np.concatenate([np.minimum(powers, ntiles), fit_n, ntiles], axis=1)
    mt3, nt3 = mts[:, :, None], nts[:, None, :]          # (G, cm, cn)
    m3, k3, n3 = m[:, :, None], k[:, :, None], n[:, :, None]
    rows_b, cols_b = np.minimum(mt3 * R, m3), np.minimum(nt3 * C, n3)
    fits = ((rows_b * k3 * e <= cap_a) & (k3 * cols_b * e <= cap_b)
            & (rows_b * cols_b * o <= cap_r))
    nbm = -(-mtiles[:, :, None] // mt3)
    nbn = -(-ntiles[:, :, None] // nt3)
    a_once, b_once = m3 * k3 * e, k3 * n3 * e
    first = rows_b * k3 * e + k3 * cols_b * e
    shape = fits.shape
    # resident candidates: (G, cm, cn) for mn and nm, flattened
    a_mn, b_mn = np.broadcast_to(a_once, shape), np.where(nbn == 1, b_once, b_once * nbm)
    a_nm, b_nm = np.where(nbm == 1, a_once, a_once * nbn), np.broadcast_to(b_once, shape)
    g = m.shape[0]
    # chunked candidates
    rows1, cols1 = np.minimum(R, m), np.minimum(C, n)
    tile_fits = rows1 * cols1 * o <= cap_r
    kb_b = _balanced_chunk(k, cap_b // (cols1 * e))
    kb_a = _balanced_chunk(k, cap_a // (rows1 * e))
    kb_s = _balanced_chunk(k, np.minimum(cap_a // (rows1 * e), cap_b // (cols1 * e)))
    a_pan = (rows1 * k * e <= cap_a) & (kb_b >= 1) & tile_fits
    b_pan = (k * cols1 * e <= cap_b) & (kb_a >= 1) & tile_fits
    strm = (kb_s >= 1) & tile_fits
    a_str, b_str = m * k * e * ntiles, k * n * e * mtiles

    def flat(x):
        return np.broadcast_to(x, shape).reshape(g, -1)

    fit_all = np.concatenate([flat(fits), flat(fits), a_pan, b_pan, strm], axis=1)
    a_all = np.concatenate([flat(a_mn), flat(a_nm), m * k * e, a_str, a_str], axis=1)
    b_all = np.concatenate([flat(b_mn), flat(b_nm), b_str, k * n * e, b_str], axis=1)
    first_all = np.concatenate([flat(first), flat(first), rows1 * k * e + kb_b * cols1 * e,
                                rows1 * kb_a * e + k * cols1 * e,
                                kb_s * (rows1 + cols1) * e], axis=1)
    traffic = np.where(fit_all, a_all + b_all, INT64_BOUND)
    best = traffic.min(axis=1, keepdims=True)
    # ``stream`` always fits: one beat fits (checked above) and one tile of results
    # (checked by Accelerator)
    assert np.all(best < INT64_BOUND)
    pick = np.argmin(np.where(traffic == best, first_all, INT64_BOUND), axis=1)
    rows_idx = np.arange(g)
    per_mode = shape[1] * shape[2]
    mode = np.where(pick < 2 * per_mode, pick // per_mode, 2 + (pick - 2 * per_mode))
    flat_idx = pick % per_mode
    mt = np.where(mode < 2, flat(np.broadcast_to(mt3, shape))[rows_idx, flat_idx], 1)
    nt = np.where(mode < 2, flat(np.broadcast_to(nt3, shape))[rows_idx, flat_idx], 1)
    kb_all = np.concatenate([np.broadcast_to(k, (g, 2 * per_mode)), kb_b, kb_a, kb_s], axis=1)
    kb = kb_all[rows_idx, pick]
    m1, k1, n1 = m[:, 0], k[:, 0], n[:, 0]
    r1, c1 = rows1[:, 0], cols1[:, 0]
    rows_sel, cols_sel = np.minimum(mt * R, m1), np.minimum(nt * C, n1)
    a_foot = np.select([mode < 2, mode == 2], [rows_sel * k1 * e, r1 * k1 * e], r1 * kb * e)
    b_foot = np.select([mode < 2, mode == 3], [k1 * cols_sel * e, k1 * c1 * e], kb * c1 * e)
    r_foot = np.where(mode < 2, rows_sel * cols_sel * o, r1 * c1 * o)
    return Blocking(mode, mt, nt, kb, a_all[rows_idx, pick], b_all[rows_idx, pick],
                    a_foot, b_foot, r_foot)


# --------------------------------------------------------------------- per format

@dataclass
class FormatResult:
    """Per GEMM (Python ints unless said) for one operand format."""

    format: str
    gemms: list
    blocking: Blocking
    compute: list
    stall: list
    cycles: list
    a_read: list
    b_read: list
    metadata_read: list
    dram_write: list
    sram_reads: list     # bytes, all three buffers
    sram_writes: list
    macs: list
    energy_pj: list      # float
    energy_parts: list   # (dram, sram, mac) pJ, floats

    @property
    def dram_read(self) -> list:
        return [a + b + md for a, b, md in zip(self.a_read, self.b_read, self.metadata_read)]

    def intensity(self, i) -> float:
        """MACs per DRAM byte."""
        return self.macs[i] / max(1, self.dram_read[i] + self.dram_write[i])

    def bound(self, i, acc: Accelerator) -> str:
        """"memory" when moving the layer's bytes at the bandwidth takes longer than its
        compute cycles (the roofline's definition), else "compute"."""
        timing = Timing(acc.dram_bw, acc.double_buffered)
        moving = timing.transfer(self.dram_read[i] + self.dram_write[i])
        return "memory" if moving > self.compute[i] else "compute"

    def rows(self, acc: Accelerator) -> list[dict]:
        out = []
        for i, g in enumerate(self.gemms):
            out.append({"name": g.layer, "phase": g.phase, "M": g.m, "K": g.k, "N": g.n,
                        "count": g.count, "compute_cycles": self.compute[i],
                        "stall_cycles": self.stall[i], "cycles": self.cycles[i],
                        "dram_read_bytes": self.dram_read[i],
                        "dram_write_bytes": self.dram_write[i],
                        "energy_pj": self.energy_pj[i],
                        "dram_read_a_bytes": self.a_read[i],
                        "dram_read_b_bytes": self.b_read[i],
                        "dram_read_metadata_bytes": self.metadata_read[i],
                        "sram_read_bytes": self.sram_reads[i],
                        "sram_write_bytes": self.sram_writes[i],
                        "macs": self.macs[i],
                        "intensity_macs_per_byte": self.intensity(i),
                        "bound": self.bound(i, acc),
                        "blocking": describe_blocking(self.blocking, i)})
        return out

    def total(self) -> dict:
        return {"compute_cycles": sum(self.compute), "stall_cycles": sum(self.stall),
                "cycles": sum(self.cycles), "dram_read_bytes": sum(self.dram_read),
                "dram_write_bytes": sum(self.dram_write), "energy_pj": sum(self.energy_pj),
                "sram_read_bytes": sum(self.sram_reads),
                "sram_write_bytes": sum(self.sram_writes), "macs": sum(self.macs),
                "energy_dram_pj": sum(p[0] for p in self.energy_parts),
                "energy_sram_pj": sum(p[1] for p in self.energy_parts),
                "energy_mac_pj": sum(p[2] for p in self.energy_parts)}


def describe_blocking(blocking: Blocking, i: int) -> str:
    mode = MODES[int(blocking.mode[i])]
    if mode in ("mn", "nm"):
        return f"{mode} {int(blocking.mt[i])}x{int(blocking.nt[i])} tiles"
    return f"{mode} chunks of {int(blocking.kb[i])}"


def gemm_timing(acc: Accelerator, mode: str, M, K, N, count, mt, nt, kb, e, o, meta,
                spacing_extra, drain, table_load, builder=None):
    """(compute, total cycles, summed step loads, stores) of ``count`` instances of one
    GEMM. ``spacing_extra`` = max(K, S) - K, ``drain`` and ``table_load`` from the cycle
    model. total = one past the last beat + drain + the last store; the last beat comes
    from the max-plus map of the whole step sequence (the array's own timing rules, so
    it is what ``gemm_schedule`` gives for the beats released at ``beat_release``)."""
    timing = Timing(acc.dram_bw, acc.double_buffered, K + spacing_extra)
    B = builder or (Algebra(timing) if spacing_extra else PairAlgebra(timing))
    one = build_steps(B, mode, M, K, N, acc.rows, acc.cols, mt, nt, kb, e, o,
                      acc.double_buffered)
    one = B.add_first_load(one, meta) if meta else one
    seg = B.rep(one, count)
    start = max(table_load, timing.transfer(seg.first_ld))
    if isinstance(seg, Run):
        end = start + seg.inner + seg.last_beats
    else:
        first = timing.first(seg.first, start)
        m = seg.matrix
        end = max(m[3] + first[0], m[4] + first[1], m[5] + first[2])
    total = end + drain + timing.transfer(seg.last_st)
    assert seg.sum_beats == seg.sum_tiles * K
    compute = table_load + seg.sum_tiles * (K + spacing_extra) - spacing_extra + drain
    return compute, total, seg.sum_ld, seg.sum_st


def explicit_schedule(acc: Accelerator, mode: str, M, K, N, count, mt, nt, kb, e, o, meta,
                      spacing_extra, drain, table_load) -> list[dict]:
    """The same schedule, step by step on plain numbers (for small GEMMs: tests, and the
    bandwidth-limited RTL stream). Per step: ``beats`` (operand beats of the step, in the
    blocking's tile order), ``load_done`` (cycle its bytes are all on chip: its beats
    may be offered from then on), ``start`` (its first beat accepted) and ``end`` (one
    past its last beat; the last step's ``end`` includes the drain: its last result
    row), and ``done`` (last result byte in DRAM) on the last step."""
    timing = Timing(acc.dram_bw, acc.double_buffered, K + spacing_extra)
    B = Expand()
    one = build_steps(B, mode, M, K, N, acc.rows, acc.cols, mt, nt, kb, e, o,
                      acc.double_buffered)
    one = B.add_first_load(one, meta) if meta else one
    steps = B.rep(one, count)
    out = []
    state = None
    for index, (beats, head, tiles, ld, st) in enumerate(steps):
        shape = Shape(beats, head, tiles)
        if state is None:
            load_done = max(table_load, timing.transfer(ld))
            state = timing.first(shape, load_done)
        else:
            s, e_prev, _ = state
            window = steps[index - 1][4] + ld
            # double-buffered the move runs from the previous step's first beat
            load_done = (s if acc.double_buffered else e_prev) + timing.transfer(window)
            state = timing.after(state, shape, window)
            assert state[0] == max(e_prev, load_done)
        out.append({"beats": beats, "load_done": load_done, "start": state[0],
                    "end": state[1], "load_bytes": ld, "store_bytes": st})
    out[-1]["end"] += drain
    out[-1]["done"] = out[-1]["end"] + timing.transfer(steps[-1][4])
    return out


def tile_order(mode: str, M, N, R, C, mt, nt) -> list[tuple[int, int]]:
    """(row tile, column tile) of every tile in the order the schedule's steps walk them:
    block by block (``mn``, ``a-panel``, ``stream``: m outer; ``nm``, ``b-panel``: n
    outer), row-major inside a block (chunked modes: one-tile blocks)."""
    mtiles, ntiles = _ceil(M, R), _ceil(N, C)
    if mode not in ("mn", "nm"):
        mt = nt = 1
    m_blocks = [range(i, min(i + mt, mtiles)) for i in range(0, mtiles, mt)]
    n_blocks = [range(j, min(j + nt, ntiles)) for j in range(0, ntiles, nt)]
    pairs = ([(a, b) for a in m_blocks for b in n_blocks] if mode in ("mn", "a-panel", "stream")
             else [(a, b) for b in n_blocks for a in m_blocks])
    return [(i, j) for rows, cols in pairs for i in rows for j in cols]


def beat_release(acc: Accelerator, mode: str, M, K, N, count, mt, nt, kb, e, o, meta,
                 spacing_extra, drain, table_load):
    """The RTL hook: ``(tiles, release)`` for one GEMM (small; everything expanded).
    ``tiles`` is :func:`tile_order` repeated ``count`` times; ``release[t * K + k]`` is
    the earliest cycle beat k of the t-th tile in that order may be offered (its step's
    bytes are on chip). A bandwidth-limited driver feeds the beats of
    ``pysim.perf.tiler.operand_beats`` permuted to ``tiles`` no earlier than that."""
    steps = explicit_schedule(acc, mode, M, K, N, count, mt, nt, kb, e, o, meta,
                              spacing_extra, drain, table_load)
    release = np.repeat(np.array([s["load_done"] for s in steps], dtype=np.int64),
                        [s["beats"] for s in steps])
    return tile_order(mode, M, N, acc.rows, acc.cols, mt, nt) * count, release


class StreamPlan(NamedTuple):
    """One GEMM as the memory model streams it (:func:`stream_plan`)."""

    blocking: str        # describe_blocking: "mn 1x2 tiles", "stream chunks of 8", ...
    tiles: list          # (row tile, column tile) in the order the beats are fed
    release: np.ndarray  # int64 per beat: the earliest cycle it may be offered
    steps: list          # explicit_schedule
    cycles: int          # the model's total (what model_format reports)
    table_load: int      # cycles before the first beat (release is counted from 0 there)
    last_store: int      # transfer cycles of the last results after the last row


def stream_plan(gemm: Gemm, acc: Accelerator, fmt_name: str) -> StreamPlan:
    """The blocking :func:`model_format` chooses for ``gemm``, expanded: what a
    bandwidth-limited driver of the array RTL needs (beats in ``tiles`` order, offered no
    earlier than ``release``) and what it must then measure: the last result row leaves
    in cycle ``cycles - last_store - 1``, cycle 0 being the first table-load cycle."""
    result = model_format([gemm], acc, fmt_name)
    acc = acc.with_format(fmt_name)
    fmt = operand_format(fmt_name)
    cyc = breakdown(gemm.m, gemm.k, gemm.n, acc.rows, acc.cols, gemm.count)
    extra = int(breakdown(2 * acc.rows, gemm.k, acc.cols, acc.rows, acc.cols).tile_overhead)
    b = result.blocking
    args = (acc, MODES[int(b.mode[0])], gemm.m, gemm.k, gemm.n, gemm.count, int(b.mt[0]),
            int(b.nt[0]), int(b.kb[0]), fmt.element_bytes,
            output_format(acc.output).element_bytes, 2 * fmt.metadata_bytes, extra,
            int(cyc.fill_drain), int(cyc.table_load))
    tiles, release = beat_release(*args)
    steps = explicit_schedule(*args)
    assert steps[-1]["done"] == result.cycles[0]
    return StreamPlan(describe_blocking(b, 0), tiles, release, steps, result.cycles[0],
                      int(cyc.table_load),
                      steps[-1]["done"] - steps[-1]["end"])


def model_format(gemms: list[Gemm], acc: Accelerator, fmt_name: str,
                 shapes=None, names=None) -> FormatResult:
    """Run the memory model for every GEMM with operands in ``fmt_name``."""
    acc = acc.with_format(fmt_name)
    fmt = operand_format(fmt_name)
    out_fmt = output_format(acc.output)
    e, o = fmt.element_bytes, out_fmt.element_bytes
    shapes = shapes or gemm_arrays(gemms)
    names = names or [f"layer {g.layer!r} ({g.phase})" for g in gemms]
    check_bounds(shapes.m, shapes.k, shapes.n, shapes.count, acc.rows, acc.cols, e, names)
    blocking = choose_blocking(shapes.m, shapes.k, shapes.n, acc, e, o)
    cyc = breakdown(shapes.m, shapes.k, shapes.n, acc.rows, acc.cols, shapes.count)
    # the cycle model's own per-tile spacing cost: tile overhead of a two-tile GEMM
    extra = breakdown(np.full_like(shapes.k, 2 * acc.rows), shapes.k,
                      np.full_like(shapes.k, acc.cols), acc.rows, acc.cols).tile_overhead
    meta = 2 * fmt.metadata_bytes   # A and B tensors, per GEMM instance
    mtiles, ntiles = -(-shapes.m // acc.rows), -(-shapes.n // acc.cols)
    energy = acc.energy
    mac_pj = energy.mac(fmt, acc.mant_bits)
    cols = [list(map(int, x)) for x in (shapes.m, shapes.k, shapes.n, shapes.count,
                                        blocking.mode, blocking.mt, blocking.nt, blocking.kb,
                                        blocking.a_read, blocking.b_read, extra,
                                        cyc.fill_drain, cyc.table_load, cyc.total, mtiles,
                                        ntiles, blocking.a_footprint, blocking.b_footprint,
                                        blocking.r_footprint)]
    result = FormatResult(fmt_name, list(gemms), blocking, [], [], [], [], [], [], [], [], [],
                          [], [], [])
    sram_cost = {}

    def sram(size, footprint):
        size = footprint * acc.slots if size is None else size
        if size not in sram_cost:
            sram_cost[size] = energy.sram(size)
        return sram_cost[size]

    timings = {}   # a training step repeats shapes (ResNet-50: 161 GEMMs, 49 distinct)
    for (M, K, N, count, mode, mt, nt, kb, a_rd, b_rd, spacing_extra, drain, table_load,
         compute_ref, mtl, ntl, a_fp, b_fp, r_fp) in zip(*cols):
        key = (M, K, N, count, mode, mt, nt, kb, spacing_extra, drain, table_load)
        if key not in timings:
            timings[key] = gemm_timing(acc, MODES[mode], M, K, N, count, mt, nt, kb, e, o,
                                       meta, spacing_extra, drain, table_load)
        compute, total, loads, stores = timings[key]
        assert compute == compute_ref, "memory schedule disagrees with the cycle model"
        a_rd, b_rd, md = a_rd * count, b_rd * count, meta * count
        assert loads == a_rd + b_rd + md and stores == M * N * o * count
        a_sram_rd, b_sram_rd = M * K * ntl * e * count, K * N * mtl * e * count
        r_bytes = M * N * o * count
        macs = M * K * N * count
        dram_pj = energy.dram_pj_per_byte * (loads + stores)
        sram_pj = (sram(acc.a_bytes, a_fp) * (a_sram_rd + a_rd)
                   + sram(acc.b_bytes, b_fp) * (b_sram_rd + b_rd)
                   + sram(acc.results_bytes, r_fp) * 2 * r_bytes)
        mac_energy = mac_pj * macs
        result.compute.append(compute)
        result.cycles.append(total)
        result.stall.append(total - compute)
        result.a_read.append(a_rd)
        result.b_read.append(b_rd)
        result.metadata_read.append(md)
        result.dram_write.append(stores)
        result.sram_reads.append(a_sram_rd + b_sram_rd + r_bytes)
        result.sram_writes.append(a_rd + b_rd + r_bytes)
        result.macs.append(macs)
        result.energy_parts.append((dram_pj, sram_pj, mac_energy))
        result.energy_pj.append(dram_pj + sram_pj + mac_energy)
    return result


# ------------------------------------------------------------------------ report

@dataclass
class MemoryReport:
    source: str
    accelerator: Accelerator
    formats: dict   # name -> FormatResult

    def to_dict(self) -> dict:
        return {"format": "s2fp8-memory", "version": 1, "source": self.source,
                "accelerator": self.accelerator.describe(),
                "formats": {name: {"gemms": r.rows(self.accelerator), "total": r.total()}
                            for name, r in self.formats.items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"


def memory_report(gemms: list[Gemm], acc: Accelerator, formats, source: str = "") -> MemoryReport:
    gemms = list(gemms)
    shapes = gemm_arrays(gemms)
    names = [f"layer {g.layer!r} ({g.phase})" for g in gemms]
    return MemoryReport(source, acc, {name: model_format(gemms, acc, name, shapes, names)
                                      for name in formats})


def parse_formats(text) -> list[str]:
    """``--formats s2fp8,bf16,fp32`` -> validated, de-duplicated list."""
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    if not names:
        raise BadInput(f"--formats: empty list, expected some of {', '.join(OPERAND_FORMATS)}")
    for name in names:
        operand_format(name, "--formats")
    return list(dict.fromkeys(names))


def _mb(value: int) -> str:
    return f"{value / 1e6:,.2f}"


def format_memory_table(report: MemoryReport, quiet: bool = False) -> str:
    """Per format: one row per GEMM (unless ``quiet``) and a total; then the formats
    side by side."""
    acc = report.accelerator
    lines = [f"\nmemory model: {acc.summary()}"]
    gemms = next(iter(report.formats.values())).gemms
    width = min(48, max([len("layer"), len("TOTAL")] + [len(g.layer) for g in gemms]))
    header = (f"{'layer':<{width}} {'phase':<7} {'compute':>14} {'stall':>14} {'cycles':>14} "
              f"{'read MB':>11} {'write MB':>10} {'MAC/B':>8} {'bound':<7} {'energy uJ':>11}")
    if not quiet:
        for name, r in report.formats.items():
            fmt = OPERAND_FORMATS[name]
            lines += [f"\n== {name} operands ({fmt.element_bytes} B/element"
                      f"{f' + {fmt.metadata_bytes} B/tensor' if fmt.metadata_bytes else ''}) ==",
                      header, "-" * len(header)]
            for i, row in enumerate(r.rows(acc)):
                layer = row["name"] if len(row["name"]) <= width else row["name"][:width - 1] + "~"
                lines.append(
                    f"{layer:<{width}} {row['phase']:<7} {row['compute_cycles']:>14,} "
                    f"{row['stall_cycles']:>14,} {row['cycles']:>14,} "
                    f"{_mb(row['dram_read_bytes']):>11} {_mb(row['dram_write_bytes']):>10} "
                    f"{row['intensity_macs_per_byte']:>8.1f} {row['bound']:<7} "
                    f"{row['energy_pj'] / 1e6:>11,.1f}")
            t = r.total()
            lines += ["-" * len(header),
                      f"{'TOTAL':<{width}} {'':<7} {t['compute_cycles']:>14,} "
                      f"{t['stall_cycles']:>14,} {t['cycles']:>14,} "
                      f"{_mb(t['dram_read_bytes']):>11} {_mb(t['dram_write_bytes']):>10} "
                      f"{t['macs'] / max(1, t['dram_read_bytes'] + t['dram_write_bytes']):>8.1f} "
                      f"{'':<7} {t['energy_pj'] / 1e6:>11,.1f}"]
    lines.append("\nformats side by side (whole workload):")
    head = (f"{'format':<7} {'cycles':>15} {'stall':>15} {'stall %':>8} {'DRAM read MB':>13} "
            f"{'write MB':>10} {'energy mJ':>10} {'(DRAM/SRAM/MAC %)':>18} {'time ms':>9} "
            f"{'mem-bound':>9}")
    lines += [head, "-" * len(head)]
    for name, r in report.formats.items():
        t = r.total()
        energy = t["energy_pj"]
        parts = "/".join(f"{100 * t[k] / energy:.0f}" if energy else "-" for k in
                         ("energy_dram_pj", "energy_sram_pj", "energy_mac_pj"))
        bound = sum(r.bound(i, acc) == "memory" for i in range(len(r.gemms)))
        lines.append(
            f"{name:<7} {t['cycles']:>15,} {t['stall_cycles']:>15,} "
            f"{100 * t['stall_cycles'] / max(1, t['cycles']):>7.1f}% "
            f"{_mb(t['dram_read_bytes']):>13} {_mb(t['dram_write_bytes']):>10} "
            f"{energy / 1e9:>10,.2f} {parts:>18} {t['cycles'] / (acc.clock_mhz * 1e3):>9,.2f} "
            f"{bound:>4}/{len(r.gemms):<4}")
    return "\n".join(lines) + "\n"


def memory_report_for_cli(gemms, source: str, *, rows, cols, mant_bits, config=None,
                          dram_bw=None, buffer_kib=None, formats=None) -> MemoryReport:
    """What ``s2fp8 cycles`` runs when a memory flag is given: the accelerator from
    ``config`` (TOML path) and the flags, the model for each of ``formats`` (text list;
    default: the config's operand format). The command's --rows, --cols and -W always
    apply, so an [array] value of the TOML that disagrees is refused, not ignored."""
    names = parse_formats(formats) if formats is not None else None
    if config is not None:
        values = parse_config(read_toml(config), str(config))
        for key, flag, value in (("rows", "--rows", rows), ("cols", "--cols", cols),
                                 ("mant_bits", "-W", mant_bits)):
            if ("array", key) in values and values[("array", key)][1] != value:
                where, given = values[("array", key)]
                raise BadInput(f"{where} = {given} disagrees with {flag} {value} "
                               f"(the command's flag{' default' if key == 'mant_bits' else ''}"
                               f"; drop the key or pass {flag} {given})")
    acc = load_accelerator(config, rows=rows, cols=cols, mant_bits=mant_bits, dram_bw=dram_bw,
                           buffer_kib=buffer_kib, operand=names[0] if names else None)
    return memory_report(gemms, acc, names or [acc.operand], source)


MEMORY_FLAGS = ("config", "dram_bw", "buffer_kib", "formats", "roofline")


def memory_cli_outputs(args, gemms, source: str, rows: int, cols: int, mant_bits: int):
    """The memory part of ``s2fp8 cycles``: ``(text to print after the cycle table,
    {path: data} files)``. Both empty when no memory flag (``MEMORY_FLAGS``) is given,
    so the command's output is then unchanged. With one, the ``--json`` file holds the
    per-format memory report instead of the cycle report (the caller's dict update
    replaces it) and ``--roofline`` gets the roofline PNG."""
    if all(getattr(args, flag, None) is None for flag in MEMORY_FLAGS):
        return "", {}
    roofline = getattr(args, "roofline", None)
    if roofline is not None and (not roofline or not roofline.lower().endswith(".png")):
        raise BadInput(f"--roofline: the file name must end in .png, got {roofline!r}")
    report = memory_report_for_cli(
        gemms, source, rows=rows, cols=cols, mant_bits=mant_bits,
        config=getattr(args, "config", None), dram_bw=getattr(args, "dram_bw", None),
        buffer_kib=getattr(args, "buffer_kib", None), formats=getattr(args, "formats", None))
    files = {}
    if getattr(args, "json", None):
        files[args.json] = report.to_json()
    if roofline:
        from pysim.perf.roofline import roofline_png
        files[roofline] = roofline_png(report)
    return format_memory_table(report, quiet=getattr(args, "quiet", False)), files
