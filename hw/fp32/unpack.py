"""Unpack/classify stage: FP32 word -> :class:`~hw.fp32.layouts.Unpacked`."""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.layouts import FP32Layout
from pysim.numerics.formats import FP32

from ._params import check_bool
from .layouts import EXP_WIDTH, SIG_BITS, Unpacked
from .lzc import LeadingZeroCount

__all__ = ["Unpack"]


class Unpack(wiring.Component):
    """Split an FP32 word into sign, unbiased exponent, explicit significand and class.

    Parameters (keyword-only)
    -------------------------
    normalize : bool
        If true (multiplier), a subnormal operand is normalized with a leading-zero count:
        ``sig`` is shifted up until its MSB is 1 and ``exp`` goes below emin by the same
        amount, so the significant bits are always the top bits of ``sig``. If false
        (adder), a subnormal keeps ``exp == emin`` and a leading zero; no LZC is built.

    Ports
    -----
    operand  : In(FP32Layout)
    unpacked : Out(Unpacked)
    """

    def __init__(self, *, normalize: bool):
        self._normalize = check_bool("Unpack", "normalize", normalize)
        super().__init__({
            "operand": In(FP32Layout),
            "unpacked": Out(Unpacked),
        })

    @property
    def normalize(self) -> bool:
        return self._normalize

    def elaborate(self, platform):
        m = Module()
        op, up = self.operand, self.unpacked

        # ---------------------------------------------------------------- classify
        exp_zero = op.exp == 0
        exp_ones = op.exp == FP32.exp_max_code
        frac_zero = op.frac == 0
        m.d.comb += [
            up.sign.eq(op.sign),
            up.cls.zero.eq(exp_zero & frac_zero),
            up.cls.subnormal.eq(exp_zero & ~frac_zero),
            up.cls.inf.eq(exp_ones & frac_zero),
            up.cls.nan.eq(exp_ones & ~frac_zero),
        ]

        # ---------------------------------------------------------------- significand
        # Hidden bit made explicit; a subnormal's exponent is emin (biased code 1).
        raw_sig = Signal(SIG_BITS)
        raw_exp = Signal(signed(EXP_WIDTH))
        m.d.comb += [
            raw_sig.eq(op.frac | (~exp_zero << FP32.frac_bits)),
            raw_exp.eq(Mux(exp_zero, 1, op.exp) - FP32.bias),
        ]

        if self._normalize:
            # -------------------------------------------------------- normalize (LZC)
            m.submodules.lzc = lzc = LeadingZeroCount(width=SIG_BITS)
            m.d.comb += [
                lzc.value.eq(raw_sig),
                up.sig.eq(raw_sig << lzc.count),
                up.exp.eq(raw_exp - lzc.count),
            ]
        else:
            m.d.comb += [
                up.sig.eq(raw_sig),
                up.exp.eq(raw_exp),
            ]
        return m
