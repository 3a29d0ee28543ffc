"""Threshold encoder: C FP32 values a beat -> C S2FP8 codes, 7-stage pipeline (bit-exact
with :func:`pysim.numerics.outpath.encode_codes`).

The 128 threshold entries of the tensor (``pysim.numerics.outpath.threshold_table``) sit
in registers shared by every lane. Stage s (s = 0..6) decides code bit 6 - s: it compares
the value's magnitude bits with entry ``code | 2^(6 - s)``, where ``code`` holds the bits
decided so far, so stage s only ever reads the 2^s entries with that bit set and nothing
below: a 2^s-input mux per lane and stage, 127 entries read in all. Monotone in |x| by
construction (the entries are sorted).

Latency (``latency``): 7 cycles, one beat per cycle, no back-pressure. The controller
writes the table while the encoder is idle (``busy`` low): an entry written under a
value in flight would give that value a code from two tables.
"""
from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from pysim.numerics.formats import TABLE_ENTRIES
from pysim.numerics.outpath import MAGNITUDE_BITS, SEARCH_STEPS, THRESHOLD_BITS
from pysim.perf import arch
from pysim.validate import check_int

from .layouts import (SearchState, ThresholdWriteSignature, beat_signature, check_lanes,
                      codes_layout, values_layout)


def stage_entries(level: int) -> list[int]:
    """Table indices stage ``level`` reads, indexed by the code bits decided before it."""
    shift = SEARCH_STEPS - level
    return [(prefix << shift) | (1 << (shift - 1)) for prefix in range(1 << level)]


class SearchStage(wiring.Component):
    """Stage ``level`` of the search: set code bit ``6 - level`` if the magnitude is >=
    the entry its prefix selects; registered (1 cycle).

    Ports: ``entries`` (the 2^level thresholds of :func:`stage_entries`), ``state``
    (SearchState), ``valid_in``; ``next`` (SearchState), ``valid_out``.
    """

    latency = 1

    def __init__(self, *, level: int):
        self._level = check_int(level, "SearchStage: level", minimum=0,
                                maximum=SEARCH_STEPS - 1, error=ValueError)
        super().__init__({
            "entries": In(data.ArrayLayout(THRESHOLD_BITS, 1 << level)),
            "state": In(SearchState),
            "valid_in": In(1),
            "next": Out(SearchState),
            "valid_out": Out(1),
        })

    @property
    def level(self) -> int:
        return self._level

    def elaborate(self, platform):
        m = Module()
        bit = SEARCH_STEPS - 1 - self._level
        prefix = self.state.code[bit + 1:]              # the bits decided so far
        threshold = self.entries[prefix] if self._level else self.entries[0]
        reached = self.state.magnitude >= threshold
        m.d.sync += [
            self.next.eq(self.state),
            self.next.code[bit].eq(reached),
            self.valid_out.eq(self.valid_in),
        ]
        return m


class ThresholdEncoder(wiring.Component):
    """C lanes of FP32 values -> S2FP8 codes through the tensor's threshold table.

    Parameters (keyword-only): ``lanes`` (C, 1..64).
    Ports: ``table`` (write port: en, addr, data), ``values`` (valid + C FP32 values),
    ``codes`` (valid + C codes, ``latency`` cycles later), ``busy`` (a value in flight).
    """

    def __init__(self, *, lanes: int):
        self._lanes = check_lanes("ThresholdEncoder", lanes)
        super().__init__({
            "table": In(ThresholdWriteSignature()),
            "values": In(beat_signature(values_layout(lanes))),
            "codes": Out(beat_signature(codes_layout(lanes))),
            "busy": Out(1),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    #: Cycles from a beat of ``values`` to its beat of ``codes``:
    #: ``pysim.perf.arch.ENCODE_LATENCY`` (the cycle model's number), one SearchStage per
    #: code bit, measured in simulation by tests/test_hw_outpath.py.
    latency = arch.ENCODE_LATENCY

    def elaborate(self, platform):
        m = Module()
        table = Signal(data.ArrayLayout(THRESHOLD_BITS, TABLE_ENTRIES))
        with m.If(self.table.en):
            m.d.sync += table[self.table.addr].eq(self.table.data)

        valids = []
        for lane in range(self._lanes):
            value = self.values.payload[lane]
            state = Signal(SearchState, name=f"lane{lane}_in")
            m.d.comb += [
                state.magnitude.eq(value.as_value()[:MAGNITUDE_BITS]),
                state.sign.eq(value.sign),
                state.code.eq(0),
            ]
            valid = self.values.valid
            for level in range(SEARCH_STEPS):
                stage = SearchStage(level=level)
                m.submodules[f"lane{lane}_step{level}"] = stage
                for slot, index in enumerate(stage_entries(level)):
                    m.d.comb += stage.entries[slot].eq(table[index])
                m.d.comb += [stage.state.eq(state), stage.valid_in.eq(valid)]
                state, valid = stage.next, stage.valid_out
                if lane == 0:
                    valids.append(stage.valid_in)
            m.d.comb += [
                self.codes.payload[lane].magnitude.eq(state.code),
                self.codes.payload[lane].sign.eq(state.sign),
            ]
            if lane == 0:
                m.d.comb += self.codes.valid.eq(valid)
        busy = 0
        for v in valids[1:] + [self.codes.valid]:
            busy = busy | v
        m.d.comb += self.busy.eq(busy)
        return m
