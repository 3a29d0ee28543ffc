"""The S2FP8 layer engine: S2FP8 A and B in, S2FP8 C (codes, alpha, beta) out.

The systolic array (``hw.array``) and the output path (``hw.outpath``) as one top-level
block, with the FP32 output buffer that holds a GEMM's results until its statistics are
complete (docs/datapath.md, "Layer engine")::

    table_a, table_b, k, a, b ──► S2FP8Array (R x C) ──c: result rows (C FP32)──┐
                                                                               │ always ready
                     ┌─────────────────────────────────────────────────────────┤
                     ▼ pass 1 (as the rows leave)                              ▼
             StatisticsUnit (C lanes) ──► stats_result ──► controller    OutputBuffer
                                                   (scalar step: alpha,  (buffer_rows x C FP32,
                                                    beta, threshold and   row i of the GEMM at
                                                    decode tables)        address i)
                               thresholds (128 writes) ◄──┘                    │
                                                   read (row addresses) ──────►│ 1 cycle
                                                                               ▼ pass 2
                                               codes (C S2FP8 codes) ◄── ThresholdEncoder

The controller (a small processor or the testbench; :mod:`pysim.numerics.outpath`'s
``scalar_step``, ``threshold_table`` and ``s2fp8.decode_table``) is not RTL: it reads
``stats_result``, takes ``arch.SCALAR_STEP_CYCLES`` for the scalar step, writes the
128 thresholds, then issues the buffer rows to encode (each row index of the M real rows
of every tile; a tile's padding rows are skipped), one a cycle. The next layer's A
decode table is the one it computed from the same alpha and beta.

Sizes: one output tensor's ``ceil(M/R)*R * ceil(N/C)`` result rows must fit
``buffer_rows`` (the row counter wraps past it: the controller refuses a larger GEMM,
:meth:`S2FP8LayerEngine.buffer_fits`). Cycle model: ``pysim.perf.cycles`` (array cycles,
then ``output_path``), checked equal by tests/test_hw_engine.py.
"""
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from pysim.numerics.outpath import DEFAULT_LOG2
from pysim.perf import arch
from pysim.perf.arch import ArrayConfig
from pysim.validate import check_int

from .array import S2FP8Array
from .decoder import TableWriteSignature
from .layouts import CodeLayout
from .outpath import StatisticsUnit, ThresholdEncoder
from .outpath.layouts import (ThresholdWriteSignature, beat_signature, codes_layout,
                              stats_result_layout, values_layout)

#: Largest output buffer accepted (rows of C FP32 values): 2^20 rows, 16 MiB at C = 4.
MAX_BUFFER_ROWS = 1 << 20


class OutputBuffer(wiring.Component):
    """``rows`` x C FP32 values: one write port (a result row a cycle), one read port
    with ``arch.OUTPUT_BUFFER_READ_LATENCY`` = 1 cycle (synchronous read).

    Ports: ``write`` (valid + ``addr`` + ``values``), ``read`` (valid + row address),
    ``data`` (valid + the row's C values, one cycle after ``read``).
    """

    latency = arch.OUTPUT_BUFFER_READ_LATENCY

    def __init__(self, *, lanes: int, rows: int):
        self._lanes = lanes
        self._rows = check_int(rows, "OutputBuffer: rows", minimum=1, maximum=MAX_BUFFER_ROWS,
                               error=ValueError)
        self._addr_bits = max(rows - 1, 1).bit_length()
        super().__init__({
            "write_en": In(1),
            "write_addr": In(self._addr_bits),
            "write_values": In(values_layout(lanes)),
            "read": In(beat_signature(self._addr_bits)),
            "data": Out(beat_signature(values_layout(lanes))),
        })

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def addr_bits(self) -> int:
        return self._addr_bits

    def elaborate(self, platform):
        m = Module()
        m.submodules.storage = storage = memory.Memory(shape=values_layout(self._lanes),
                                                      depth=self._rows, init=[])
        write = storage.write_port()
        read = storage.read_port()
        m.d.comb += [
            write.en.eq(self.write_en),
            write.addr.eq(self.write_addr),
            write.data.eq(self.write_values),
            read.en.eq(self.read.valid),
            read.addr.eq(self.read.payload),
            self.data.payload.eq(read.data),
        ]
        m.d.sync += self.data.valid.eq(self.read.valid)
        return m


