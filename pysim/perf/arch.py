"""Pipeline and array constants shared by the RTL (``hw``) and the cycle model.

The RTL components report these as their ``latency``; tests assert that they agree, and
the cycle model (``pysim.perf.cycles``) is written in terms of them.
"""

#: Cycles of an operand decode (synchronous 128-entry table read).
DECODE_LATENCY = 1
#: Cycles of the pipelined FP32 multiplier.
MUL_LATENCY = 2
#: Cycles of the accumulate stage (one combinational FP32 add into the accumulator register).
ACC_LATENCY = 1
#: Cycles from a result row entering the array's result FIFO to it being offered on ``c``.
RESULT_FIFO_LATENCY = 1
#: Cycles from accepting a beat to its product reaching the accumulator of PE(0, 0) and
#: the result register being loaded, plus the FIFO: the fixed part of every drain.
PIPELINE_CYCLES = DECODE_LATENCY + MUL_LATENCY + ACC_LATENCY + RESULT_FIFO_LATENCY
#: Cycles to write one decode table (one entry per cycle; A and B tables in parallel).
TABLE_LOAD_CYCLES = 128
#: Array sizes the systolic array supports (rows and columns).
ARRAY_DIM_MIN, ARRAY_DIM_MAX = 1, 64
#: Width of the array's per-GEMM beat count K.
K_BITS = 32


def result_drain_cycles(rows: int, cols: int) -> int:
    """Cycles from accepting the last beat of a tile to its last result row on ``c``
    (an always-ready consumer): the skew of the far corner plus the pipeline."""
    return (rows - 1) + (cols - 1) + PIPELINE_CYCLES
