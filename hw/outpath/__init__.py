"""The S2FP8 output path: FP32 results -> statistics -> (scalar step) -> S2FP8 codes.

Bit-exact with :mod:`pysim.numerics.outpath` (docs/datapath.md, "Output path")::

    log2.Log2Lookup       FP32 -> exponent, segment of the log2 ROM, weight   (1 cycle)
    log2.Log2Interpolate  base + slope * weight, exponent added                (1 cycle)
    stats.LaneReduce      C lanes -> count, sum of log2, max/min magnitude     (1 cycle)
    stats.StatsAccumulate running count/sum/max/min over the beats of a tensor (1 cycle)
    stats.StatisticsUnit  C lanes of Log2Unit + the two stages above + log2 of the max
    encoder.SearchStage   one step of the 7-step threshold search              (1 cycle)
    encoder.ThresholdEncoder  128-entry threshold registers, C lanes x 7 SearchStages
    top.OutputPath        the statistics unit and the encoder side by side (one Verilog top)

The scalar step between the two passes (alpha, beta, threshold and decode tables from
the statistics) is a controller routine: :func:`pysim.numerics.outpath.scalar_step`.
Latencies are ``pysim.perf.arch.STATS_LATENCY`` and ``ENCODE_LATENCY`` (the cycle model's
numbers). With the array and an FP32 output buffer the output path makes the layer engine,
:class:`hw.engine.S2FP8LayerEngine`.
"""
from .encoder import SearchStage, ThresholdEncoder
from .log2 import Log2Interpolate, Log2Lookup, Log2Unit
from .stats import LaneReduce, StatisticsUnit, StatsAccumulate
from .top import OutputPath

__all__ = ["Log2Lookup", "Log2Interpolate", "Log2Unit", "LaneReduce", "StatsAccumulate",
           "StatisticsUnit", "SearchStage", "ThresholdEncoder", "OutputPath"]
