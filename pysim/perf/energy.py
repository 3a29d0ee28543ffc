"""Energy per DRAM byte, per SRAM byte (by buffer size) and per MAC (by operand format).

Default figures: M. Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014, 45 nm CMOS at 0.9 V (the table Eyeriss and Accelergy start from):

=============================  =========================  ===========================
operation                      published                  used here
=============================  =========================  ===========================
DRAM access, 64 bits           1.3 - 2.6 nJ               1300 pJ / 8 B = 162.5 pJ/B
SRAM read, 64 bits, 8 KB       10 pJ                      1.25 pJ/B
SRAM read, 64 bits, 32 KB      20 pJ                      2.5 pJ/B
SRAM read, 64 bits, 1 MB       100 pJ                     12.5 pJ/B
FP32 multiply / add            3.7 pJ / 0.9 pJ
FP16 multiply / add            1.1 pJ / 0.4 pJ
=============================  =========================  ===========================

- SRAM: pJ per byte read or written, interpolated log-log between the three sizes
  (and extrapolated with the nearest segment's slope); writes cost the same as reads.
- MAC: one multiply of p-bit significands plus one FP32 accumulate (0.9 pJ: the array
  and the 16-bit arrays it is compared with all accumulate in FP32). The multiply is a
  power law through Horowitz's two points, E(p) = 3.7 pJ * (p / 24) ** 1.555 (FP32,
  p = 24, and FP16, p = 11). p is the array's W (``mant_bits``) for the 8-bit
  table-decoded formats (the RTL multiplies W-bit decoded significands, whatever the
  code), and the format's own precision for bf16 (8), fp16 (11) and fp32 (24).
- Not counted: decode-table reads (R + C per beat from 512-byte tables), control, clock
  tree, leakage.

Every figure can be overridden from the accelerator TOML (``[energy]``, docs/memory.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from pysim.numerics.formats import FP16, FP32

#: Horowitz ISSCC 2014, 45 nm: 64-bit DRAM access, low end of 1.3-2.6 nJ
DRAM_PJ_PER_BYTE = 1300.0 / 8
#: (buffer bytes, pJ per byte) from the 64-bit SRAM reads of 8 KB, 32 KB and 1 MB
SRAM_PJ_PER_BYTE = ((8 << 10, 10.0 / 8), (32 << 10, 20.0 / 8), (1 << 20, 100.0 / 8))
FP32_MUL_PJ, FP32_ADD_PJ = 3.7, 0.9
FP16_MUL_PJ = 1.1
#: exponent of the multiplier power law through the FP32 and FP16 points (1.555)
MUL_EXPONENT = math.log(FP32_MUL_PJ / FP16_MUL_PJ) / math.log(FP32.precision / FP16.precision)


def multiply_pj(precision: int) -> float:
    """Energy of one multiply of ``precision``-bit significands (power law, see above)."""
    return FP32_MUL_PJ * (precision / FP32.precision) ** MUL_EXPONENT


@dataclass(frozen=True)
class EnergyTable:
    """Energy figures in pJ; ``mac_pj`` maps an operand format to an override of the
    per-MAC energy (otherwise multiply_pj(p) + accumulate_pj)."""

    dram_pj_per_byte: float = DRAM_PJ_PER_BYTE
    sram_pj_per_byte: tuple = SRAM_PJ_PER_BYTE
    accumulate_pj: float = FP32_ADD_PJ
    mac_pj: dict = field(default_factory=dict)

    def sram(self, size_bytes) -> float:
        """pJ per byte accessed in a buffer of ``size_bytes`` (log-log interpolation)."""
        points = self.sram_pj_per_byte
        if len(points) == 1:
            return float(points[0][1])
        size = max(float(size_bytes), 1.0)
        # the segment containing size, or the nearest end segment (extrapolation)
        index = 0
        while index < len(points) - 2 and size > points[index + 1][0]:
            index += 1
        (s0, e0), (s1, e1) = points[index], points[index + 1]
        slope = math.log(e1 / e0) / math.log(s1 / s0)
        return e0 * (size / s0) ** slope

    def mac(self, fmt, mant_bits: int) -> float:
        """pJ per MAC with operands in ``fmt`` (a FormatCost) on an array of W bits."""
        if fmt.name in self.mac_pj:
            return float(self.mac_pj[fmt.name])
        precision = mant_bits if fmt.table_decoded else fmt.element.precision
        return multiply_pj(precision) + self.accumulate_pj
