"""The array's configuration and pipeline latencies: the one source the RTL (``hw``), the
cycle model (``pysim.perf.cycles``), the regression names and Verilog tops read.

The RTL components declare their latency from the constants here (``OperandDecoder``,
``FPMul``, ``FPAddUnit``, ``S2FP8MAC``, the array's spacing, FIFO depth and drain);
tests/test_hw_array.py simulates the MAC and small arrays (amaranth.sim) and measures
latency and drain from the waveform, so a register added or removed in the RTL without
changing the number here fails there.
"""
from __future__ import annotations

from dataclasses import dataclass

from pysim.errors import ShapeError
from pysim.numerics.formats import E5M2, FP32, MANT_BITS_MAX, MANT_BITS_MIN, TABLE_ENTRIES
from pysim.validate import check_int

#: Cycles of an operand decode (synchronous decode-table read).
DECODE_LATENCY = 1
#: Cycles of the compact FP32 multiplier (two register stages: unpack + significand
#: multiply | normalize + round).
MUL_LATENCY = 2
#: Cycles of the compact accumulate stage (one combinational FP32 add into the
#: accumulator register).
ACC_LATENCY = 1
#: Cycles of the compact MAC from accepting a `last` beat to ``result.valid``.
MAC_LATENCY = DECODE_LATENCY + MUL_LATENCY + ACC_LATENCY
#: Cycles from a result row entering the array's result FIFO to it being offered on ``c``.
RESULT_FIFO_LATENCY = 1
#: Cycles from accepting a beat to its product reaching the accumulator of PE(0, 0) and
#: the result register being loaded, plus the FIFO (compact pipeline): the fixed part of
#: every drain. ``ArrayConfig.pipeline_latency`` is the general form.
PIPELINE_CYCLES = MAC_LATENCY + RESULT_FIFO_LATENCY
#: --- Pipeline depth (docs/silicon.md, "Lifting the clock") ----------------------------
#: Register stages the FP32 multiplier supports: 2 (compact), 3 (+ normalize | round),
#: 4 (+ unpack | significand multiply), 5 (+ inside normalize), 6 (+ its inputs: the
#: MAC's decode-table read ends in block RAM, whose clock-to-out is slow on ECP5).
#: ``hw.fp32.FPMul(stages=)``.
MUL_STAGES = (2, 3, 4, 5, 6)
#: Accumulator loop depths L: the FP32 adder split over L cycles (L - 1 registers inside
#: FPAdd, plus the accumulator register), L independent sums interleaved round-robin.
ACC_STAGES = (1, 2, 3, 4, 5, 6)
#: The multiplier depth that keeps up with each accumulator depth (its stages are no
#: longer than the adder's; measured on ECP5 with ``s2fp8 synth``, docs/silicon.md).
DEFAULT_MUL_STAGES = {1: 2, 2: 3, 3: 4, 4: 4, 5: 5, 6: 6}


#: The pipelined ("lifted clock") configuration the Verilog tops, synthesis blocks and
#: regression checks build besides the compact one (L = 1): the deepest loop, whose
#: stages are each shorter than the multiplier's (docs/silicon.md).
LIFTED_ACC_STAGES = max(ACC_STAGES)


def check_stages(acc_stages, mul_stages=None) -> tuple[int, int]:
    """Validate a pipeline depth: ``acc_stages`` L in ``ACC_STAGES`` and ``mul_stages`` in
    ``MUL_STAGES`` (default: ``DEFAULT_MUL_STAGES[L]``). ShapeError names the field."""
    acc = check_int(acc_stages, f"acc_stages (one of {', '.join(map(str, ACC_STAGES))})",
                    minimum=min(ACC_STAGES), maximum=max(ACC_STAGES), error=ShapeError)
    if mul_stages is None:
        return acc, DEFAULT_MUL_STAGES[acc]
    mul = check_int(mul_stages, f"mul_stages (one of {', '.join(map(str, MUL_STAGES))})",
                    minimum=min(MUL_STAGES), maximum=max(MUL_STAGES), error=ShapeError)
    return acc, mul


def mac_latency(acc_stages: int = 1, mul_stages: int | None = None) -> int:
    """Cycles of a MAC from accepting a `last` beat to ``result.valid``: decode +
    multiply + the L-cycle accumulate (``MAC_LATENCY`` for the compact pipeline)."""
    acc, mul = check_stages(acc_stages, mul_stages)
    return DECODE_LATENCY + mul + acc
#: Cycles to write one decode table (one entry per cycle; A and B tables in parallel).
TABLE_LOAD_CYCLES = TABLE_ENTRIES
#: --- Output path (hw/outpath; docs/datapath.md, "Output path") ---------------------------
#: Cycles from a tensor's `last` result beat into the statistics unit to its result: log2
#: of the C values (2: ROM lookup, interpolation), lane reduce (1), running accumulate (1),
#: log2 of the tensor's max (2). ``hw.outpath.StatisticsUnit.latency``.
STATS_LATENCY = 6
#: Cycles from a beat into the threshold encoder to its codes: one search stage per
#: E5M2 magnitude-code bit (7). ``hw.outpath.ThresholdEncoder.latency``.
ENCODE_LATENCY = E5M2.width - 1
#: Cycles of the per-tensor scalar step, a controller routine (not RTL): an estimate for
#: a pipelined FP64 unit, from the statistics result to the threshold table being ready:
#: mu = total / count, m - mu, alpha = 15 / (m - mu), beta = -alpha * mu, a dependent
#: chain of two divides (~20 cycles each) and two add/multiplies (~4 each): 48 cycles;
#: then 2 x 123 exp2 issued one a cycle (the 123 finite threshold entries and the 123
#: decode-table entries of the next layer), plus ~20 cycles of exp2 pipeline: 314.
SCALAR_STEP_CYCLES = 48 + 2 * (E5M2.inf_bits - 1) + 20
#: Cycles to write the encoder's threshold table (one 32-bit entry a cycle).
THRESHOLD_LOAD_CYCLES = TABLE_ENTRIES
#: Cycles from a row address into the layer engine's FP32 output buffer to the row
#: reaching the encoder (one synchronous memory read; hw/engine.py ``OutputBuffer``).
OUTPUT_BUFFER_READ_LATENCY = 1
#: Result rows (C FP32 values each) the layer engine's output buffer holds by default:
#: an output tensor needs ceil(M/R)*R * ceil(N/C) rows (16 KiB on a 4x4 array).
OUTPUT_BUFFER_ROWS = 1024
#: Array sizes the systolic array supports (rows and columns).
ARRAY_DIM_MIN, ARRAY_DIM_MAX = 1, 64
#: Width of the array's per-GEMM beat count port ``k``: K must be below 2**K_BITS.
K_BITS = 32
K_MAX = (1 << K_BITS) - 1


