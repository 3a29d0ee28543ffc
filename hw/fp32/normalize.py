"""Normalize stage, shared by the multiplier and the adder: wide result -> PreRound."""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from pysim.numerics.formats import FP32

from ._params import check_int
from .layouts import EXP_WIDTH, SIG_BITS, PreRound, wide_layout
from ..pipeline import stage
from .lzc import LeadingZeroCount

__all__ = ["Normalize"]


class Normalize(wiring.Component):
    """Subnormal-aware normalization of a ``width``-bit exact result to P bits + round + sticky.

    The significand is shifted left by its leading-zero count, but never below emin: the
    left shift is limited to ``exp - emin``, so a tiny result stays a subnormal (leading
    zero at ``exp == emin``). A result whose MSB exponent is already below emin (product of
    small numbers) is shifted *right* up to emin instead, the shifted-out bits going to
    the sticky bit. Then the top P bits are the significand, the next bit is the round
    bit and the OR of the rest (and of the incoming ``sticky``) the sticky bit.

    Parameters (keyword-only)
    -------------------------
    width : int >= P + 2
        Width of the incoming significand.
    stages : int, 0 or 1 (default 0)
        1 puts a register (``sync``) between finding the shift (leading-zero count,
        limit at emin) and shifting: ``latency`` 1 instead of 0 (the deepest multiplier
        and adder pipelines, docs/silicon.md).

    Ports
    -----
    wide      : In(wide_layout(width))
    pre_round : Out(PreRound)
    """

    def __init__(self, *, width: int, stages: int = 0):
        self._width = check_int("Normalize", "width", width, SIG_BITS + 2)
        self._stages = check_int("Normalize", "stages", stages, 0, 1)
        super().__init__({
            "wide": In(wide_layout(width)),
            "pre_round": Out(PreRound),
        })

    @property
    def width(self) -> int:
        return self._width

    @property
    def latency(self) -> int:
        return self._stages

    def elaborate(self, platform):
        m = Module()
        width = self._width
        wide, out = self.wide, self.pre_round

        # ---------------------------------------------------------------- leading zeros
        m.submodules.lzc = lzc = LeadingZeroCount(width=width)
        m.d.comb += lzc.value.eq(wide.sig)

        # ---------------------------------------------------------------- shift amount
        # room: how far the MSB exponent may drop before reaching emin (< 0: below emin).
        room = Signal(signed(EXP_WIDTH + 1))
        m.d.comb += room.eq(wide.exp - FP32.emin)
        below = Signal()
        m.d.comb += below.eq(room < 0)
        left = Signal(range(width + 1))
        m.d.comb += left.eq(Mux(room < lzc.count, room, lzc.count))
        right = Signal(range(width + 2))           # width + 1: everything goes to sticky
        m.d.comb += right.eq(Mux(-room > width, width + 1, -room))

        # ---------------------------------------------------------------- shift
        # ---------------------------------------------------------------- register "amount"
        if self._stages:
            wide = stage(m, wide, True, "wide")
            left, right, below = (stage(m, value, True, name) for value, name in
                                  ((left, "left"), (right, "right"), (below, "below")))

        # ---------------------------------------------------------------- shift
        shifted = Signal(width)
        with m.If(below):
            m.d.comb += [
                shifted.eq(wide.sig >> right),
                out.exp.eq(FP32.emin),
            ]
        with m.Else():
            m.d.comb += [
                shifted.eq((wide.sig << left)[:width]),
                out.exp.eq(wide.exp - left),
            ]
        # ---------------------------------------------------------------- round/sticky
        # Sticky: every bit of ``wide.sig`` that lands below the round bit, found with a
        # mask on the unshifted significand (in parallel with the shifter, not after it):
        # the ``low`` bits below the round bit move up by ``left`` (shifted left) or
        # their own ``right`` bits plus the ``right`` bits shifted out (shifted right).
        low = width - SIG_BITS - 1
        below_round = Signal(range(width + 1))
        m.d.comb += below_round.eq(Mux(below, Mux(right > SIG_BITS + 1, width, right + low),
                                       Mux(left > low, 0, low - left)))
        sticky_bits = (wide.sig & ((1 << below_round) - 1)[:width]).any()
        m.d.comb += [
            out.sig.eq(shifted[width - SIG_BITS:]),
            out.round.eq(shifted[low]),
            out.sticky.eq(sticky_bits | wide.sticky),
            out.sign.eq(wide.sign),
            out.special.eq(wide.special),
        ]
        return m
