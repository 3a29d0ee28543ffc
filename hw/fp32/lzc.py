"""Leading-zero counter, shared by Unpack (subnormal inputs) and Normalize."""
from __future__ import annotations

from amaranth.hdl import Module
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
        # Priority encoder: bits are visited LSB first, so the highest set bit, assigned
        # last, wins.
        m.d.comb += self.count.eq(self._width)
        for index in range(self._width):
            with m.If(self.value[index]):
                m.d.comb += self.count.eq(self._width - 1 - index)
        return m