class S2FP8LayerEngine(wiring.Component):
    """Array + output buffer + output path (see the module docstring).

    Parameters (keyword-only): ``config`` (:class:`pysim.perf.arch.ArrayConfig`; the
    output path has C = ``config.cols`` lanes), ``buffer_rows`` (output-buffer rows of C
    FP32 values, default ``arch.OUTPUT_BUFFER_ROWS``), ``pe_module`` (Verilog generation:
    see :class:`hw.array.S2FP8Array`). The configuration is exposed as ``array_config``
    (``config`` on a component names the array's own Verilog top in ``hw.verilog``).

    Ports:
    - ``table_a``, ``table_b``, ``k``, ``a``, ``b``: the array's (decode tables, beats
      per tile, operand streams);
    - ``result_rows``: result rows of the GEMM's output tensor, T * R (held for the
      GEMM): the row that completes the tensor is its statistics' `last` beat;
    - ``stats_result``: the tensor's statistics, ``arch.STATS_LATENCY`` cycles after its
      last result row;
    - ``thresholds``: the encoder's table (write while ``encoder_busy`` is low);
    - ``read``: a buffer row address to encode (valid + address), one a cycle;
    - ``codes``: the row's C S2FP8 codes, ``read_latency`` cycles after its address.
    """

    def __init__(self, *, config: ArrayConfig, buffer_rows: int = arch.OUTPUT_BUFFER_ROWS,
                 pe_module: str | None = None):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"S2FP8LayerEngine: config must be a pysim.perf.arch.ArrayConfig, "
                            f"not {config!r}")
        if config.interleave != 1:
            # its controller counts result rows tile by tile; an interleaved array's padding
            # tiles (tiler.padded_tiles) would enter the statistics: not modelled yet
            raise ValueError(f"S2FP8LayerEngine: the layer engine drives the compact array "
                             f"(acc_stages 1), not {config.name} (acc_stages "
                             f"{config.acc_stages})")
        self._config = config
        self._buffer_rows = check_int(buffer_rows, "S2FP8LayerEngine: buffer_rows", minimum=1,
                                      maximum=MAX_BUFFER_ROWS, error=ValueError)
        self._pe_module = pe_module
        self._addr_bits = max(buffer_rows - 1, 1).bit_length()
        lanes = config.cols
        super().__init__({
            "table_a": In(TableWriteSignature()),
            "table_b": In(TableWriteSignature()),
            "k": In(arch.K_BITS),
            "a": In(stream.Signature(data.ArrayLayout(CodeLayout, config.rows))),
            "b": In(stream.Signature(data.ArrayLayout(CodeLayout, lanes))),
            "result_rows": In(self._addr_bits + 1),
            "stats_result": Out(beat_signature(stats_result_layout(DEFAULT_LOG2))),
            "thresholds": In(ThresholdWriteSignature()),
            "read": In(beat_signature(self._addr_bits)),
            "codes": Out(beat_signature(codes_layout(lanes))),
            "encoder_busy": Out(1),
        })

    @property
    def array_config(self) -> ArrayConfig:
        return self._config

    @property
    def buffer_rows(self) -> int:
        return self._buffer_rows

    @property
    def pe_module(self) -> str | None:
        return self._pe_module

    @property
    def lanes(self) -> int:
        return self._config.cols

    @property
    def stats_latency(self) -> int:
        return StatisticsUnit.latency

    @property
    def read_latency(self) -> int:
        """Cycles from a ``read`` address to its ``codes``: buffer read + encoder."""
        return OutputBuffer.latency + ThresholdEncoder.latency

    def buffer_fits(self, m: int, n: int) -> bool:
        """An M x N output tensor's result rows fit the buffer (the controller's check)."""
        rows, cols = self._config.rows, self._config.cols
        return -(-m // rows) * rows * -(-n // cols) <= self._buffer_rows

    def elaborate(self, platform):
        m = Module()
        lanes = self._config.cols
        m.submodules.array = array = S2FP8Array(config=self._config, pe_module=self._pe_module)
        m.submodules.stats = stats = StatisticsUnit(lanes=lanes)
        m.submodules.buffer = buffer = OutputBuffer(lanes=lanes, rows=self._buffer_rows)
        m.submodules.encoder = encoder = ThresholdEncoder(lanes=lanes)

        # --- the array: operands and tables straight through -----------------------------
        wiring.connect(m, wiring.flipped(self.table_a), array.table_a)
        wiring.connect(m, wiring.flipped(self.table_b), array.table_b)
        wiring.connect(m, wiring.flipped(self.a), array.a)
        wiring.connect(m, wiring.flipped(self.b), array.b)
        m.d.comb += array.k.eq(self.k)

        # --- pass 1: every result row into the buffer and the statistics unit ------------
        # The buffer takes a row every cycle, so the array never waits for its consumer.
        row = Signal(self._addr_bits + 1)          # result row of the tensor, 0..T*R-1
        last = row == self.result_rows - 1
        arrived = array.c.valid
        m.d.comb += [
            array.c.ready.eq(1),
            buffer.write_en.eq(arrived),
            buffer.write_addr.eq(row),
            buffer.write_values.eq(array.c.payload.values),
            stats.beats.valid.eq(arrived),
            stats.beats.payload.values.eq(array.c.payload.values),
            stats.beats.payload.first.eq(row == 0),
            stats.beats.payload.last.eq(last),
        ]
        with m.If(arrived):
            m.d.sync += row.eq(Mux(last, 0, row + 1))
        wiring.connect(m, stats.result, wiring.flipped(self.stats_result))

        # --- pass 2: the controller's row addresses, buffer -> encoder -> codes -----------
        wiring.connect(m, wiring.flipped(self.read), buffer.read)
        wiring.connect(m, buffer.data, encoder.values)
        wiring.connect(m, wiring.flipped(self.thresholds), encoder.table)
        wiring.connect(m, encoder.codes, wiring.flipped(self.codes))
        m.d.comb += self.encoder_busy.eq(encoder.busy | buffer.data.valid)
        return m
