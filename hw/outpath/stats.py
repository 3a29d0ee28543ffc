"""Streaming statistics unit: C FP32 values a beat, every cycle, one result per tensor
(bit-exact with :func:`pysim.numerics.outpath.statistics`).

::

    beat (C values, first, last) ──► C x Log2Unit (2 cycles) ──► LaneReduce (1) ──►
        StatsAccumulate (1) ──► on the tensor's last beat: Log2Unit of the max (2) ──► result

Latency (``latency``): 6 cycles from the cycle the `last` beat is presented to the cycle
``result.valid`` is high; a new tensor may start the cycle after a `last` beat.
Zeros are neutral (a tensor is padded with zeros to a multiple of C); Inf/NaN are
counted in ``nonfinite`` and left out of the rest.
"""
from amaranth.hdl import Module, Mux
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from pysim.numerics.outpath import DEFAULT_LOG2, MAGNITUDE_BITS
from pysim.perf import arch

from ..pipeline import delay
from .layouts import (beat_signature, check_config, check_lanes, log2_layout, moments_layout,
                      stats_beat_layout, stats_result_layout, values_layout)
from .log2 import Log2Unit

_NOTHING_YET = (1 << MAGNITUDE_BITS) - 1   # min of an empty set: above every magnitude


def _max(a, b):
    return Mux(a > b, a, b)


def _min(a, b):
    return Mux(a < b, a, b)


class LaneReduce(wiring.Component):
    """One beat's C log2 results and magnitudes -> partial moments; registered (1 cycle).

    Ports: ``log2`` (C x log2_layout), ``values`` (the beat's FP32 values, for the
    magnitudes), ``valid_in``; ``moments`` (moments_layout), ``valid_out``.
    """

    latency = 1

    def __init__(self, *, lanes: int, config=DEFAULT_LOG2):
        self._lanes = check_lanes("LaneReduce", lanes)
        self._config = check_config("LaneReduce", config)
        super().__init__({
            "log2": In(data.ArrayLayout(log2_layout(config), lanes)),
            "values": In(values_layout(lanes)),
            "valid_in": In(1),
            "moments": Out(moments_layout(config)),
            "valid_out": Out(1),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    def elaborate(self, platform):
        m = Module()
        count, total, nonfinite, high, low = 0, 0, 0, None, None
        for lane in range(self._lanes):
            result = self.log2[lane]
            magnitude = self.values[lane].as_value()[:MAGNITUDE_BITS]
            count = count + result.nonzero
            nonfinite = nonfinite + result.nonfinite
            total = total + result.value       # 0 for zero and non-finite lanes
            lane_high = Mux(result.nonzero, magnitude, 0)
            lane_low = Mux(result.nonzero, magnitude, _NOTHING_YET)
            high = lane_high if high is None else _max(high, lane_high)
            low = lane_low if low is None else _min(low, lane_low)
        m.d.sync += [
            self.moments.count.eq(count),
            self.moments.total.eq(total),
            self.moments.max_magnitude.eq(high),
            self.moments.min_magnitude.eq(low),
            self.moments.nonfinite.eq(nonfinite),
            self.valid_out.eq(self.valid_in),
        ]
        return m


class StatsAccumulate(wiring.Component):
    """Running moments of one tensor: a `first` beat restarts them; registered (1 cycle).
    ``done`` is high the cycle after the `last` beat was added (``running`` then holds the
    whole tensor's moments, until the next beat arrives)."""

    latency = 1

    def __init__(self, *, config=DEFAULT_LOG2):
        self._config = check_config("StatsAccumulate", config)
        super().__init__({
            "moments": In(moments_layout(config)),
            "first": In(1),
            "last": In(1),
            "valid_in": In(1),
            "running": Out(moments_layout(config)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        new, old = self.moments, self.running
        with m.If(self.valid_in):
            with m.If(self.first):
                m.d.sync += old.eq(new)
            with m.Else():
                m.d.sync += [
                    old.count.eq(old.count + new.count),
                    old.total.eq(old.total + new.total),
                    old.max_magnitude.eq(_max(old.max_magnitude, new.max_magnitude)),
                    old.min_magnitude.eq(_min(old.min_magnitude, new.min_magnitude)),
                    old.nonfinite.eq(old.nonfinite + new.nonfinite),
                ]
        m.d.sync += self.done.eq(self.valid_in & self.last)
        return m


class StatisticsUnit(wiring.Component):
    """C lanes of FP32 values in (one beat a cycle, no back-pressure), per tensor:
    count, sum of log2, max/min magnitude, log2 of the max, non-finite count.

    Parameters (keyword-only): ``lanes`` (C, 1..64), ``config`` (Log2Config).
    Ports: ``beats`` (valid + payload: values, first, last), ``result`` (valid + payload
    stats_result_layout, valid one cycle per tensor, ``latency`` cycles after its `last`
    beat).
    """

    def __init__(self, *, lanes: int, config=DEFAULT_LOG2):
        self._lanes = check_lanes("StatisticsUnit", lanes)
        self._config = check_config("StatisticsUnit", config)
        super().__init__({
            "beats": In(beat_signature(stats_beat_layout(lanes))),
            "result": Out(beat_signature(stats_result_layout(config))),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def config(self):
        return self._config

    #: Cycles from the `last` beat to ``result.valid``: ``pysim.perf.arch.STATS_LATENCY``
    #: (the cycle model's number), = 2 x Log2Unit + LaneReduce + StatsAccumulate, which
    #: tests/test_hw_outpath.py measures in simulation.
    latency = arch.STATS_LATENCY

    def elaborate(self, platform):
        m = Module()
        config, beat = self._config, self.beats.payload
        m.submodules.reduce = reduce = LaneReduce(lanes=self._lanes, config=config)
        m.submodules.accumulate = accumulate = StatsAccumulate(config=config)
        log2_latency = Log2Unit.latency
        for lane in range(self._lanes):
            unit = Log2Unit(config=config)
            m.submodules[f"log2_{lane}"] = unit
            m.d.comb += [
                unit.value.eq(beat.values[lane]),
                unit.valid_in.eq(self.beats.valid),
                reduce.log2[lane].eq(unit.log2),
            ]
        m.d.comb += [
            reduce.values.eq(delay(m, beat.values, log2_latency, "values")),
            reduce.valid_in.eq(delay(m, self.beats.valid, log2_latency, "valid")),
        ]
        first = delay(m, beat.first, log2_latency + LaneReduce.latency, "first")
        last = delay(m, beat.last, log2_latency + LaneReduce.latency, "last")
        m.d.comb += [
            accumulate.moments.eq(reduce.moments),
            accumulate.valid_in.eq(reduce.valid_out),
            accumulate.first.eq(first),
            accumulate.last.eq(last),
        ]

        # --- the tensor's last beat is in: log2 of its max, the moments held beside it --
        m.submodules.max_log2 = max_log2 = Log2Unit(config=config)
        running = accumulate.running
        m.d.comb += [
            max_log2.value.as_value().eq(running.max_magnitude),   # sign 0
            max_log2.valid_in.eq(accumulate.done),
        ]
        held = delay(m, running, log2_latency, "held")
        out = self.result.payload
        empty = held.count == 0
        m.d.comb += [
            self.result.valid.eq(max_log2.valid_out),
            out.count.eq(held.count),
            out.total.eq(held.total),
            out.max_magnitude.eq(held.max_magnitude),
            out.min_magnitude.eq(Mux(empty, 0, held.min_magnitude)),
            out.max_log2.eq(max_log2.log2.value),
            out.nonfinite.eq(held.nonfinite),
        ]
        return m
