"""Tiny stand-ins with the port interface of ``hw.fp32.FPMul`` / ``FPAddUnit`` (result =
a XOR b, pipelined). Used only to exercise the test infrastructure itself (self-test of the
scoreboard's latency and mismatch detection), never as a model of the arithmetic."""
from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.layouts import FP32Layout


class XorPipe(wiring.Component):
    def __init__(self, latency: int = 2):
        self.latency = latency
        super().__init__({"a": In(FP32Layout), "b": In(FP32Layout), "valid_in": In(1),
                          "result": Out(FP32Layout), "valid_out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        data, valid = self.a.as_value() ^ self.b.as_value(), self.valid_in
        for stage in range(self.latency):
            next_data, next_valid = Signal(32, name=f"d{stage}"), Signal(name=f"v{stage}")
            m.d.sync += [next_data.eq(data), next_valid.eq(valid)]
            data, valid = next_data, next_valid
        m.d.comb += [self.result.eq(data), self.valid_out.eq(valid)]
        return m