def check_array(rows, cols) -> tuple[int, int]:
    """Validate an array size: ``rows`` and ``cols`` integers in ``1..ARRAY_DIM_MAX``
    (ShapeError naming the field and the value)."""
    return tuple(check_int(value, f"array {name} ({ARRAY_DIM_MIN}..{ARRAY_DIM_MAX})",
                           minimum=ARRAY_DIM_MIN, maximum=ARRAY_DIM_MAX, error=ShapeError)
                 for name, value in (("rows", rows), ("cols", cols)))


@dataclass(frozen=True)
class ArrayConfig:
    """One R x C systolic array with W-bit decoded significands (validated; frozen).

    ``acc_stages`` L (default 1) is the depth of each PE's accumulator loop: with L > 1
    the FP32 adder is pipelined over L cycles and each PE interleaves L output tiles
    round-robin (docs/array.md, "Interleaved accumulation"); ``mul_stages`` (default
    ``DEFAULT_MUL_STAGES[L]``) the depth of its multiplier. Everything else about the
    array's timing is derived here, once: the pipeline latency, the tile spacing, the
    drain and the result FIFO depth (see docs/array.md).
    """

    rows: int
    cols: int
    mant_bits: int = FP32.precision
    acc_stages: int = 1
    mul_stages: int | None = None

    def __post_init__(self):
        rows, cols = check_array(self.rows, self.cols)
        mant_bits = check_int(self.mant_bits, f"mant_bits ({MANT_BITS_MIN}..{MANT_BITS_MAX})",
                              minimum=MANT_BITS_MIN, maximum=MANT_BITS_MAX, error=ShapeError)
        acc_stages, mul_stages = check_stages(self.acc_stages, self.mul_stages)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "cols", cols)
        object.__setattr__(self, "mant_bits", mant_bits)
        object.__setattr__(self, "acc_stages", acc_stages)
        object.__setattr__(self, "mul_stages", mul_stages)

    @property
    def interleave(self) -> int:
        """Output tiles each PE accumulates at once, round-robin: ``acc_stages``."""
        return self.acc_stages

    @property
    def pipeline_suffix(self) -> str:
        """``""`` for the compact pipeline, else ``_l{L}`` (and ``_m{M}`` when the
        multiplier depth is not the default for L): the suffix of Verilog tops."""
        if self.acc_stages == 1 and self.mul_stages == DEFAULT_MUL_STAGES[1]:
            return ""
        suffix = f"_l{self.acc_stages}"
        if self.mul_stages != DEFAULT_MUL_STAGES[self.acc_stages]:
            suffix += f"_m{self.mul_stages}"
        return suffix

    @property
    def name(self) -> str:
        """``RxC_wW`` (plus ``pipeline_suffix``): the suffix of the array's Verilog top and
        regression checks."""
        return f"{self.rows}x{self.cols}_w{self.mant_bits}{self.pipeline_suffix}"

    @property
    def top_name(self) -> str:
        """The Verilog module of this configuration (``hw.verilog.TOPS``)."""
        return f"s2fp8_array_{self.name}"

    @property
    def pe_name(self) -> str:
        """The Verilog module of its processing element (generated once, instantiated R x C
        times)."""
        return f"s2fp8_pe_w{self.mant_bits}{self.pipeline_suffix}"

    @property
    def mac_latency(self) -> int:
        """Decode + multiply + accumulate (``mac_latency``)."""
        return mac_latency(self.acc_stages, self.mul_stages)

    @property
    def pipeline_latency(self) -> int:
        """Decode + multiply + accumulate + result FIFO (``PIPELINE_CYCLES`` for the
        compact pipeline)."""
        return self.mac_latency + RESULT_FIFO_LATENCY

    @property
    def tile_spacing(self) -> int:
        """Minimum cycles between the last beats of consecutive tiles: a PE's result
        register is read before the next tile overwrites it, and two tiles' rows never
        need the FIFO's write port in the same cycle."""
        return max(self.rows, self.cols)

    @property
    def drain_cycles(self) -> int:
        """Cycles from accepting the last beat of a tile to its last result row on ``c``,
        both counted, minus one (an always-ready consumer): the skew to the far corner
        plus the pipeline."""
        return (self.rows - 1) + (self.cols - 1) + self.pipeline_latency

    @property
    def result_fifo_depth(self) -> int:
        """Rows the result FIFO holds: enough that a consumer that is always ready never
        stalls the array. A tile holds R credits from its last beat until its last row
        leaves, ``drain_cycles`` later, and last beats are >= ``tile_spacing`` apart."""
        return self.rows * (self.drain_cycles // self.tile_spacing + 2)
