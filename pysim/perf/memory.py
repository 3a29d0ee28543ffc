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
   sequence of steps (a block, or one K chunk of a tile), each with compute cycles c
   (its tiles' share of the cycle model), bytes loaded and result bytes stored. The
   DRAM moves, between the compute of step b and step b+1, the results of b and the
   loads of b+1 at ``bandwidth`` bytes/cycle (ceil). Double-buffered, that transfer
   overlaps the compute of b: step b+1 starts max(c_b, transfer) after step b; single-
   buffered they add up. The first load overlaps the decode-table load, the last store
   follows the drain. Repeated steps are summed in closed form (:class:`Segment`), so
   the cost does not depend on the number of blocks.

With unlimited bandwidth the transfers take 0 cycles and the total is exactly
``breakdown(...).total`` (table loads + ``gemm_cycles``), whatever the buffers.
:func:`explicit_schedule` expands the same steps one by one (the hook for a bandwidth-
limited RTL stream: the cycle each step's operand beats become available).
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

class Segment(NamedTuple):
    """A run of steps, summarised: enough to concatenate and repeat runs in O(1).

    ``inner`` is the sum over adjacent pairs (b, b+1) inside the run of the pair cost
    ``pair(c_b, st_b + ld_{b+1})``: the cycles from the start of step b to the start of
    step b+1. ``first_pair`` is the bytes between the first two steps (None: one step)."""

    n: int
    first_ld: int
    first_c: int
    first_pair: int | None
    last_c: int
    last_st: int
    inner: int
    sum_c: int
    sum_ld: int
    sum_st: int
    sum_beats: int


class Timing:
    """Pair costs for one accelerator: transfer cycles ``ceil(bytes / bandwidth)`` (0 when
    unlimited) overlapped (double-buffered) or added (single-buffered) to compute."""

    def __init__(self, bandwidth: Fraction | None, double_buffered: bool):
        self.bandwidth = bandwidth
        self.double_buffered = double_buffered
        # bytes/cycle = num/den: cycles = ceil(bytes * den / num), exact
        self._num = None if bandwidth is None else bandwidth.numerator
        self._den = None if bandwidth is None else bandwidth.denominator

    def transfer(self, nbytes: int) -> int:
        if self._num is None or nbytes == 0:
            return 0
        return -(-nbytes * self._den // self._num)

    def pair(self, compute: int, nbytes: int) -> int:
        if self.double_buffered:
            return max(compute, self.transfer(nbytes))
        return compute + self.transfer(nbytes)


class Algebra:
    """Builds :class:`Segment` summaries (the fast path)."""

    def __init__(self, timing: Timing):
        self.timing = timing

    def step(self, c, ld, st, beats):
        return Segment(1, ld, c, None, c, st, 0, c, ld, st, beats)

    def seq(self, *parts):
        parts = [p for p in parts if p is not None]
        out = parts[0]
        for b in parts[1:]:
            join = out.last_st + b.first_ld
            out = Segment(out.n + b.n, out.first_ld, out.first_c,
                          out.first_pair if out.n > 1 else join, b.last_c, b.last_st,
                          out.inner + b.inner + self.timing.pair(out.last_c, join),
                          out.sum_c + b.sum_c, out.sum_ld + b.sum_ld, out.sum_st + b.sum_st,
                          out.sum_beats + b.sum_beats)
        return out

    def rep(self, part, times):
        if part is None or times <= 0:
            return None
        if times == 1:
            return part
        join = part.last_st + part.first_ld
        return Segment(part.n * times, part.first_ld, part.first_c,
                       part.first_pair if part.n > 1 else join, part.last_c, part.last_st,
                       times * part.inner + (times - 1) * self.timing.pair(part.last_c, join),
                       times * part.sum_c, times * part.sum_ld, times * part.sum_st,
                       times * part.sum_beats)

    def add_first_load(self, part, extra):
        return Segment(part.n, part.first_ld + extra, part.first_c, part.first_pair,
                       part.last_c, part.last_st, part.inner, part.sum_c,
                       part.sum_ld + extra, part.sum_st, part.sum_beats)


class Expand:
    """Builds the explicit list of steps ``[c, ld, st, beats]`` (small GEMMs, tests and
    the RTL hook)."""

    def step(self, c, ld, st, beats):
        return [[c, ld, st, beats]]

    def seq(self, *parts):
        return [list(s) for p in parts if p is not None for s in p]

    def rep(self, part, times):
        if part is None or times <= 0:
            return None
        return [list(s) for _ in range(times) for s in part]

    def add_first_load(self, part, extra):
        part = [list(s) for s in part]
        part[0][1] += extra
        return part


# ------------------------------------------------------------------------ steps

def _ceil(a, b):
    return -(-a // b)


def _resident_steps(B, M, N, K, R, C, mt, nt, e, o, ks, prefetch):
    """Blocks of mt x nt tiles, m-blocks outer (the ``nm`` order is this with A and B
    swapped). ``ks`` = cycles per tile (max(K, S)). With ``prefetch`` (double
    buffering) the next m-block's A block is loaded in even pieces during the steps of
    the current one (its slot is free); otherwise with the m-block's first step."""
    mtiles, ntiles = _ceil(M, R), _ceil(N, C)
    nbm, nbn = _ceil(mtiles, mt), _ceil(ntiles, nt)
    last_mt, last_nt = mtiles - (nbm - 1) * mt, ntiles - (nbn - 1) * nt
    last_rows, last_cols = M - (nbm - 1) * mt * R, N - (nbn - 1) * nt * C

    def mblock(rows, tiles_m, first, next_rows):
        own = rows * K * e if (first or not prefetch) else 0
        ahead = next_rows * K * e if prefetch else 0
        per, rest = divmod(ahead, nbn)   # per step, and the remainder on the first
        if nbn == 1:  # the whole of B is one block: loaded with the first m-block only
            return B.step(tiles_m * ntiles * ks, own + (K * N * e if first else 0) + ahead,
                          rows * N * o, tiles_m * ntiles * K)
        cols = nt * C
        return B.seq(
            B.step(tiles_m * nt * ks, own + K * cols * e + per + rest, rows * cols * o,
                   tiles_m * nt * K),
            B.rep(B.step(tiles_m * nt * ks, K * cols * e + per, rows * cols * o,
                         tiles_m * nt * K), nbn - 2),
            B.step(tiles_m * last_nt * ks, K * last_cols * e + per, rows * last_cols * o,
                   tiles_m * last_nt * K))

    if nbm == 1:
        return mblock(last_rows, last_mt, True, 0)
    if nbm == 2:
        return B.seq(mblock(mt * R, mt, True, last_rows), mblock(last_rows, last_mt, False, 0))
    return B.seq(mblock(mt * R, mt, True, mt * R),
                 B.rep(mblock(mt * R, mt, False, mt * R), nbm - 3),
                 mblock(mt * R, mt, False, last_rows), mblock(last_rows, last_mt, False, 0))


def _chunked_tile(B, rows, cols, K, kb, e, o, ks, a_stream, panel, per, rest):
    """One tile whose K is streamed in chunks of kb beats (B always streamed, A too if
    ``a_stream``); ``panel`` bytes (its resident panel) are loaded with the first chunk,
    ``per`` prefetch bytes with every chunk and ``rest`` more with the first. The tile's
    spacing overhead (ks - K) is charged to its first chunk, so that the first tile of a
    GEMM, which does not pay it, never has a negative step."""
    per_beat = (rows * e if a_stream else 0) + cols * e
    chunks = _ceil(K, kb)
    last = K - (chunks - 1) * kb
    if chunks == 1:
        return B.step(ks, K * per_beat + panel + per + rest, rows * cols * o, K)
    return B.seq(B.step(kb + ks - K, kb * per_beat + panel + per + rest, 0, kb),
                 B.rep(B.step(kb, kb * per_beat + per, 0, kb), chunks - 2),
                 B.step(last, last * per_beat + per, rows * cols * o, last))


def _panel_steps(B, M, N, K, R, C, kb, e, o, ks, a_resident, prefetch):
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
            return _chunked_tile(B, rows, cols, K, kb, e, o, ks, not a_resident,
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


def build_steps(B, mode, M, K, N, R, C, mt, nt, kb, e, o, ks, prefetch=True):
    """The step sequence of one GEMM instance for a blocking, with builder ``B``;
    ``prefetch``: the buffers are double-buffered (the next outer block loads early)."""
    if mode == "mn":
        return _resident_steps(B, M, N, K, R, C, mt, nt, e, o, ks, prefetch)
    if mode == "nm":  # A and B swap roles: loads, stores and tiles are symmetric
        return _resident_steps(B, N, M, K, C, R, nt, mt, e, o, ks, prefetch)
    if mode == "a-panel":
        return _panel_steps(B, M, N, K, R, C, kb, e, o, ks, True, prefetch)
    if mode == "b-panel":
        return _panel_steps(B, N, M, K, C, R, kb, e, o, ks, True, prefetch)
    return _panel_steps(B, M, N, K, R, C, kb, e, o, ks, False, prefetch)


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
    GEMM. ``spacing_extra`` = max(K, S) - K (the first tile of the GEMM does not pay
    it), ``drain`` and ``table_load`` from the cycle model."""
    timing = Timing(acc.dram_bw, acc.double_buffered)
    B = builder or Algebra(timing)
    ks = K + spacing_extra
    one = build_steps(B, mode, M, K, N, acc.rows, acc.cols, mt, nt, kb, e, o, ks,
                      acc.double_buffered)
    one = B.add_first_load(one, meta) if meta else one
    seg = B.rep(one, count)
    first_c = seg.first_c - spacing_extra
    start = max(table_load, timing.transfer(seg.first_ld))
    if seg.n == 1:
        total = start + first_c + drain + timing.transfer(seg.last_st)
    else:
        inner = (seg.inner - timing.pair(seg.first_c, seg.first_pair)
                 + timing.pair(first_c, seg.first_pair))
        total = start + inner + seg.last_c + drain + timing.transfer(seg.last_st)
    compute = table_load + seg.sum_c - spacing_extra + drain
    return compute, total, seg.sum_ld, seg.sum_st


def explicit_schedule(acc: Accelerator, mode: str, M, K, N, count, mt, nt, kb, e, o, meta,
                      spacing_extra, drain, table_load) -> list[dict]:
    """The same schedule, step by step (for small GEMMs: tests, and the hook for a
    bandwidth-limited RTL stream). Per step: ``beats`` (operand beats of the step, in
    the blocking's tile order), ``load_done`` (cycle its bytes are all on chip: its
    beats may be offered from then on), ``start`` and ``end`` of its compute (``end``
    of the last step includes the drain), and ``done`` (last result byte in DRAM) on
    the last step."""
    timing = Timing(acc.dram_bw, acc.double_buffered)
    B = Expand()
    one = build_steps(B, mode, M, K, N, acc.rows, acc.cols, mt, nt, kb, e, o, K + spacing_extra,
                      acc.double_buffered)
    one = B.add_first_load(one, meta) if meta else one
    steps = B.rep(one, count)
    steps[0][0] -= spacing_extra
    steps[-1][0] += drain
    out = []
    load_done = max(table_load, timing.transfer(steps[0][1]))
    start = load_done
    for index, (c, ld, st, beats) in enumerate(steps):
        end = start + c
        out.append({"beats": beats, "load_done": load_done, "start": start, "end": end,
                    "load_bytes": ld, "store_bytes": st})
        if index + 1 < len(steps):
            window = st + steps[index + 1][1]
            if acc.double_buffered:  # next load runs from this step's start
                load_done = start + timing.transfer(window)
                start = max(end, load_done)
            else:
                load_done = end + timing.transfer(window)
                start = load_done
    out[-1]["done"] = out[-1]["end"] + timing.transfer(steps[-1][2])
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
