"""Round stage, shared by the multiplier and the adder (cf. cvfpu fpnew_rounding):
round to nearest even, overflow to Inf, special results, pack to an FP32 word."""

# No `from __future__ import annotations`: wiring.Component reads the evaluated
# signature annotations of the class.
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.layouts import FP32Layout
from pysim.numerics.formats import FP32

from .layouts import EXP_WIDTH, SIG_BITS, PreRound

__all__ = ["Round"]


class Round(wiring.Component):
    """RNE rounding and packing of a :class:`~hw.fp32.layouts.PreRound` value.

    Requires the Normalize invariant (``exp >= emin``; ``sig`` MSB set unless
    ``exp == emin``). The increment is ``round & (sticky | lsb)``; a carry out of the
    significand bumps the exponent (all-ones -> next binade), and a subnormal that rounds
    up to 2**emin naturally becomes the smallest normal. A result above emax after
    rounding becomes Inf with its sign. ``special.nan`` gives the canonical quiet NaN,
    ``special.inf`` a signed Inf.

    Ports
    -----
    pre_round : In(PreRound)
    result    : Out(FP32Layout)
    """

    pre_round: In(PreRound)
    result: Out(FP32Layout)

    def elaborate(self, platform):
        m = Module()
        pr, res = self.pre_round, self.result

        # ---------------------------------------------------------------- RNE increment
        increment = pr.round & (pr.sticky | pr.sig[0])
        rounded = Signal(SIG_BITS + 1)
        m.d.comb += rounded.eq(pr.sig + increment)
        carry = rounded[SIG_BITS]

        sig = Signal(SIG_BITS)
        exp = Signal(signed(EXP_WIDTH))
        m.d.comb += [
            sig.eq(Mux(carry, rounded[1:], rounded[:SIG_BITS])),
            exp.eq(pr.exp + carry),
        ]

        # ---------------------------------------------------------------- overflow
        normal = sig[SIG_BITS - 1]
        overflow = normal & (exp > FP32.emax)

        # ---------------------------------------------------------------- pack
        with m.If(pr.special.nan):
            m.d.comb += res.as_value().eq(FP32.canonical_nan_bits)
        with m.Elif(pr.special.inf | overflow):
            m.d.comb += [
                res.sign.eq(pr.sign),
                res.exp.eq(FP32.exp_max_code),
                res.frac.eq(0),
            ]
        with m.Else():
            m.d.comb += [
                res.sign.eq(pr.sign),
                # a subnormal or zero (no hidden bit) has the biased exponent code 0
                res.exp.eq(Mux(normal, exp + FP32.bias, 0)),
                res.frac.eq(sig[:FP32.frac_bits]),
            ]
        return m
