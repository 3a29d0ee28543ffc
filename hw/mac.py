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
        │ FPMul (W) │            M cycles: unpack | W x W significand product |
        └─────┬─────┘            normalize | round (M = 2: compact; up to 6: pipelined)
              ▼
        ┌───────────┐  ┌─────┐
        │ FPAdd     │◄─┤ acc │   L cycles: the FP32 adder over L - 1 stages plus the
        │ (L-1 regs)│  └──▲──┘   accumulator register closes the loop
        └─────┬─────┘     │
              └───────────┘
              ▼
          result (FP32, valid one cycle after the `last` product's sum reaches acc)

The accumulator loop is L cycles deep (``acc_stages``; L = 1, the compact unit, adds in
one combinational FP32 add). It holds L running sums at once, one per loop stage, and
they circulate every cycle: the sum that leaves ``acc`` in a cycle comes back to it L
cycles later. A product joins the sum that passes the adder's input in its cycle, and a
cycle without a product adds -0, which leaves every value exactly as it is (x + -0 = x
for every x, -0 and NaN included: NaNs in the loop are already canonical). So the unit
accumulates L independent sequences ("slots"), interleaved round-robin on the operand
stream: beat n belongs to slot n mod L, and each slot is summed in its own order,
k = 0..K-1, exactly as the golden model (and the paper's accumulate) adds, whatever L.
To keep every slot's beats L cycles apart the unit accepts beat n only in a cycle whose
phase (a counter mod L, reset to 0 while a table is written) equals n mod L: a stream
without gaps runs at one beat per cycle; a gap costs up to L - 1 more cycles.

Latency (``latency``, ``pysim.perf.arch.mac_latency``): decode + multiply + accumulate
= 1 + M + L cycles from the cycle the `last` beat is accepted to the cycle
``result.valid`` is high (4 for the compact unit, ``arch.MAC_LATENCY``).
"""

from amaranth import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from pysim.perf import arch
from pysim.numerics.formats import FP32, check_mant_bits

from .decoder import OperandDecoder, TableWriteSignature
from .fp32 import FPAdd, FPMul
from .layouts import CodeLayout, FP32Layout
from .pipeline import PipelineDepth, delay

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


class S2FP8MAC(PipelineDepth, wiring.Component):
    """S2FP8 decode-multiply-accumulate unit.

    Parameters (keyword-only):
    - ``mant_bits`` (W, 1..24, default 24): significant bits of the decoded operands (the
      tables must be made with the same W); the multiplier is W x W.
    - ``acc_stages`` (L in ``arch.ACC_STAGES``, default 1): depth of the accumulator loop,
      the number of interleaved sequences (module docstring).
    - ``mul_stages`` (M in ``arch.MUL_STAGES``, default ``arch.DEFAULT_MUL_STAGES[L]``):
      depth of the multiplier.

    Ports:
    - ``table_a``, ``table_b``: decode-table write ports (``en``, ``addr``, ``data``).
    - ``operands``: stream of (a code, b code, first, last); beat n belongs to slot
      n mod L. ``ready`` is low while either table is being written, so no operand is
      decoded with a half-written table, and in the cycles whose phase is not the next
      beat's slot.
    - ``init``: the FP32 start value of a sequence, sampled with its `first` beat.
    - ``result``: FP32 sums, one per `last` beat, each valid for one cycle (no
      back-pressure: the consumer takes it).
    """

    table_a: In(TableWriteSignature())
    table_b: In(TableWriteSignature())
    operands: In(stream.Signature(OperandLayout))
    init: In(FP32Layout)
    result: Out(ResultSignature)

    def __init__(self, *, mant_bits: int = FP32.precision, acc_stages: int = 1,
                 mul_stages: int | None = None):
        self._mant_bits = check_mant_bits(mant_bits)
        self._set_depth("S2FP8MAC", acc_stages, mul_stages)
        super().__init__()

    @property
    def mant_bits(self) -> int:
        return self._mant_bits

    @property
    def latency(self) -> int:
        """Cycles from accepting a `last` beat to ``result.valid``."""
        return arch.mac_latency(self._acc_stages, self._mul_stages)

    def elaborate(self, platform):
        m = Module()
        slots = self._acc_stages
        m.submodules.decode_a = decode_a = OperandDecoder()
        m.submodules.decode_b = decode_b = OperandDecoder()
        m.submodules.multiply = multiply = FPMul(sig_bits=self._mant_bits,
                                                 stages=self._mul_stages)
        m.submodules.add = add = FPAdd(stages=slots - 1)

        # --- Stage D: accept a beat in its slot's phase, read both tables ----------------
        writing = self.table_a.en | self.table_b.en
        accept = Signal()
        turn, _ = slot_turn(m, slots, restart=writing, accept=accept)
        m.d.comb += [
            self.operands.ready.eq(~writing & turn),
            accept.eq(self.operands.valid & self.operands.ready),
        ]
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

        # --- Stages M: FP32 multiply -----------------------------------------------------
        m.d.comb += [
            multiply.a.eq(decode_a.value),
            multiply.b.eq(decode_b.value),
            multiply.valid_in.eq(decode_a.value_valid),
        ]
        in_flight = delay(m, sequence, multiply.latency, "sequence")

        # --- Stages A: accumulate (the loop closes through L - 1 adder stages + acc) -----
        acc = accumulator_loop(m, add, product=multiply.result, valid=multiply.valid_out,
                               first=in_flight.first, start=in_flight.init)
        done = delay(m, multiply.valid_out & in_flight.last, slots - 1, "last_sum")
        m.d.sync += self.result.valid.eq(done)
        m.d.comb += self.result.payload.eq(acc)
        return m


def slot_turn(m, slots: int, *, restart, accept):
    """The interleave rule, shared by the MAC, the baselines and the array: a phase
    counter (mod ``slots``, 0 in the cycle after ``restart``) and the slot of the next
    beat (advanced by each ``accept``). Returns ``(turn, last_slot)``: the next beat may
    be accepted in this cycle (its slot's phase), and it is the last slot of its round.
    With one slot both are constant 1 (no registers)."""
    if slots == 1:
        return Const(1), Const(1)
    phase = Signal(range(slots), name="phase")
    slot = Signal(range(slots), name="slot")
    last_slot = slot == slots - 1
    m.d.sync += phase.eq(Mux(restart | (phase == slots - 1), 0, phase + 1))
    with m.If(accept):
        m.d.sync += slot.eq(Mux(last_slot, 0, slot + 1))
    return phase == slot, last_slot


#: The FP32 word of -0: x + -0 == x for every x, so a loop cycle without a product adds it.
NEGATIVE_ZERO = FP32.sign_mask


def accumulator_loop(m, add, *, product, valid, first, start):
    """Close the accumulator loop around ``add`` (an ``FPAdd`` with L - 1 stages): the
    ``acc`` register loads the adder's result every cycle; a ``valid`` product is added to
    the sum coming round (or to ``start`` on a ``first`` product), a cycle without one adds
    -0. Returns ``acc``. Shared by the MAC and the array's PE."""
    acc = Signal(FP32Layout, name="acc")
    m.d.comb += [
        add.a.eq(Mux(valid & first, start, acc)),
        add.b.eq(Mux(valid, product, NEGATIVE_ZERO)),
    ]
    m.d.sync += acc.eq(add.result)
    return acc
