"""S2FP8 multiply-accumulate unit: decode -> FP32 multiply -> FP32 accumulate, II = 1.

::

      operands (a, b codes, first, last) ── valid/ready
        │                     init (FP32, sampled with the `first` beat)
        ▼
   ┌──────────┐ ┌──────────┐
   │ decoder A│ │ decoder B│  stage D: 128 x FP32 table read, sign applied   (1 cycle)
   └────┬─────┘ └────┬─────┘
        └─────┬──────┘
              ▼
        ┌───────────┐
        │ FPMul (W) │            stages M1, M2: unpack + W x W significand
        └─────┬─────┘            product | normalize + round    (2 cycles)
              ▼
        ┌───────────┐  ┌─────┐
        │   FPAdd   │◄─┤ acc │   stage A: one combinational FP32 add, the
        └─────┬─────┘  └──▲──┘   accumulator register closes the loop (1 cycle)
              └───────────┘
              ▼
          result (FP32, valid one cycle after the `last` product is added)

Initiation interval 1, including the accumulator dependency: the whole FP32 adder
(unpack, align, add, normalize, round) is one combinational path from the accumulator
register back to itself, so the sum of product k is in the register in time to be an
operand of product k+1. Splitting that add over several cycles would need several
interleaved partial sums, which changes the order of the additions and so the rounded
result; the golden model (and the paper's accumulate) adds in order k = 0..K-1.

Latency (``latency``, ``pysim.perf.arch.MAC_LATENCY``): decode + multiply + accumulate
= 4 cycles from the cycle the `last` beat is accepted to the cycle ``result.valid`` is high.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from pysim.perf import arch
from pysim.numerics.formats import FP32, check_mant_bits

from .decoder import OperandDecoder, TableWriteSignature
from .fp32 import FPAdd, FPMul
from .layouts import CodeLayout, FP32Layout
from .pipeline import delay

#: One beat of the operand stream.
OperandLayout = data.StructLayout({
    "a": CodeLayout,       # S2FP8 code of the A operand
    "b": CodeLayout,       # S2FP8 code of the B operand
    "first": 1,            # first product of a sequence: accumulate onto `init`
    "last": 1,             # last product of a sequence: emit the sum on `result`
})

#: A stream that cannot be back-pressured: ``payload`` is meaningful while ``valid``.
ResultSignature = wiring.Signature({"valid": Out(1), "payload": Out(FP32Layout)})

#: What travels beside the operands through the decode and multiply stages.
SequenceLayout = data.StructLayout({
    "first": 1,
    "last": 1,
    "init": FP32Layout,
})


class S2FP8MAC(wiring.Component):
    """S2FP8 decode-multiply-accumulate unit.

    Parameters (keyword-only):
    - ``mant_bits`` (W, 1..24, default 24): significant bits of the decoded operands (the
      tables must be made with the same W); the multiplier is W x W.

    Ports:
    - ``table_a``, ``table_b``: decode-table write ports (``en``, ``addr``, ``data``).
    - ``operands``: stream of (a code, b code, first, last); ``ready`` is low while either
      table is being written, so no operand is decoded with a half-written table.
    - ``init``: the FP32 start value of a sequence, sampled with its `first` beat.
    - ``result``: FP32 sums, one per `last` beat, each valid for one cycle (no
      back-pressure: the consumer takes it).
    """

    table_a: In(TableWriteSignature())
    table_b: In(TableWriteSignature())
    operands: In(stream.Signature(OperandLayout))
    init: In(FP32Layout)
    result: Out(ResultSignature)

    def __init__(self, *, mant_bits: int = FP32.precision):
        self._mant_bits = check_mant_bits(mant_bits)
        super().__init__()

    @property
    def mant_bits(self) -> int:
        return self._mant_bits

    @property
    def latency(self) -> int:
        """Cycles from accepting a `last` beat to ``result.valid``."""
        return arch.MAC_LATENCY

    def elaborate(self, platform):
        m = Module()
        m.submodules.decode_a = decode_a = OperandDecoder()
        m.submodules.decode_b = decode_b = OperandDecoder()
        m.submodules.multiply = multiply = FPMul(sig_bits=self._mant_bits)
        m.submodules.add = add = FPAdd()

        # --- Stage D: accept a beat, read both tables ------------------------------------
        writing = self.table_a.en | self.table_b.en
        accept = self.operands.valid & self.operands.ready
        m.d.comb += self.operands.ready.eq(~writing)
        wiring.connect(m, wiring.flipped(self.table_a), decode_a.table)
        wiring.connect(m, wiring.flipped(self.table_b), decode_b.table)
        m.d.comb += [
            decode_a.code.eq(self.operands.payload.a),
            decode_b.code.eq(self.operands.payload.b),
            decode_a.code_valid.eq(accept),
            decode_b.code_valid.eq(accept),
        ]
        sequence = Signal(SequenceLayout)
        m.d.sync += [
            sequence.first.eq(self.operands.payload.first),
            sequence.last.eq(self.operands.payload.last),
            sequence.init.eq(self.init),
        ]

        # --- Stages M1, M2: FP32 multiply ------------------------------------------------
        m.d.comb += [
            multiply.a.eq(decode_a.value),
            multiply.b.eq(decode_b.value),
            multiply.valid_in.eq(decode_a.value_valid),
        ]
        in_flight = delay(m, sequence, multiply.latency, "sequence")

        # --- Stage A: accumulate (the loop closes through one combinational add) ---------
        acc = Signal(FP32Layout)
        m.d.comb += [
            add.a.eq(Mux(in_flight.first, in_flight.init, acc)),
            add.b.eq(multiply.result),
        ]
        with m.If(multiply.valid_out):
            m.d.sync += acc.eq(add.result)
        m.d.sync += self.result.valid.eq(multiply.valid_out & in_flight.last)
        m.d.comb += self.result.payload.eq(acc)
        return m
