"""Pipelined binary32 multiplier."""

# No `from __future__ import annotations`: wiring.Component reads the evaluated
# signature annotations of the class.
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.layouts import FP32Layout
from pysim.numerics.formats import MANT_BITS_MAX, check_mant_bits
from pysim.perf import arch

from .multiply import SigMul
from .normalize import Normalize
from .round import Round
from .unpack import Unpack

__all__ = ["FPMul"]


class FPMul(wiring.Component):
    """IEEE 754 binary32 multiplier, RNE, subnormals in and out, canonical NaN.

    Pipeline (``sync`` domain), ``latency`` = ``arch.MUL_LATENCY`` (the two registers
    below) cycles from ``valid_in`` to ``valid_out``::

        stage 1: Unpack(a), Unpack(b) -> SigMul ............ register (product, valid)
        stage 2: Normalize -> Round ......................... register (result, valid)

    The data registers load every cycle (no enable); ``valid_out`` is ``valid_in``
    delayed by ``latency`` cycles and qualifies ``result``.

    Parameters (keyword-only)
    -------------------------
    sig_bits : int in 1..MANT_BITS_MAX (default MANT_BITS_MAX = 24)
        W: the operands are promised to carry at most W significant bits (after
        normalization of a subnormal operand), so the significand multiplier is only
        W x W -> 2W bits. For W <= 12 the product fits in 24 bits and is exact; rounding
        then only acts on subnormal results and overflow. W = 24 is the full IEEE
        multiplier, exact for all inputs. Operands with more than W significant bits are
        truncated to their top W bits.

    Ports
    -----
    a, b      : In(FP32Layout)
    valid_in  : In(1)
    result    : Out(FP32Layout)
    valid_out : Out(1)
    """

    a: In(FP32Layout)
    b: In(FP32Layout)
    valid_in: In(1)
    result: Out(FP32Layout)
    valid_out: Out(1)

    #: Cycles from ``valid_in`` to ``valid_out`` (register 1 and register 2 below).
    LATENCY = arch.MUL_LATENCY

    def __init__(self, *, sig_bits: int = MANT_BITS_MAX):
        self._sig_bits = check_mant_bits(sig_bits)
        super().__init__()

    @property
    def sig_bits(self) -> int:
        return self._sig_bits

    @property
    def latency(self) -> int:
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()

        # ================================================================ stage 1
        # Unpack and classify (subnormals normalized), W x W significand multiply.
        m.submodules.unpack_a = unpack_a = Unpack(normalize=True)
        m.submodules.unpack_b = unpack_b = Unpack(normalize=True)
        m.submodules.sig_mul = sig_mul = SigMul(sig_bits=self._sig_bits)
        m.d.comb += [
            unpack_a.operand.eq(self.a),
            unpack_b.operand.eq(self.b),
            sig_mul.a.eq(unpack_a.unpacked),
            sig_mul.b.eq(unpack_b.unpacked),
        ]

        # ---------------------------------------------------------------- register 1
        product = Signal.like(sig_mul.product, name="product_s1")
        valid_s1 = Signal()
        m.d.sync += [
            product.eq(sig_mul.product),
            valid_s1.eq(self.valid_in),
        ]

        # ================================================================ stage 2
        # Normalize (subnormal-aware), round to nearest even, pack.
        m.submodules.normalize = normalize = Normalize(width=sig_mul.width)
        m.submodules.round = rounder = Round()
        m.d.comb += [
            normalize.wide.eq(product),
            rounder.pre_round.eq(normalize.pre_round),
        ]

        # ---------------------------------------------------------------- register 2
        m.d.sync += [
            self.result.eq(rounder.result),
            self.valid_out.eq(valid_s1),
        ]
        return m
