"""The one definition of every number format and S2FP8 constant in the project.

``pysim`` (golden model), ``hw`` (Amaranth RTL) and the tests all read their field
widths, biases and special encodings from here; nothing else spells them out.
"""
from __future__ import annotations

from dataclasses import dataclass

from pysim.validate import is_int


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format: 1 sign bit, ``exp_bits``, ``frac_bits`` stored fraction bits.

    ``ieee_specials``: the all-ones exponent encodes Inf (fraction 0) and NaN (fraction != 0),
    as in IEEE 754. Formats without it (E4M3 "fn") use only the all-ones code as NaN.
    """

    name: str
    exp_bits: int
    frac_bits: int
    ieee_specials: bool = True

    @property
    def width(self) -> int:
        return 1 + self.exp_bits + self.frac_bits

    @property
    def precision(self) -> int:
        """Significant bits of a normal number (hidden bit included)."""
        return self.frac_bits + 1

    @property
    def bias(self) -> int:
        return (1 << (self.exp_bits - 1)) - 1

    @property
    def exp_max_code(self) -> int:
        return (1 << self.exp_bits) - 1

    @property
    def emin(self) -> int:
        """Unbiased exponent of the smallest normal number."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Unbiased exponent of the largest finite number."""
        if self.ieee_specials:
            return self.exp_max_code - 1 - self.bias
        return self.exp_max_code - self.bias

    @property
    def subnormal_quantum_exp(self) -> int:
        """log2 of the smallest subnormal (the spacing of the subnormal grid)."""
        return self.emin - self.frac_bits

    @property
    def max_finite(self) -> float:
        if self.ieee_specials:
            return (2.0 - 2.0 ** -self.frac_bits) * 2.0 ** self.emax
        # all-ones code is NaN: the largest finite has fraction all-ones minus one
        return (2.0 - 2.0 ** (1 - self.frac_bits)) * 2.0 ** self.emax

    @property
    def sign_mask(self) -> int:
        return 1 << (self.width - 1)

    @property
    def magnitude_mask(self) -> int:
        return self.sign_mask - 1

    @property
    def frac_mask(self) -> int:
        return (1 << self.frac_bits) - 1

    @property
    def inf_bits(self) -> int:
        """Bit pattern of +Inf (IEEE-special formats only)."""
        assert self.ieee_specials, f"{self.name} has no Inf"
        return self.exp_max_code << self.frac_bits

    @property
    def canonical_nan_bits(self) -> int:
        """The one quiet NaN this project ever produces: positive, MSB of the fraction set."""
        if self.ieee_specials:
            return self.inf_bits | (1 << (self.frac_bits - 1))
        return self.magnitude_mask


E5M2 = FloatFormat("E5M2", exp_bits=5, frac_bits=2)
E4M3 = FloatFormat("E4M3", exp_bits=4, frac_bits=3, ieee_specials=False)
FP32 = FloatFormat("FP32", exp_bits=8, frac_bits=23)
#: 16-bit formats the memory model prices side by side with S2FP8 (pysim.perf.formats_cost)
BF16 = FloatFormat("BF16", exp_bits=8, frac_bits=7)
FP16 = FloatFormat("FP16", exp_bits=5, frac_bits=10)

# --- S2FP8 ----------------------------------------------------------------------------
#: The 8-bit base format of S2FP8.
S2FP8_BASE = E5M2
#: After squeeze and shift, the nonzero magnitudes have mean(log2|Y|) = 0 ...
S2FP8_TARGET_MEAN_LOG2 = 0.0
#: ... and max(log2|Y|) = 15 (the paper's Eq. 3-4).
S2FP8_TARGET_MAX_LOG2 = 15.0
#: Entries of one decode table: one per magnitude (the code without its sign bit).
TABLE_ENTRIES = 1 << (S2FP8_BASE.width - 1)
#: Address width of a decode table.
TABLE_ADDR_BITS = S2FP8_BASE.width - 1
#: Width of the decoded operand significand, hidden bit included: the ``mant_bits`` range.
MANT_BITS_MIN = 1
MANT_BITS_MAX = FP32.precision


def check_mant_bits(mant_bits) -> int:
    """Validate the decoded-significand width W (shared by pysim and hw)."""
    if not is_int(mant_bits):
        raise TypeError(f"mant_bits must be an int in {MANT_BITS_MIN}..{MANT_BITS_MAX}, "
                        f"not {mant_bits!r}")
    if not MANT_BITS_MIN <= mant_bits <= MANT_BITS_MAX:
        raise ValueError(f"mant_bits must be in {MANT_BITS_MIN}..{MANT_BITS_MAX}, "
                         f"not {mant_bits}")
    return int(mant_bits)
