"""Pipelined binary32 multiplier."""

# No `from __future__ import annotations`: wiring.Component reads the evaluated
# signature annotations of the class.
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.layouts import FP32Layout
from pysim.numerics.formats import MANT_BITS_MAX, check_mant_bits
from pysim.perf import arch

from ..pipeline import delay, stage
from ._params import check_int
from .multiply import SigMul
from .normalize import Normalize
from .round import Round
from .unpack import Unpack

__all__ = ["FPMul"]


class FPMul(wiring.Component):
    """IEEE 754 binary32 multiplier, RNE, subnormals in and out, canonical NaN.

    Pipeline (``sync`` domain), ``latency`` = ``stages`` cycles from ``valid_in`` to
    ``valid_out``. The stage boundaries, and which depth registers them::

        a, b ......................... register "operands"   (stages 6)
        Unpack(a), Unpack(b) ......... register "unpacked"   (stages 4, 5, 6)
        SigMul ....................... register "product"    (stages 2, 3, 4, 5, 6)
        Normalize: count, limit ...... register "amount"     (stages 5, 6)
                   shift, sticky ..... register "pre_round"  (stages 3, 4, 5, 6)
        Round ........................ register "result"     (always)

    Two stages (``arch.MUL_LATENCY``) is the compact multiplier, whose normalize + round
    path (~30 ns on ECP5) is shorter than the compact accumulator loop; three and four
    follow the pipelined accumulator (docs/silicon.md, "Lifting the clock").
    The data registers load every cycle (no enable); ``valid_out`` is ``valid_in``
    delayed by ``latency`` cycles and qualifies ``result``.

    Parameters (keyword-only)
    -------------------------
    stages : int in ``arch.MUL_STAGES`` (default ``arch.MUL_LATENCY`` = 2)
        Pipeline registers, the output register included.
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

    #: Which boundaries each depth registers ("result" always).
    REGISTERS = {2: ("product",), 3: ("product", "pre_round"),
                 4: ("unpacked", "product", "pre_round"),
                 5: ("unpacked", "product", "amount", "pre_round"),
                 6: ("operands", "unpacked", "product", "amount", "pre_round")}

    def __init__(self, *, sig_bits: int = MANT_BITS_MAX, stages: int = arch.MUL_LATENCY):
        self._sig_bits = check_mant_bits(sig_bits)
        self._stages = check_int("FPMul", "stages", stages, min(arch.MUL_STAGES),
                                 max(arch.MUL_STAGES))
        super().__init__()

    @property
    def stages(self) -> int:
        return self._stages

    @property
    def sig_bits(self) -> int:
        return self._sig_bits

    @property
    def latency(self) -> int:
        return self._stages

    def elaborate(self, platform):
        m = Module()
        registered = self.REGISTERS[self._stages]

        # ================================================================ unpack
        # Unpack and classify (subnormals normalized).
        m.submodules.unpack_a = unpack_a = Unpack(normalize=True)
        m.submodules.unpack_b = unpack_b = Unpack(normalize=True)
        m.d.comb += [
            unpack_a.operand.eq(stage(m, self.a, "operands" in registered, "operand_a")),
            unpack_b.operand.eq(stage(m, self.b, "operands" in registered, "operand_b")),
        ]
        unpacked_a = stage(m, unpack_a.unpacked, "unpacked" in registered, "unpacked_a")
        unpacked_b = stage(m, unpack_b.unpacked, "unpacked" in registered, "unpacked_b")

        # ================================================================ multiply
        # W x W significand multiply, exponent add, special cases.
        m.submodules.sig_mul = sig_mul = SigMul(sig_bits=self._sig_bits)
        m.d.comb += [
            sig_mul.a.eq(unpacked_a),
            sig_mul.b.eq(unpacked_b),
        ]
        product = stage(m, sig_mul.product, "product" in registered, "product")

        # ================================================================ normalize
        # Subnormal-aware normalization.
        m.submodules.normalize = normalize = Normalize(width=sig_mul.width,
                                                       stages=int("amount" in registered))
        m.d.comb += normalize.wide.eq(product)
        pre_round = stage(m, normalize.pre_round, "pre_round" in registered, "pre_round")

        # ================================================================ round + pack
        m.submodules.round = rounder = Round()
        m.d.comb += rounder.pre_round.eq(pre_round)

        # ---------------------------------------------------------------- output register
        m.d.sync += self.result.eq(rounder.result)
        m.d.comb += self.valid_out.eq(delay(m, self.valid_in, self._stages, "valid"))
        return m
