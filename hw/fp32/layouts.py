"""Intermediate-value layouts of the binary32 datapath (``amaranth.lib.data``).

Every width is derived from :data:`pysim.numerics.formats.FP32`; nothing here spells out 23, 8
or 127. Fields are listed LSB first, as :class:`amaranth.lib.data.Struct` lays them out.

Conventions shared by all stages:

- ``exp`` is always the *unbiased* exponent of the most significant bit of the
  significand field it travels with, as a two's-complement ``signed(EXP_WIDTH)``.
- Significands are plain unsigned integers, MSB first; the binary point sits right
  below the MSB (value = sig * 2**(exp - (len(sig) - 1))).

(No ``from __future__ import annotations`` here: ``data.Struct`` reads its field shapes
from the evaluated class annotations.)
"""
from amaranth.hdl import signed
from amaranth.lib import data

from pysim.numerics.formats import FP32

__all__ = [
    "SIG_BITS", "EXP_WIDTH", "ALIGN_EXTRA_BITS", "ALIGN_BITS", "SUM_BITS",
    "FloatClass", "Special", "Unpacked", "Aligned", "PreRound", "wide_layout",
]

#: Significand width of a binary32 number, hidden bit included (P).
SIG_BITS = FP32.precision

# Internal exponent range. The extreme values are reached by the multiplier: the
# exponent sum of two normalized subnormals (down to emin - P each, zero included) and of
# two Inf/NaN encodings (emax + 1 each), plus the one-bit carry of the product and of
# rounding. ``EXP_WIDTH`` holds all of them, with the sign bit.
_EXP_MAGNITUDE = 2 * (FP32.bias + SIG_BITS + 1) + 2
#: Width of every internal signed exponent.
EXP_WIDTH = _EXP_MAGNITUDE.bit_length() + 1

#: Guard, round and sticky bits below the aligned significands of the adder.
ALIGN_EXTRA_BITS = 3
#: Width of the aligned adder significands: P bits + guard + round + sticky.
ALIGN_BITS = SIG_BITS + ALIGN_EXTRA_BITS
#: Width of the adder's sum: one carry bit above the aligned operands.
SUM_BITS = ALIGN_BITS + 1


class FloatClass(data.Struct):
    """IEEE 754 class of an unpacked operand (one-hot for finite nonzero normals: all 0)."""
    zero: 1
    subnormal: 1
    inf: 1
    nan: 1


class Special(data.Struct):
    """Special-result flags carried down the datapath; they override the number path in
    :class:`hw.fp32.round.Round`. ``nan`` wins over ``inf``."""
    nan: 1
    inf: 1


class Unpacked(data.Struct):
    """An unpacked binary32 operand (output of :class:`hw.fp32.unpack.Unpack`).

    ``sig`` is the P-bit significand with the hidden bit made explicit; ``exp`` the
    unbiased exponent of its MSB. With ``Unpack(normalize=True)`` a nonzero finite
    operand always has ``sig[-1] == 1`` (subnormals are shifted up and ``exp`` goes below
    emin); with ``normalize=False`` a subnormal keeps ``exp == emin`` and a leading 0.
    A zero has ``sig == 0``. Inf and NaN keep their raw fields; only ``cls`` matters.
    """
    sig: SIG_BITS
    exp: signed(EXP_WIDTH)
    sign: 1
    cls: FloatClass


class Aligned(data.Struct):
    """Adder operands after swap and alignment (output of :class:`hw.fp32.align.Align`).

    ``big`` is the larger-magnitude significand, ``small`` the other one shifted right by
    the exponent difference; both carry ``ALIGN_EXTRA_BITS`` (guard, round, sticky)
    below the P significand bits, and ``small``'s LSB is the OR of every bit shifted out
    (sticky jamming). ``exp`` is the exponent of ``big``'s hidden-bit position, ``sign``
    the sign of a nonzero result (the sign of ``big``), ``subtract`` whether the
    magnitudes are subtracted, ``zero_sign`` the sign of an exact zero sum under RNE.
    """
    big: ALIGN_BITS
    small: ALIGN_BITS
    exp: signed(EXP_WIDTH)
    sign: 1
    subtract: 1
    zero_sign: 1
    special: Special


class PreRound(data.Struct):
    """A result ready to be rounded (output of Normalize, input of Round).

    Value = (sig + round/2 + sticky*epsilon) * 2**(exp - (P - 1)). Invariant given by
    :class:`hw.fp32.normalize.Normalize`: ``exp >= emin``, and ``sig[-1] == 1`` unless
    ``exp == emin`` (subnormal or zero result).
    """
    sticky: 1
    round: 1
    sig: SIG_BITS
    exp: signed(EXP_WIDTH)
    sign: 1
    special: Special


_WIDE_LAYOUTS = {}


def wide_layout(width: int) -> data.StructLayout:
    """An exact (up to ``sticky``) wide result before normalization: the significand
    product of the multiplier, or the sum of the adder (input of Normalize).

    ``sig`` is ``width`` bits, ``exp`` the exponent of its MSB position (which may be 0),
    ``sticky`` the OR of any nonzero bits already dropped below ``sig``.
    """
    if width not in _WIDE_LAYOUTS:
        _WIDE_LAYOUTS[width] = data.StructLayout({
            "sticky": 1,
            "sig": width,
            "exp": signed(EXP_WIDTH),
            "sign": 1,
            "special": Special,
        })
    return _WIDE_LAYOUTS[width]
