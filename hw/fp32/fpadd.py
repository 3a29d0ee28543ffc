"""Combinational binary32 adder and its registered test/Verilog top level."""

# No `from __future__ import annotations`: wiring.Component reads the evaluated
# signature annotations of the class.
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.layouts import FP32Layout
from pysim.perf import arch

from ..pipeline import delay, stage
from ._params import check_int
from .addsub import SigAddSub
from .align import Align
from .layouts import SUM_BITS
from .normalize import Normalize
from .round import Round
from .unpack import Unpack

__all__ = ["FPAdd", "FPAddUnit"]


class FPAdd(wiring.Component):
    """IEEE 754 binary32 adder, RNE, subnormals in and out, signed zeros, canonical NaN.

    The chain, and which ``stages`` value puts a register (``sync``) after each step::

        Unpack(a), Unpack(b)
        Align: exponent compare ......... register "distance"   (stages 3, 4, 5)
               shift, sticky, swap ...... register "aligned"    (stages 2, 5)
        SigAddSub ....................... register "sum"        (stages 1, 4, 5)
        Normalize: count, limit ......... register "amount"     (stages 2, 3, 4, 5)
                   shift, sticky ........ register "pre_round"  (stages 3, 4, 5)
        Round ........................... ``result`` (combinational)

    ``stages`` = 0 (default) is purely combinational (``latency`` 0): the compact
    accumulator loop closes through it in one cycle. With ``stages`` = L - 1 it is the
    adder of an L-deep accumulator loop (the accumulator register makes the L-th stage;
    hw/mac.py), ``latency`` = ``stages`` cycles from the operands to ``result``.

    Parameters (keyword-only)
    -------------------------
    stages : int in 0..5 (``max(arch.ACC_STAGES) - 1``)

    Ports
    -----
    a, b   : In(FP32Layout)
    result : Out(FP32Layout)
    """

    a: In(FP32Layout)
    b: In(FP32Layout)
    result: Out(FP32Layout)

    #: Which boundaries each depth registers: the one register of a two-deep loop splits
    #: the adder near its middle; three split it in halves again.
    REGISTERS = {0: (), 1: ("sum",), 2: ("aligned", "amount"),
                 3: ("distance", "amount", "pre_round"),
                 4: ("distance", "sum", "amount", "pre_round"),
                 5: ("distance", "aligned", "sum", "amount", "pre_round")}

    def __init__(self, *, stages: int = 0):
        self._stages = check_int("FPAdd", "stages", stages, 0, max(arch.ACC_STAGES) - 1)
        super().__init__()

    @property
    def stages(self) -> int:
        return self._stages

    @property
    def latency(self) -> int:
        return self._stages

    def elaborate(self, platform):
        m = Module()
        registered = self.REGISTERS[self._stages]

        # ================================================================ unpack
        # Subnormals are not normalized: alignment handles them at exponent emin.
        m.submodules.unpack_a = unpack_a = Unpack(normalize=False)
        m.submodules.unpack_b = unpack_b = Unpack(normalize=False)
        m.d.comb += [
            unpack_a.operand.eq(self.a),
            unpack_b.operand.eq(self.b),
        ]

        # ================================================================ align
        m.submodules.align = align = Align(stages=int("distance" in registered))
        m.d.comb += [
            align.a.eq(unpack_a.unpacked),
            align.b.eq(unpack_b.unpacked),
        ]
        aligned = stage(m, align.aligned, "aligned" in registered, "aligned")

        # ================================================================ add / subtract
        m.submodules.add_sub = add_sub = SigAddSub()
        m.d.comb += add_sub.aligned.eq(aligned)
        total = stage(m, add_sub.sum, "sum" in registered, "sum")

        # ================================================================ normalize
        m.submodules.normalize = normalize = Normalize(width=SUM_BITS,
                                                       stages=int("amount" in registered))
        m.d.comb += normalize.wide.eq(total)
        pre_round = stage(m, normalize.pre_round, "pre_round" in registered, "pre_round")

        # ================================================================ round + pack
        m.submodules.round = rounder = Round()
        m.d.comb += [
            rounder.pre_round.eq(pre_round),
            self.result.eq(rounder.result),
        ]
        return m


class FPAddUnit(wiring.Component):
    """:class:`FPAdd` with a registered output in ``sync``: the test and Verilog top level.

    ``latency`` = ``stages`` cycles from ``valid_in`` to ``valid_out``: ``stages`` - 1
    registers inside the FPAdd and the output register, the structure of an accumulate
    stage L = ``stages`` deep (default ``arch.ACC_LATENCY`` = 1, the compact one).

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

    def __init__(self, *, stages: int = arch.ACC_LATENCY):
        self._stages = check_int("FPAddUnit", "stages", stages, min(arch.ACC_STAGES),
                                 max(arch.ACC_STAGES))
        super().__init__()

    @property
    def stages(self) -> int:
        return self._stages

    @property
    def latency(self) -> int:
        return self._stages

    def elaborate(self, platform):
        m = Module()
        m.submodules.add = add = FPAdd(stages=self._stages - 1)
        m.d.comb += [
            add.a.eq(self.a),
            add.b.eq(self.b),
        ]
        # ---------------------------------------------------------------- output register
        m.d.sync += self.result.eq(add.result)
        m.d.comb += self.valid_out.eq(delay(m, self.valid_in, self._stages, "valid"))
        return m
