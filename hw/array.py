"""Output-stationary R x C systolic array of S2FP8 MAC processing elements.

::

                 b stream (C codes per beat)
                       │
               ┌───────┴────────┐
               │ C decoders (B) │  table B, decoded once at the edge
               └───────┬────────┘
                 skew: column j delayed j cycles
                       ▼
   a stream ─► R decoders (A) ─► skew: row i delayed i ─► PE(i,0) ► PE(i,1) ► ... ► PE(i,C-1)
   (R codes)                                                │         │                │
                                                            ▼  b flows down the columns ▼
                                                         PE(i+1,0) ...
   PE(i, C-1) done ─► row i of results ─► result FIFO ─► c stream (C values per beat)

Every beat pairs one column of an A tile (R codes, A[i0:i0+R, k]) with one row of a B
tile (C codes, B[k, j0:j0+C]); K consecutive beats make one output tile (``k`` input,
held for the whole GEMM). Operands are decoded once, at the edges, and the decoded FP32
values move one PE per cycle: a to the right along its row, b down its column, so
PE(i, j) sees the pair of beat t at cycle t + arch.DECODE_LATENCY + i + j. The control bits
(valid, first, last) travel with a. Each PE multiplies (FPMul) and accumulates into its
own loop (``hw.mac.accumulator_loop``, as in the MAC: one combinational FPAdd for the
compact array; with ``ArrayConfig.acc_stages`` L > 1 an L-stage loop holding L tiles'
sums, their beats interleaved: docs/array.md, "Interleaved accumulation"); the sum of a
tile's `last` product also loads the PE's result register.

Draining overlaps the next tile completely: results sit in per-PE result registers while
the accumulators start on the next tile. Row i is read (all C values, one beat) the cycle
after PE(i, C-1) took its result, so rows leave in order 0..R-1 on consecutive cycles.
Two rules keep that safe, enforced by holding ``ready`` low on the beat that would be the
last of a tile:
- the last beats of consecutive tiles are at least ``max(R, C)`` cycles apart (a result
  register is read before the next tile overwrites it, and the rows of two tiles never
  need the output in the same cycle);
- the result FIFO has room for the tile's R rows (credits), so a consumer that
  back-pressures ``c`` stalls the array instead of losing results.
With K >= max(R, C) and a consumer that is always ready, beats are accepted every cycle.
Ragged tiles are padded by the driver (zero codes); every tile drains all R rows.
"""
from amaranth import Cat, ClockSignal, Instance, Module, Mux, ResetSignal, Signal, Value
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from pysim.numerics.formats import FP32, check_mant_bits
from pysim.perf import arch
from pysim.perf.arch import ArrayConfig

from .decoder import OperandDecoder, TableWriteSignature
from .fp32 import FPAdd, FPMul
from .layouts import CodeLayout, FP32Layout
from .mac import accumulator_loop, slot_turn
from .pipeline import PipelineDepth, delay

#: Control bits that travel with the A operand along a row.
ControlLayout = data.StructLayout({"valid": 1, "first": 1, "last": 1})


class ProcessingElement(PipelineDepth, wiring.Component):
    """One PE: multiply the passing a and b, accumulate, keep the tile's result.

    Ports: ``a_in``, ``b_in``, ``ctl_in`` (from the left / above); ``a_out``, ``b_out``,
    ``ctl_out`` (the same, one cycle later, to the right / below); ``result`` (the last
    finished tile's sum) and ``done`` (high the one cycle after ``result`` was loaded).
    """

    a_in: In(FP32Layout)
    b_in: In(FP32Layout)
    ctl_in: In(ControlLayout)
    a_out: Out(FP32Layout)
    b_out: Out(FP32Layout)
    ctl_out: Out(ControlLayout)
    result: Out(FP32Layout)
    done: Out(1)

    def __init__(self, *, mant_bits: int = FP32.precision, acc_stages: int = 1,
                 mul_stages: int | None = None):
        self._mant_bits = check_mant_bits(mant_bits)
        self._set_depth("ProcessingElement", acc_stages, mul_stages)
        super().__init__()

    @property
    def mant_bits(self) -> int:
        return self._mant_bits

    def elaborate(self, platform):
        m = Module()
        m.submodules.multiply = multiply = FPMul(sig_bits=self._mant_bits,
                                                 stages=self._mul_stages)
        m.submodules.add = add = FPAdd(stages=self._acc_stages - 1)

        # --- pass the operands on -------------------------------------------------------
        m.d.sync += [
            self.a_out.eq(self.a_in),
            self.b_out.eq(self.b_in),
            self.ctl_out.eq(self.ctl_in),
        ]

        # --- multiply (ctl delayed alongside) -------------------------------------------
        m.d.comb += [
            multiply.a.eq(self.a_in),
            multiply.b.eq(self.b_in),
            multiply.valid_in.eq(self.ctl_in.valid),
        ]
        ctl = delay(m, self.ctl_in, multiply.latency, "ctl")

        # --- accumulate (L interleaved tiles): a tile's first product starts from +0 -----
        accumulator_loop(m, add, product=multiply.result, valid=ctl.valid, first=ctl.first,
                         start=0)
        # a tile's sum is final when its last product leaves the adder, L - 1 cycles on
        finishing = delay(m, ctl.valid & ctl.last, self._acc_stages - 1, "last_sum")
        m.d.sync += self.done.eq(finishing)
        with m.If(finishing):
            m.d.sync += self.result.eq(add.result)
        return m


