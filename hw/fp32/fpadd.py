"""Combinational binary32 adder and its registered test/Verilog top level."""

# No `from __future__ import annotations`: wiring.Component reads the evaluated
# signature annotations of the class.
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.layouts import FP32Layout
from pysim.perf import arch

from .addsub import SigAddSub
from .align import Align
from .layouts import SUM_BITS
from .normalize import Normalize
from .round import Round
from .unpack import Unpack

__all__ = ["FPAdd", "FPAddUnit"]


class FPAdd(wiring.Component):
    """IEEE 754 binary32 adder, RNE, subnormals in and out, signed zeros, canonical NaN.

    Purely combinational (``latency`` = 0): it sits in the accumulator feedback loop,
    which must close in one cycle. The chain is::

        Unpack(a), Unpack(b) -> Align -> SigAddSub -> Normalize -> Round

    Ports
    -----
    a, b   : In(FP32Layout)
    result : Out(FP32Layout)
    """

    a: In(FP32Layout)
    b: In(FP32Layout)
    result: Out(FP32Layout)

    #: Combinational: the result is valid in the same cycle.
    LATENCY = 0

    @property
    def latency(self) -> int:
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()

        # ================================================================ unpack
        # Subnormals are not normalized: alignment handles them at exponent emin.
        m.submodules.unpack_a = unpack_a = Unpack(normalize=False)
        m.submodules.unpack_b = unpack_b = Unpack(normalize=False)
        m.d.comb += [
            unpack_a.operand.eq(self.a),
            unpack_b.operand.eq(self.b),
        ]

        # ================================================================ align
        m.submodules.align = align = Align()
        m.d.comb += [
            align.a.eq(unpack_a.unpacked),
            align.b.eq(unpack_b.unpacked),
        ]

        # ================================================================ add / subtract
        m.submodules.add_sub = add_sub = SigAddSub()
        m.d.comb += add_sub.aligned.eq(align.aligned)

        # ================================================================ normalize
        m.submodules.normalize = normalize = Normalize(width=SUM_BITS)
        m.d.comb += normalize.wide.eq(add_sub.sum)

        # ================================================================ round + pack
        m.submodules.round = rounder = Round()
        m.d.comb += [
            rounder.pre_round.eq(normalize.pre_round),
            self.result.eq(rounder.result),
        ]
        return m


class FPAddUnit(wiring.Component):
    """:class:`FPAdd` with a registered output in ``sync``: the test and Verilog top level.

    ``latency`` = ``arch.ACC_LATENCY`` (1) cycle from ``valid_in`` to ``valid_out``.

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

    #: Cycles from ``valid_in`` to ``valid_out``: the combinational add and one register,
    #: the same structure as the MAC's accumulate stage.
    LATENCY = arch.ACC_LATENCY

    @property
    def latency(self) -> int:
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()
        m.submodules.add = add = FPAdd()
        m.d.comb += [
            add.a.eq(self.a),
            add.b.eq(self.b),
        ]
        # ---------------------------------------------------------------- output register
        m.d.sync += [
            self.result.eq(add.result),
            self.valid_out.eq(self.valid_in),
        ]
        return m
