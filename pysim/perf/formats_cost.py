"""Storage cost of each operand/output format: bytes per element and per-tensor metadata.

Element widths come from ``pysim.numerics.formats`` (the one source of every format).
Metadata, read from DRAM once per tensor (per GEMM instance):

- ``s2fp8``: the tensor's alpha and beta (two FP32 scalars) and the 128-entry FP32
  decode table the host computes from them and writes into the array's table port
  (``TABLE_ENTRIES`` x 4 bytes): 8 + 512 = 520 bytes per operand tensor;
- ``e5m2`` / ``e4m3`` (plain FP8, no scaling): the decode table is the same for every
  tensor (a constant, loaded once at power-up), so no per-tensor metadata;
- ``bf16``, ``fp16``, ``fp32``: none.

Output formats are the ones the array can write today: ``fp32`` (its native result) and
``bf16``/``fp16`` (rounded on the way out). ``s2fp8`` output needs the output-path issue
(statistics of the whole result tensor before it can be encoded) and is rejected.
"""
from __future__ import annotations

from dataclasses import dataclass

from pysim.errors import BadInput
from pysim.numerics.formats import (BF16, E4M3, E5M2, FP16, FP32, S2FP8_BASE,
                                    TABLE_ENTRIES, FloatFormat)

BITS_PER_BYTE = 8


@dataclass(frozen=True)
class FormatCost:
    """One storage format as the memory model sees it."""

    name: str
    element: FloatFormat           # the stored element (S2FP8: its 8-bit base format)
    metadata_bytes: int            # per tensor
    table_decoded: bool            # 8-bit codes decoded through the array's tables

    @property
    def element_bytes(self) -> int:
        return self.element.width // BITS_PER_BYTE


_FP32_BYTES = FP32.width // BITS_PER_BYTE
#: alpha and beta (FP32 each) + the decode table (TABLE_ENTRIES FP32 entries)
S2FP8_METADATA_BYTES = 2 * _FP32_BYTES + TABLE_ENTRIES * _FP32_BYTES

OPERAND_FORMATS: dict[str, FormatCost] = {
    "s2fp8": FormatCost("s2fp8", S2FP8_BASE, S2FP8_METADATA_BYTES, True),
    "e5m2": FormatCost("e5m2", E5M2, 0, True),
    "e4m3": FormatCost("e4m3", E4M3, 0, True),
    "bf16": FormatCost("bf16", BF16, 0, False),
    "fp16": FormatCost("fp16", FP16, 0, False),
    "fp32": FormatCost("fp32", FP32, 0, False),
}
OUTPUT_FORMATS = ("fp32", "bf16", "fp16")


def operand_format(name, where: str = "operand format") -> FormatCost:
    """``name`` -> :class:`FormatCost`, or a one-line :class:`BadInput`."""
    if name not in OPERAND_FORMATS:
        raise BadInput(f"{where}: unknown format {name!r} (expected one of "
                       f"{', '.join(OPERAND_FORMATS)})")
    return OPERAND_FORMATS[name]


def output_format(name, where: str = "output format") -> FormatCost:
    if name == "s2fp8":
        raise BadInput(f"{where}: 's2fp8' output is not supported yet (the array writes FP32; "
                       f"encoding results needs the output path); use one of "
                       f"{', '.join(OUTPUT_FORMATS)}")
    if name not in OUTPUT_FORMATS:
        raise BadInput(f"{where}: unknown output format {name!r} (expected one of "
                       f"{', '.join(OUTPUT_FORMATS)})")
    return OPERAND_FORMATS[name]