class ProcessingElementInstance(ProcessingElement):
    """A ProcessingElement's ports bound to an instance of its separately generated Verilog
    module ``module`` (see ``hw.verilog``): the array's Verilog then holds one PE module
    instantiated R x C times instead of R x C copies, which Verilator compiles once.
    Verilog generation only: amaranth.sim cannot simulate an instance."""

    def __init__(self, *, module: str, mant_bits: int = FP32.precision, acc_stages: int = 1,
                 mul_stages: int | None = None):
        self._module = module
        super().__init__(mant_bits=mant_bits, acc_stages=acc_stages, mul_stages=mul_stages)

    def elaborate(self, platform):
        m = Module()
        ports = {}
        for name, member in self.signature.members.items():
            port = getattr(self, name)
            ports[("i_" if member.flow == In else "o_") + name] = Value.cast(port)
        m.submodules.pe = Instance(self._module, i_clk=ClockSignal(), i_rst=ResetSignal(),
                                   **ports)
        return m


class S2FP8Array(wiring.Component):
    """R x C output-stationary systolic array of S2FP8 MACs (see the module docstring).

    Parameters (keyword-only): ``config``, a :class:`pysim.perf.arch.ArrayConfig` (rows R
    and columns C in 1..64, decoded significand width W in 1..24), or the same as
    ``rows=``, ``cols=``, ``mant_bits=`` (W defaults to 24); ``pe_module``: for Verilog
    generation, the name of a separately generated ProcessingElement module to instantiate
    instead of elaborating R x C PEs (default: none). Spacing, FIFO depth and latencies
    come from the config (the cycle model reads the same numbers).

    Ports:
    - ``table_a``, ``table_b``: decode-table write ports, broadcast to the R (A) and C (B)
      edge decoders. Load them while no beat is in flight; beats are refused meanwhile.
    - ``k``: beats per output tile (the GEMM's K, 1..2**arch.K_BITS - 1), held for the
      whole GEMM.
    - ``a``: stream of R codes (one column of the A tile) per beat.
    - ``b``: stream of C codes (one row of the B tile) per beat; a beat moves when both
      ``a`` and ``b`` are valid and the array is ready.
    - ``c``: stream of result rows: ``row`` index and the C FP32 values, R beats per tile.
    """

    def __init__(self, *, config: ArrayConfig | None = None, rows: int | None = None,
                 cols: int | None = None, mant_bits: int | None = None,
                 pe_module: str | None = None):
        if config is None:
            config = ArrayConfig(rows, cols, *(() if mant_bits is None else (mant_bits,)))
        elif not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be a pysim.perf.arch.ArrayConfig, not {config!r}")
        elif (rows, cols, mant_bits) != (None, None, None):
            raise TypeError("give either config= or rows=/cols=/mant_bits=, not both")
        self._config = config
        if pe_module is not None and not (isinstance(pe_module, str) and pe_module.isidentifier()):
            raise ValueError(f"pe_module must be a Verilog module name, not {pe_module!r}")
        self._pe_module = pe_module
        rows, cols = config.rows, config.cols
        self._row_layout = data.StructLayout({
            "row": range(rows),
            "values": data.ArrayLayout(FP32Layout, cols),
        })
        super().__init__({
            "table_a": In(TableWriteSignature()),
            "table_b": In(TableWriteSignature()),
            "k": In(arch.K_BITS),
            "a": In(stream.Signature(data.ArrayLayout(CodeLayout, rows))),
            "b": In(stream.Signature(data.ArrayLayout(CodeLayout, cols))),
            "c": Out(stream.Signature(self._row_layout)),
        })

    @property
    def config(self) -> ArrayConfig:
        return self._config

    @property
    def rows(self) -> int:
        return self._config.rows

    @property
    def cols(self) -> int:
        return self._config.cols

    @property
    def mant_bits(self) -> int:
        return self._config.mant_bits

    @property
    def pe_module(self) -> str | None:
        return self._pe_module

    @property
    def tile_spacing(self) -> int:
        """Minimum cycles between the last beats of consecutive tiles (``ArrayConfig``)."""
        return self._config.tile_spacing

    @property
    def result_fifo_depth(self) -> int:
        """Rows the result FIFO holds (``ArrayConfig.result_fifo_depth``)."""
        return self._config.result_fifo_depth

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols

        # --- beat bookkeeping: slot, position in the tile, spacing, result credits -------
        writing = self.table_a.en | self.table_b.en
        accept = Signal()
        turn, last_slot = slot_turn(m, self._config.interleave, restart=writing, accept=accept)
        beat = Signal(arch.K_BITS)
        last_beat = beat == self.k - 1
        since_last = Signal(range(self.tile_spacing + 1), init=self.tile_spacing)
        credits = Signal(range(self.result_fifo_depth + 1), init=self.result_fifo_depth)
        ready = ~writing & turn \
            & ~(last_beat & ((since_last < self.tile_spacing) | (credits < rows)))
        m.d.comb += [
            accept.eq(self.a.valid & self.b.valid & ready),
            self.a.ready.eq(ready & self.b.valid),
            self.b.ready.eq(ready & self.a.valid),
        ]
        with m.If(accept & last_slot):   # the group's L tiles move to their next beat
            m.d.sync += beat.eq(Mux(last_beat, 0, beat + 1))
        with m.If(accept & last_beat):
            m.d.sync += since_last.eq(1)
        with m.Elif(since_last < self.tile_spacing):
            m.d.sync += since_last.eq(since_last + 1)
        popped = self.c.valid & self.c.ready
        m.d.sync += credits.eq(credits + popped - Mux(accept & last_beat, rows, 0))

        # --- edge decoders ----------------------------------------------------------------
        def decoders(prefix, table, codes, count):
            values = []
            for index in range(count):
                decoder = OperandDecoder()
                m.submodules[f"{prefix}{index}"] = decoder
                wiring.connect(m, wiring.flipped(table), decoder.table)
                m.d.comb += [decoder.code.eq(codes[index]), decoder.code_valid.eq(accept)]
                values.append(decoder.value)
            return values

        a_values = decoders("decode_a", self.table_a, self.a.payload, rows)
        b_values = decoders("decode_b", self.table_b, self.b.payload, cols)
        control = Signal(ControlLayout)  # aligned with the decoded values
        m.d.sync += [
            control.valid.eq(accept),
            control.first.eq(beat == 0),
            control.last.eq(last_beat),
        ]

        # --- skew: row i and column j enter i and j cycles late ---------------------------
        # --- the PE grid ------------------------------------------------------------------
        pipeline = dict(mant_bits=self.mant_bits, acc_stages=self._config.acc_stages,
                        mul_stages=self._config.mul_stages)

        def make_pe():
            if self._pe_module is None:
                return ProcessingElement(**pipeline)
            return ProcessingElementInstance(module=self._pe_module, **pipeline)

        pes = [[make_pe() for _ in range(cols)] for _ in range(rows)]
        for i in range(rows):
            for j in range(cols):
                pe = pes[i][j]
                m.submodules[f"pe_{i}_{j}"] = pe
                if j == 0:
                    m.d.comb += [pe.a_in.eq(delay(m, a_values[i], i, f"a{i}_skew")),
                                 pe.ctl_in.eq(delay(m, control, i, f"ctl{i}_skew"))]
                else:
                    m.d.comb += [pe.a_in.eq(pes[i][j - 1].a_out),
                                 pe.ctl_in.eq(pes[i][j - 1].ctl_out)]
                if i == 0:
                    m.d.comb += pe.b_in.eq(delay(m, b_values[j], j, f"b{j}_skew"))
                else:
                    m.d.comb += pe.b_in.eq(pes[i - 1][j].b_out)

        # --- drain: row i leaves when its last PE is done --------------------------------
        m.submodules.results = results = fifo.SyncFIFO(width=self._row_layout.size,
                                                      depth=self.result_fifo_depth)
        row_out = Signal(self._row_layout)
        for i in range(rows):
            with m.If(pes[i][cols - 1].done):
                m.d.comb += [
                    row_out.row.eq(i),
                    row_out.values.eq(Cat(pe.result for pe in pes[i])),
                ]
        m.d.comb += [
            results.w_en.eq(Cat(pes[i][cols - 1].done for i in range(rows)).any()),
            results.w_data.eq(row_out),
            self.c.valid.eq(results.r_rdy),
            self.c.payload.eq(results.r_data),
            results.r_en.eq(self.c.ready),
        ]
        return m
