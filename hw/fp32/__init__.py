"""IEEE 754 binary32 arithmetic of the MAC datapath: pipelined multiplier and
combinational adder, built from one component per stage.

Stages (``hw.fp32.<module>``)::

    unpack.Unpack        FP32 word -> Unpacked (classify; optional LZC normalization)
    multiply.SigMul      W x W significand multiply, exponent add, special cases
    align.Align          swap by magnitude, shift right with guard/round/sticky
    addsub.SigAddSub     significand add/subtract, sign of zero
    normalize.Normalize  leading-zero count, subnormal-aware shift -> PreRound
    round.Round          RNE, overflow to Inf, specials, pack (shared by mul and add)

Public units: :class:`FPMul` (latency 2), :class:`FPAdd` (combinational),
:class:`FPAddUnit` (FPAdd + output register, latency 1).
"""
from .addsub import SigAddSub
from .align import Align
from .fpadd import FPAdd, FPAddUnit
from .fpmul import FPMul
from .lzc import LeadingZeroCount
from .multiply import SigMul
from .normalize import Normalize
from .round import Round
from .unpack import Unpack

__all__ = [
    "FPMul", "FPAdd", "FPAddUnit",
    "Unpack", "SigMul", "Align", "SigAddSub", "Normalize", "Round", "LeadingZeroCount",
]
