"""Significand-multiply stage of the multiplier: two Unpacked operands -> exact product."""
from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from pysim.numerics.formats import MANT_BITS_MAX, check_mant_bits

from .layouts import SIG_BITS, Unpacked, wide_layout

__all__ = ["SigMul"]


class SigMul(wiring.Component):
    """W x W -> 2W significand multiplier, exponent adder, sign and special-case logic.

    The operands must come from ``Unpack(normalize=True)``: their significant bits are the
    top bits of ``sig``. Only the top ``sig_bits`` (W) bits of each significand enter the
    multiplier; the operands are promised to carry at most W significant bits (decode
    tables are rounded to W bits), so the dropped low bits are zero and the product is
    exact. With W = P (24) this is the full IEEE multiplier.

    The exact product (value in [1, 4) * 2**(exp_a + exp_b)) is left-aligned in a
    ``width``-bit field, ``width = max(2W, P + 2)``, so that Normalize always finds the P
    result bits plus a round bit below them; for W <= 12 the 2W-bit product fits in
    P bits and only subnormal results or overflow make rounding matter.

    Parameters (keyword-only)
    -------------------------
    sig_bits : int in 1..MANT_BITS_MAX
        W, checked with :func:`pysim.numerics.formats.check_mant_bits`.

    Ports
    -----
    a, b    : In(Unpacked)
    product : Out(wide_layout(width))
    """

    def __init__(self, *, sig_bits: int = MANT_BITS_MAX):
        self._sig_bits = check_mant_bits(sig_bits)
        self._width = max(2 * sig_bits, SIG_BITS + 2)
        super().__init__({
            "a": In(Unpacked),
            "b": In(Unpacked),
            "product": Out(wide_layout(self._width)),
        })

    @property
    def sig_bits(self) -> int:
        return self._sig_bits

    @property
    def width(self) -> int:
        """Width of ``product.sig``."""
        return self._width

    def elaborate(self, platform):
        m = Module()
        a, b, p = self.a, self.b, self.product
        w = self._sig_bits

        # ---------------------------------------------------------------- special cases
        invalid = (a.cls.inf & b.cls.zero) | (a.cls.zero & b.cls.inf)
        nan = a.cls.nan | b.cls.nan | invalid
        m.d.comb += [
            p.special.nan.eq(nan),
            p.special.inf.eq((a.cls.inf | b.cls.inf) & ~nan),
            p.sign.eq(a.sign ^ b.sign),
        ]

        # ---------------------------------------------------------------- W x W multiply
        product = Signal(2 * w)
        m.d.comb += product.eq(a.sig[SIG_BITS - w:] * b.sig[SIG_BITS - w:])

        # ---------------------------------------------------------------- exponent add
        # The product's MSB position has weight 2**(exp_a + exp_b + 1).
        m.d.comb += [
            p.sig.eq(product << (self._width - 2 * w)),
            p.exp.eq(a.exp + b.exp + 1),
            p.sticky.eq(0),
        ]
        return m
