"""The output path as one block: the statistics unit and the encoder side by side.

The two passes of a tensor (docs/datapath.md, "Output path"): its FP32 results stream
through ``stats`` as the array produces them (and into the output buffer); the
controller runs the scalar step on ``stats_result`` and writes the threshold table; the
buffer then streams through ``encoder`` into S2FP8 codes. The two units share nothing,
so the statistics of tensor n+1 can run while tensor n is encoded.
"""
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from pysim.numerics.outpath import DEFAULT_LOG2

from .encoder import ThresholdEncoder
from .layouts import (ThresholdWriteSignature, beat_signature, check_config, check_lanes,
                      codes_layout, stats_beat_layout, stats_result_layout, values_layout)
from .stats import StatisticsUnit


class OutputPath(wiring.Component):
    """:class:`StatisticsUnit` + :class:`ThresholdEncoder` with ``lanes`` lanes each.

    Ports: ``stats_in``, ``stats_result`` (the statistics unit's ``beats``/``result``),
    ``thresholds``, ``encode_in``, ``codes``, ``encoder_busy`` (the encoder's).
    Latencies: ``stats_latency`` (6), ``encode_latency`` (7).
    """

    def __init__(self, *, lanes: int, config=DEFAULT_LOG2):
        self._lanes = check_lanes("OutputPath", lanes)
        self._config = check_config("OutputPath", config)
        super().__init__({
            "stats_in": In(beat_signature(stats_beat_layout(lanes))),
            "stats_result": Out(beat_signature(stats_result_layout(config))),
            "thresholds": In(ThresholdWriteSignature()),
            "encode_in": In(beat_signature(values_layout(lanes))),
            "codes": Out(beat_signature(codes_layout(lanes))),
            "encoder_busy": Out(1),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def config(self):
        return self._config

    @property
    def stats_latency(self) -> int:
        return StatisticsUnit.latency

    @property
    def encode_latency(self) -> int:
        return ThresholdEncoder.latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.stats = stats = StatisticsUnit(lanes=self._lanes, config=self._config)
        m.submodules.encoder = encoder = ThresholdEncoder(lanes=self._lanes)
        wiring.connect(m, wiring.flipped(self.stats_in), stats.beats)
        wiring.connect(m, stats.result, wiring.flipped(self.stats_result))
        wiring.connect(m, wiring.flipped(self.thresholds), encoder.table)
        wiring.connect(m, wiring.flipped(self.encode_in), encoder.values)
        wiring.connect(m, encoder.codes, wiring.flipped(self.codes))
        m.d.comb += self.encoder_busy.eq(encoder.busy)
        return m
