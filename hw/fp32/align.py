"""Align stage of the adder: swap by magnitude, shift the smaller operand right."""

# No `from __future__ import annotations`: wiring.Component reads the evaluated
# signature annotations of the class.
from amaranth.hdl import Mux, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..pipeline import stage
from ._params import check_int
from .layouts import ALIGN_BITS, ALIGN_EXTRA_BITS, Aligned, Special, Unpacked

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

    Parameters (keyword-only)
    -------------------------
    stages : int, 0 or 1 (default 0)
        1 puts a register (``sync``) between comparing the exponents (distance, which
        operand shifts) and shifting: ``latency`` 1 instead of 0 (the deepest adder
        pipeline, docs/silicon.md).

    Ports
    -----
    a, b    : In(Unpacked)
    aligned : Out(Aligned)
    """

    a: In(Unpacked)
    b: In(Unpacked)
    aligned: Out(Aligned)

    def __init__(self, *, stages: int = 0):
        self._stages = check_int("Align", "stages", stages, 0, 1)
        super().__init__()

    @property
    def latency(self) -> int:
        return self._stages

    def elaborate(self, platform):
        m = Module()
        a, b, al = self.a, self.b, self.aligned

        # ---------------------------------------------------------------- special cases
        special = Signal(Special)
        inf_minus_inf = a.cls.inf & b.cls.inf & (a.sign != b.sign)
        nan = a.cls.nan | b.cls.nan | inf_minus_inf
        m.d.comb += [
            special.nan.eq(nan),
            special.inf.eq((a.cls.inf | b.cls.inf) & ~nan),
        ]

        # ---------------------------------------------------------------- distance
        # The operand with the smaller exponent is shifted while the significands are
        # still being compared: the distance needs only the exponents (both differences
        # computed at once), and with equal exponents nothing is shifted, so the
        # significand comparison only decides the final swap. (Comparing first and
        # shifting the smaller operand after the swap was the adder's longest path on
        # ECP5.) An Inf operand keeps its raw exponent (emax + 1), so it is always "big"
        # and its sign becomes the result sign.
        a_exp_ge = Signal()
        distance = Signal(range(ALIGN_BITS + 1))
        diff_ab = a.exp - b.exp
        diff_ba = b.exp - a.exp
        m.d.comb += [
            a_exp_ge.eq(a.exp >= b.exp),
            distance.eq(Mux(a_exp_ge, Mux(diff_ab > ALIGN_BITS, ALIGN_BITS, diff_ab),
                            Mux(diff_ba > ALIGN_BITS, ALIGN_BITS, diff_ba))),
        ]

        # ---------------------------------------------------------------- register "distance"
        registered = bool(self._stages)
        a, b = stage(m, a, registered, "a"), stage(m, b, registered, "b")
        a_exp_ge = stage(m, a_exp_ge, registered, "a_exp_ge")
        distance = stage(m, distance, registered, "distance")
        special = stage(m, special, registered, "special")

        # ---------------------------------------------------------------- shift + sticky
        small_ext = Signal(ALIGN_BITS)
        kept = Signal(ALIGN_BITS)
        m.d.comb += [
            small_ext.eq(Mux(a_exp_ge, b.sig, a.sig) << ALIGN_EXTRA_BITS),
            kept.eq(Mux(a_exp_ge, a.sig, b.sig) << ALIGN_EXTRA_BITS),
        ]
        shifted = Signal(ALIGN_BITS)
        m.d.comb += shifted.eq(small_ext >> distance)
        # the bits shifted out: those below ``distance`` (a mask, not a shift back and
        # compare: one barrel shifter less on the adder's longest path)
        lost = (small_ext & ((1 << distance) - 1)[:ALIGN_BITS]).any()
        aligned_small = shifted | lost

        # ---------------------------------------------------------------- swap
        # magnitude order is (exp, sig) lexicographic; with equal exponents nothing was
        # shifted and the larger significand goes first
        a_big = (a.exp > b.exp) | ((a.exp == b.exp) & (a.sig >= b.sig))
        swap = (a.exp == b.exp) & (a.sig < b.sig)
        m.d.comb += [
            al.special.eq(special),
            al.big.eq(Mux(swap, aligned_small, kept)),
            al.small.eq(Mux(swap, kept, aligned_small)),
            al.exp.eq(Mux(a_exp_ge, a.exp, b.exp)),
            al.sign.eq(Mux(a_big, a.sign, b.sign)),
            al.subtract.eq(a.sign ^ b.sign),
            # RNE: an exact zero sum is -0 only if both addends are negative (-0 + -0).
            al.zero_sign.eq(a.sign & b.sign),
        ]
        return m
