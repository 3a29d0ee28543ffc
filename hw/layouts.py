"""Amaranth bit layouts of the project's formats, built from ``pysim.numerics.formats`` (the one
definition of every width). Fields are listed LSB first, as ``data.StructLayout`` lays
them out."""
from __future__ import annotations

from amaranth.lib import data

from pysim.numerics.formats import E5M2, FP32, TABLE_ADDR_BITS, FloatFormat


def float_layout(fmt: FloatFormat) -> data.StructLayout:
    """sign | exponent | fraction, as stored in memory."""
    return data.StructLayout({"frac": fmt.frac_bits, "exp": fmt.exp_bits, "sign": 1})


#: An IEEE 754 binary32 word.
FP32Layout = float_layout(FP32)
#: An 8-bit S2FP8 code: E5M2 fields; ``magnitude`` (the low 7 bits) addresses a decode table.
CodeLayout = data.StructLayout({"magnitude": TABLE_ADDR_BITS, "sign": 1})
assert CodeLayout.size == E5M2.width
