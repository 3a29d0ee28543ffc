"""S2FP8 operand decoder: 8-bit code -> FP32 value through the tensor's decode table.

The table (``pysim.numerics.s2fp8.decode_table``) holds the FP32 value of every code magnitude for
one tensor's alpha, beta and significand width; the decoder reads it with the code's 7
magnitude bits and flips the sign bit with the code's sign bit. Latency 1 (a synchronous
table read).
"""

from amaranth import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from pysim.numerics.formats import TABLE_ADDR_BITS, TABLE_ENTRIES
from pysim.perf import arch

from .layouts import CodeLayout, FP32Layout


class TableWriteSignature(wiring.Signature):
    """A decode-table write port, as seen from the writer: ``en``, ``addr``, ``data``."""

    def __init__(self):
        super().__init__({
            "en": Out(1),
            "addr": Out(TABLE_ADDR_BITS),
            "data": Out(FP32Layout),
        })


class OperandDecoder(wiring.Component):
    """One decode table (128 x FP32) with a write port and a code -> value read path.

    Ports:
    - ``table``: write port (``en``, ``addr``, ``data``); the owner must not present a
      code in a cycle where ``table.en`` is high (the MAC deasserts its ``ready``).
    - ``code``, ``code_valid``: the S2FP8 code to decode.
    - ``value``, ``value_valid``: its FP32 value ``latency`` (``arch.DECODE_LATENCY``, the
      synchronous read port's one register) cycles later.
    """

    table: In(TableWriteSignature())
    code: In(CodeLayout)
    code_valid: In(1)
    value: Out(FP32Layout)
    value_valid: Out(1)

    latency = arch.DECODE_LATENCY

    def elaborate(self, platform):
        m = Module()
        m.submodules.table = table = memory.Memory(shape=FP32Layout, depth=TABLE_ENTRIES, init=[])
        write = table.write_port()
        read = table.read_port(domain="sync")
        m.d.comb += [
            write.en.eq(self.table.en),
            write.addr.eq(self.table.addr),
            write.data.eq(self.table.data),
            read.addr.eq(self.code.magnitude),
            read.en.eq(1),
        ]
        code_sign = Signal()  # the sign travels beside the table read
        m.d.sync += [
            code_sign.eq(self.code.sign),
            self.value_valid.eq(self.code_valid),
        ]
        m.d.comb += [
            self.value.eq(read.data),
            self.value.sign.eq(read.data.sign ^ code_sign),
        ]
        return m

