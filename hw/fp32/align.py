"""Align stage of the adder: swap by magnitude, shift the smaller operand right."""

# No `from __future__ import annotations`: wiring.Component reads the evaluated
# signature annotations of the class.
from amaranth.hdl import Mux, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import ALIGN_BITS, ALIGN_EXTRA_BITS, Aligned, Unpacked

__all__ = ["Align"]


class Align(wiring.Component):
    """Order the operands by magnitude and align the smaller one to the larger.

    Both significands get ``ALIGN_EXTRA_BITS`` (guard, round, sticky) appended; the
    smaller one is shifted right by the exponent difference (clamped: beyond
    ``ALIGN_BITS`` everything is sticky) and every bit shifted out is ORed into its LSB.
    Guard, round and a jammed sticky are enough for a correctly rounded sum or difference:
    a large cancellation only happens for shifts of 0 or 1, where nothing is lost.

    Operands may be normalized or not (subnormals at emin with a leading zero): the
    magnitude order is (exp, sig) lexicographic in both cases.

    Ports
    -----
    a, b    : In(Unpacked)
    aligned : Out(Aligned)
    """

    a: In(Unpacked)
    b: In(Unpacked)
    aligned: Out(Aligned)

    def elaborate(self, platform):
        m = Module()
        a, b, al = self.a, self.b, self.aligned

        # ---------------------------------------------------------------- special cases
        inf_minus_inf = a.cls.inf & b.cls.inf & (a.sign != b.sign)
        nan = a.cls.nan | b.cls.nan | inf_minus_inf
        m.d.comb += [
            al.special.nan.eq(nan),
            al.special.inf.eq((a.cls.inf | b.cls.inf) & ~nan),
        ]

        # ---------------------------------------------------------------- swap
        # An Inf operand keeps its raw exponent (emax + 1), so it is always "big" and its
        # sign becomes the result sign.
        a_big = (a.exp > b.exp) | ((a.exp == b.exp) & (a.sig >= b.sig))
        big = Signal(Unpacked)
        small = Signal(Unpacked)
        m.d.comb += [
            big.eq(Mux(a_big, a, b)),
            small.eq(Mux(a_big, b, a)),
        ]

        # ---------------------------------------------------------------- shift + sticky
        distance = Signal(range(ALIGN_BITS + 1))
        exp_diff = big.exp - small.exp          # >= 0
        m.d.comb += distance.eq(Mux(exp_diff > ALIGN_BITS, ALIGN_BITS, exp_diff))
        small_ext = Signal(ALIGN_BITS)
        shifted = Signal(ALIGN_BITS)
        m.d.comb += [
            small_ext.eq(small.sig << ALIGN_EXTRA_BITS),
            shifted.eq(small_ext >> distance),
        ]
        lost = (shifted << distance)[:ALIGN_BITS] != small_ext

        m.d.comb += [
            al.big.eq(big.sig << ALIGN_EXTRA_BITS),
            al.small.eq(shifted | lost),
            al.exp.eq(big.exp),
            al.sign.eq(big.sign),
            al.subtract.eq(a.sign ^ b.sign),
            # RNE: an exact zero sum is -0 only if both addends are negative (-0 + -0).
            al.zero_sign.eq(a.sign & b.sign),
        ]
        return m
