"""Fixed-point log2 of an FP32 magnitude, two pipeline stages (bit-exact with
:func:`pysim.numerics.outpath.log2_fixed`).

::

    value ─► Unpack (LZC for subnormals) ─► exponent | fraction
                                            segment = fraction >> interp_bits ─► ROM ─► base, slope
                                            weight  = fraction mod 2^interp_bits
             ════ register (Log2Lookup) ════
    exponent * 2^F + base + (slope * weight) >> interp_bits
             ════ register (Log2Interpolate) ════ ─► value, nonzero, nonfinite

The ROM holds ``2^table_bits`` entries of (frac_bits + slope_bits) bits: 1024 x 35 bits
with the default configuration. Zero, Inf and NaN give value 0 (the statistics ignore
them) with their class flags.
"""
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from pysim.numerics.formats import FP32
from pysim.numerics.outpath import DEFAULT_LOG2, log2_segments

from ..fp32 import Unpack
from ..layouts import FP32Layout
from .layouts import check_config, log2_layout, lookup_layout, segment_layout


class Log2Lookup(wiring.Component):
    """Stage 1: unpack (normalizing subnormals), read the segment's ROM entry; registered.

    Parameters (keyword-only): ``config`` (:class:`~pysim.numerics.outpath.Log2Config`).
    Ports: ``value`` (FP32), ``valid_in``; ``lookup`` (lookup_layout), ``valid_out``.
    """

    latency = 1

    def __init__(self, *, config=DEFAULT_LOG2):
        self._config = check_config("Log2Lookup", config)
        super().__init__({
            "value": In(FP32Layout),
            "valid_in": In(1),
            "lookup": Out(lookup_layout(config)),
            "valid_out": Out(1),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        config = self._config
        base, slope = log2_segments(config)
        m.submodules.rom = rom = memory.Memory(
            shape=segment_layout(config), depth=base.size,
            init=[{"base": int(b), "slope": int(s)} for b, s in zip(base, slope)])
        read = rom.read_port(domain="comb")
        m.submodules.unpack = unpack = Unpack(normalize=True)
        up = unpack.unpacked
        fraction = up.sig[:FP32.frac_bits]          # below the (explicit) hidden bit
        m.d.comb += [
            unpack.operand.eq(self.value),
            read.addr.eq(fraction[config.interp_bits:]),
        ]
        nonfinite = up.cls.inf | up.cls.nan
        m.d.sync += [
            self.lookup.exponent.eq(up.exp),
            self.lookup.segment.eq(read.data),
            self.lookup.weight.eq(fraction[:config.interp_bits]),
            self.lookup.nonzero.eq(~up.cls.zero & ~nonfinite),
            self.lookup.nonfinite.eq(nonfinite),
            self.valid_out.eq(self.valid_in),
        ]
        return m


class Log2Interpolate(wiring.Component):
    """Stage 2: ``exponent * 2^F + base + floor(slope * weight / 2^interp_bits)``; registered.

    Ports: ``lookup`` (from :class:`Log2Lookup`), ``valid_in``; ``log2`` (log2_layout),
    ``valid_out``.
    """

    latency = 1

    def __init__(self, *, config=DEFAULT_LOG2):
        self._config = check_config("Log2Interpolate", config)
        super().__init__({
            "lookup": In(lookup_layout(config)),
            "valid_in": In(1),
            "log2": Out(log2_layout(config)),
            "valid_out": Out(1),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        config, lookup = self._config, self.lookup
        step = Signal(config.frac_bits + 1)       # the slope share, < one segment's rise
        m.d.comb += step.eq((lookup.segment.slope * lookup.weight) >> config.interp_bits)
        value = (lookup.exponent << config.frac_bits) + lookup.segment.base + step
        m.d.sync += [
            self.log2.value.eq(Mux(lookup.nonzero, value, 0)),
            self.log2.nonzero.eq(lookup.nonzero),
            self.log2.nonfinite.eq(lookup.nonfinite),
            self.valid_out.eq(self.valid_in),
        ]
        return m


class Log2Unit(wiring.Component):
    """:class:`Log2Lookup` then :class:`Log2Interpolate`: FP32 in, fixed-point log2 out,
    ``latency`` = 2 cycles, a new value every cycle."""

    def __init__(self, *, config=DEFAULT_LOG2):
        self._config = check_config("Log2Unit", config)
        super().__init__({
            "value": In(FP32Layout),
            "valid_in": In(1),
            "log2": Out(log2_layout(config)),
            "valid_out": Out(1),
        })

    @property
    def config(self):
        return self._config

    latency = Log2Lookup.latency + Log2Interpolate.latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.lookup = lookup = Log2Lookup(config=self._config)
        m.submodules.interpolate = interpolate = Log2Interpolate(config=self._config)
        m.d.comb += [
            lookup.value.eq(self.value),
            lookup.valid_in.eq(self.valid_in),
            interpolate.lookup.eq(lookup.lookup),
            interpolate.valid_in.eq(lookup.valid_out),
            self.log2.eq(interpolate.log2),
            self.valid_out.eq(interpolate.valid_out),
        ]
        return m
