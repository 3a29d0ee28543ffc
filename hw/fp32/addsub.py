"""Significand add/subtract stage of the adder: Aligned -> exact (jammed) sum."""

# No `from __future__ import annotations`: wiring.Component reads the evaluated
# signature annotations of the class.
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import SUM_BITS, Aligned, wide_layout

__all__ = ["SigAddSub"]


class SigAddSub(wiring.Component):
    """Add or subtract the aligned significands (big - small is never negative).

    The sum has one carry bit above the aligned operands, so its MSB position has weight
    2**(exp + 1). An exact zero takes ``zero_sign`` (+0 under RNE unless both addends
    are negative); otherwise the sign is that of the larger operand.

    Ports
    -----
    aligned : In(Aligned)
    sum     : Out(wide_layout(SUM_BITS))
    """

    aligned: In(Aligned)
    sum: Out(wide_layout(SUM_BITS))

    def elaborate(self, platform):
        m = Module()
        al, s = self.aligned, self.sum

        # ---------------------------------------------------------------- add / subtract
        total = Signal(SUM_BITS)
        m.d.comb += total.eq(Mux(al.subtract, al.big - al.small, al.big + al.small))

        # ---------------------------------------------------------------- result sign
        m.d.comb += [
            s.sig.eq(total),
            s.exp.eq(al.exp + 1),
            s.sign.eq(Mux(total == 0, al.zero_sign, al.sign)),
            s.sticky.eq(0),            # already jammed into the LSB by Align
            s.special.eq(al.special),
        ]
        return m
