"""Bit layouts of the output path, derived from :mod:`pysim.numerics.outpath` (widths)
and :mod:`pysim.numerics.formats`. Fields are listed LSB first.

Layouts that depend on a :class:`~pysim.numerics.outpath.Log2Config` or a lane count are
built by functions (cached), so one configuration gives one layout object.
"""
from functools import lru_cache

from amaranth.hdl import signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from pysim.numerics.formats import TABLE_ADDR_BITS
from pysim.validate import check_int
from pysim.numerics.outpath import (COUNT_BITS, LOG2_INT_BITS, MAGNITUDE_BITS, SEARCH_STEPS,
                                    THRESHOLD_BITS, Log2Config)

from ..layouts import CodeLayout, FP32Layout


@lru_cache(maxsize=None)
def segment_layout(config: Log2Config) -> data.StructLayout:
    """One log2 ROM entry: the segment's start value and its slope (units 2^-frac_bits)."""
    return data.StructLayout({"base": config.frac_bits, "slope": config.slope_bits})


@lru_cache(maxsize=None)
def lookup_layout(config: Log2Config) -> data.StructLayout:
    """Between the two log2 stages: exponent, ROM entry, interpolation weight, class."""
    return data.StructLayout({
        "exponent": signed(LOG2_INT_BITS),
        "segment": segment_layout(config),
        "weight": config.interp_bits,
        "nonzero": 1,        # finite and nonzero: counted by the statistics
        "nonfinite": 1,      # Inf or NaN: flagged, left out
    })


@lru_cache(maxsize=None)
def log2_layout(config: Log2Config) -> data.StructLayout:
    """A log2 result: the fixed-point value (0 unless ``nonzero``) and the class."""
    return data.StructLayout({
        "value": signed(config.log2_bits),
        "nonzero": 1,
        "nonfinite": 1,
    })


@lru_cache(maxsize=None)
def moments_layout(config: Log2Config) -> data.StructLayout:
    """Partial or running statistics of nonzero finite values (the reduce and accumulate
    stages); ``min_magnitude`` is all ones while nothing has been counted."""
    return data.StructLayout({
        "count": COUNT_BITS,
        "total": signed(config.sum_bits),
        "max_magnitude": MAGNITUDE_BITS,
        "min_magnitude": MAGNITUDE_BITS,
        "nonfinite": COUNT_BITS,
    })


@lru_cache(maxsize=None)
def stats_result_layout(config: Log2Config) -> data.StructLayout:
    """What the statistics unit reports per tensor: :class:`pysim.numerics.outpath.HwStats`."""
    return data.StructLayout({
        "count": COUNT_BITS,
        "total": signed(config.sum_bits),
        "max_magnitude": MAGNITUDE_BITS,
        "min_magnitude": MAGNITUDE_BITS,
        "max_log2": signed(config.log2_bits),
        "nonfinite": COUNT_BITS,
    })


@lru_cache(maxsize=None)
def stats_beat_layout(lanes: int) -> data.StructLayout:
    """One beat into the statistics unit: C FP32 values, first/last beat of a tensor."""
    return data.StructLayout({"values": data.ArrayLayout(FP32Layout, lanes), "first": 1, "last": 1})


def values_layout(lanes: int) -> data.ArrayLayout:
    return data.ArrayLayout(FP32Layout, lanes)


def codes_layout(lanes: int) -> data.ArrayLayout:
    return data.ArrayLayout(CodeLayout, lanes)


#: The state of one value in the threshold search: its magnitude and sign, and the code
#: bits found so far (MSB first).
SearchState = data.StructLayout({"magnitude": MAGNITUDE_BITS, "sign": 1, "code": SEARCH_STEPS})


def beat_signature(layout) -> wiring.Signature:
    """A stream without back-pressure (the array's result stream): ``valid`` + ``payload``."""
    return wiring.Signature({"valid": Out(1), "payload": Out(layout)})


class ThresholdWriteSignature(wiring.Signature):
    """The encoder's threshold-table write port, seen from the writer."""

    def __init__(self):
        super().__init__({
            "en": Out(1),
            "addr": Out(TABLE_ADDR_BITS),
            "data": Out(THRESHOLD_BITS),
        })


#: Largest lane count accepted: far above any array width this project builds (32x32).
MAX_LANES = 64


def check_lanes(owner: str, lanes) -> int:
    return check_int(lanes, f"{owner}: lanes", minimum=1, maximum=MAX_LANES, error=ValueError)


def check_config(owner: str, config) -> Log2Config:
    if not isinstance(config, Log2Config):
        raise TypeError(f"{owner}: config must be a pysim.numerics.outpath.Log2Config, "
                        f"not {config!r}")
    return config


__all__ = ["segment_layout", "lookup_layout", "log2_layout", "moments_layout",
           "stats_result_layout", "stats_beat_layout", "values_layout", "codes_layout",
           "SearchState", "beat_signature", "ThresholdWriteSignature"]
