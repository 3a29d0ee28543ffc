"""Leading-zero counter, shared by Unpack (subnormal inputs) and Normalize."""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ._params import check_int

__all__ = ["LeadingZeroCount"]


class LeadingZeroCount(wiring.Component):
    """Combinational count of the leading zeros of ``value`` (``width`` for ``value == 0``).

    Parameters (keyword-only)
    -------------------------
    width : int >= 1
        Width of ``value``.

    Ports
    -----
    value : In(width)
    count : Out(range(width + 1))
    """

    def __init__(self, *, width: int):
        self._width = check_int("LeadingZeroCount", "width", width, 1)
        super().__init__({
            "value": In(self._width),
            "count": Out(range(self._width + 1)),
        })

    @property
    def width(self) -> int:
        return self._width

    def elaborate(self, platform):
        m = Module()
        # A tree, log2(width) levels deep: each node of 2^k bits is (all zero, count of its
        # leading zeros, k bits), made from its two halves; the high half's count wins
        # unless that half is all zero. (A priority chain over the bits, the first
        # version, was ~width muxes deep: the longest path of Normalize on ECP5.)
        size = 1 << (self._width - 1).bit_length()
        padded = Cat(Const(0, size - self._width), self.value)  # low padding never counts
        nodes = [(~padded[index], Const(0, 0)) for index in range(size)]  # LSB first
        while len(nodes) > 1:
            merged = []
            for low, high in zip(nodes[0::2], nodes[1::2]):
                (low_zero, low_count), (high_zero, high_count) = low, high
                count = Signal(len(high_count) + 1)
                m.d.comb += count.eq(Mux(high_zero, Cat(low_count, 1), Cat(high_count, 0)))
                merged.append((high_zero & low_zero, count))
            nodes = merged
        all_zero, count = nodes[0]
        m.d.comb += self.count.eq(Mux(all_zero, self._width, count))
        return m
