"""Baseline multiply-accumulate units for the silicon-cost comparison (``s2fp8 synth``).

Each baseline has the S2FP8 MAC's pipeline (``hw.mac.S2FP8MAC``) with its decode tables
replaced by the fixed bit-field decode of a plain format, so the synthesis figures isolate
what the S2FP8 tables cost::

      operands (a, b words of the format, first, last)     init (FP32, with `first`)
        │
   ┌────────────┐
   │ widen A, B │  stage D: fixed bit-field decode to FP32, registered     (1 cycle)
   └─────┬──────┘           (FP32 operands: the register only)
         ▼
   ┌───────────┐
   │ FPMul (P) │   M stages: P x P significand multiply, P = the format's
   └─────┬─────┘   precision (24 FP32, 8 BF16, 3 E5M2)          (M cycles, 2 compact)
         ▼
   ┌───────────┐  ┌─────┐
   │   FPAdd   │◄─┤ acc │   the S2FP8 MAC's accumulator loop (``hw.mac.accumulator_loop``):
   └───────────┘  └─────┘   one combinational FP32 add (L = 1), or L stages, L sums

Same accumulator, same latency (``latency``), same FP32 result stream as the S2FP8 MAC
of the same depth; the operand stream has no table to wait for, so its ``ready`` is
always high in the compact unit (with L > 1, in each beat's slot phase). ``BASELINE_FORMATS`` lists the three: FP32 operands (the "no 8-bit
format" reference), E5M2 (S2FP8's base format without the squeeze/shift, i.e. plain
FP8) and BF16.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from pysim.numerics.formats import BF16, E5M2, FP32, FloatFormat
from pysim.perf import arch

from .fp32 import FPAdd, FPMul
from .layouts import FP32Layout, float_layout
from .mac import ResultSignature, SequenceLayout, accumulator_loop, slot_turn
from .pipeline import PipelineDepth, delay

#: name -> operand format of the baseline MACs ``s2fp8 synth`` compares against.
BASELINE_FORMATS = {"fp32": FP32, "bf16": BF16, "e5m2": E5M2}


def _check_format(fmt) -> FloatFormat:
    if not isinstance(fmt, FloatFormat):
        raise TypeError(f"fmt must be a FloatFormat, not {fmt!r}")
    if not fmt.ieee_specials:
        raise ValueError(f"{fmt.name}: formats without IEEE Inf/NaN encodings are not supported")
    if fmt.exp_bits > FP32.exp_bits or fmt.frac_bits > FP32.frac_bits:
        raise ValueError(f"{fmt.name} does not fit in FP32 (exponent {fmt.exp_bits} bits, "
                         f"fraction {fmt.frac_bits} bits)")
    if fmt.exp_bits < FP32.exp_bits and fmt.emin - fmt.frac_bits < FP32.emin:
        raise ValueError(f"{fmt.name}'s subnormals are not FP32 normals")
    return fmt


class WidenToFP32(wiring.Component):
    """Combinational fixed decode of a narrower IEEE-style format to the FP32 word of the
    same value (exact: every value of the format is an FP32 value).

    Fraction bits move to the top of the FP32 fraction; the exponent is re-biased. With
    FP32's exponent width (BF16) subnormals stay subnormal and the fields are copied. With
    a narrower exponent (E5M2) a subnormal becomes an FP32 normal: a priority encoder over
    the few fraction bits finds the leading one. Inf and NaN keep the all-ones exponent
    (a NaN's payload moves with the fraction, so it stays a NaN).

    Ports: ``operand`` (the format's word), ``value`` (FP32).
    """

    def __init__(self, *, fmt: FloatFormat):
        self._fmt = _check_format(fmt)
        super().__init__({"operand": In(float_layout(fmt)), "value": Out(FP32Layout)})

    @property
    def fmt(self) -> FloatFormat:
        return self._fmt

    def elaborate(self, platform):
        m = Module()
        fmt, op, value = self._fmt, self.operand, self.value
        frac_shift = FP32.frac_bits - fmt.frac_bits
        m.d.comb += value.sign.eq(op.sign)
        if fmt.exp_bits == FP32.exp_bits:
            m.d.comb += [value.exp.eq(op.exp), value.frac.eq(op.frac << frac_shift)]
            return m

        rebias = FP32.bias - fmt.bias
        with m.If(op.exp == fmt.exp_max_code):            # Inf, NaN
            m.d.comb += [value.exp.eq(FP32.exp_max_code), value.frac.eq(op.frac << frac_shift)]
        with m.Elif(op.exp != 0):                          # normal
            m.d.comb += [value.exp.eq(op.exp + rebias), value.frac.eq(op.frac << frac_shift)]
        with m.Else():                                     # zero or subnormal
            # the leading one at fraction bit i: value = 1.f * 2^(emin - frac_bits + i);
            # the last assignment in this loop (highest i) wins, as a priority encoder
            for i in range(fmt.frac_bits):
                with m.If(op.frac[i]):
                    m.d.comb += [
                        value.exp.eq(fmt.emin - fmt.frac_bits + i + FP32.bias),
                        value.frac.eq((op.frac << (FP32.frac_bits - i)) & FP32.frac_mask),
                    ]
        return m


class BaselineMAC(PipelineDepth, wiring.Component):
    """Multiply-accumulate of ``fmt`` operands with the S2FP8 MAC's accumulator.

    Parameters (keyword-only):
    - ``fmt``: operand format (a ``pysim.numerics.formats.FloatFormat`` with IEEE
      specials that fits in FP32, e.g. ``BASELINE_FORMATS[...]``).
    - ``acc_stages``, ``mul_stages``: the pipeline depth, as :class:`hw.mac.S2FP8MAC`
      (L interleaved sequences, beat n in slot n mod L).

    Ports: ``operands`` (stream of a, b words, first, last; ready except in the cycles
    whose phase is not the next beat's slot, so always for L = 1), ``init`` (FP32,
    sampled with the `first` beat), ``result`` (FP32 sums, one per `last` beat).
    """

    def __init__(self, *, fmt: FloatFormat, acc_stages: int = 1, mul_stages: int | None = None):
        self._fmt = _check_format(fmt)
        self._set_depth("BaselineMAC", acc_stages, mul_stages)
        word = float_layout(fmt)
        self._operand_layout = data.StructLayout({"a": word, "b": word, "first": 1, "last": 1})
        super().__init__({
            # not always_ready: a constant port cannot be a Verilog port
            "operands": In(stream.Signature(self._operand_layout)),
            "init": In(FP32Layout),
            "result": Out(ResultSignature),
        })

    @property
    def fmt(self) -> FloatFormat:
        return self._fmt

    @property
    def operand_layout(self) -> data.StructLayout:
        return self._operand_layout

    @property
    def latency(self) -> int:
        """Cycles from accepting a `last` beat to ``result.valid`` (as the S2FP8 MAC)."""
        return arch.mac_latency(self._acc_stages, self._mul_stages)

    def elaborate(self, platform):
        m = Module()
        slots = self._acc_stages
        m.submodules.widen_a = widen_a = WidenToFP32(fmt=self._fmt)
        m.submodules.widen_b = widen_b = WidenToFP32(fmt=self._fmt)
        m.submodules.multiply = multiply = FPMul(sig_bits=self._fmt.precision,
                                                 stages=self._mul_stages)
        m.submodules.add = add = FPAdd(stages=slots - 1)

        # --- Stage D: fixed decode, registered like the S2FP8 table read -----------------
        beat = self.operands.payload
        accept = Signal()
        turn, _ = slot_turn(m, slots, restart=0, accept=accept)
        m.d.comb += [
            self.operands.ready.eq(turn),
            accept.eq(self.operands.valid & self.operands.ready),
        ]
        m.d.comb += [widen_a.operand.eq(beat.a), widen_b.operand.eq(beat.b)]
        decoded_a = delay(m, widen_a.value, arch.DECODE_LATENCY, "decoded_a")
        decoded_b = delay(m, widen_b.value, arch.DECODE_LATENCY, "decoded_b")
        decoded_valid = delay(m, accept, arch.DECODE_LATENCY, "decoded_valid")
        sequence = Signal(SequenceLayout)
        m.d.comb += [sequence.first.eq(beat.first), sequence.last.eq(beat.last),
                     sequence.init.eq(self.init)]
        sequence = delay(m, sequence, arch.DECODE_LATENCY, "sequence_decode")

        # --- Stages M: multiply ---------------------------------------------------------
        m.d.comb += [multiply.a.eq(decoded_a), multiply.b.eq(decoded_b),
                     multiply.valid_in.eq(decoded_valid)]
        in_flight = delay(m, sequence, multiply.latency, "sequence")

        # --- Stages A: accumulate (the S2FP8 MAC's loop) --------------------------------
        acc = accumulator_loop(m, add, product=multiply.result, valid=multiply.valid_out,
                               first=in_flight.first, start=in_flight.init)
        done = delay(m, multiply.valid_out & in_flight.last, slots - 1, "last_sum")
        m.d.sync += self.result.valid.eq(done)
        m.d.comb += self.result.payload.eq(acc)
        return m
