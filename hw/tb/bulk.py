"""Bulk co-simulation of the systolic array: a whole run's stimulus handed to a C++
Verilator harness at once, the design run free of Python, the responses read back.

Why: a cocotb bench steps the design from Python, one ``await`` per clock edge.
``hw/tb/bulk_array.cpp`` drives the same protocol as the cocotb bench
``hw/tb/bench_array.py`` (same timing convention, same job vectors, same result arrays)
from C++, so one cycle is two ``eval()`` calls and a few loads and stores.

Two models (``build_harness(config, registered=...)``):
- default: the model the cocotb build already compiled (``Vtop__ALL.a`` and the Verilator
  runtime objects in ``sim_build/<top>-<hash>``, see ``hw.tb.sim.build``): no Verilator
  run of its own, only the harness is compiled (a few seconds) and linked through that
  build's generated makefile; ``make --old-file`` marks the shared objects up to date, so
  this never rebuilds them under a cocotb run using the same directory;
- ``registered=True``: :class:`RegisteredInputsArray`, its own Verilator build with the
  PE kept a module (:data:`NO_INLINE_PE`): 2x less CPU per cycle on 8x8 (6.0 - 6.5
  instead of 12.3 - 13 us; 4x4 with the PE inlined: 2.3 instead of 3.8 us).
The binary is named by a hash of the harness source and its defines, next to the model.

Per run: ``run_bulk(built, vectors)`` writes the stimulus as raw little-endian files into
a fresh run directory (``STIMULUS`` names them and their dtypes), runs the binary and
returns the result arrays (``RESULTS``); the run directory is removed unless ``keep``, the
run failed or a job stalled (its ``harness.log`` says where). The host side (jobs,
scoreboard, regression checks) is ``hw.tb.bulk_checks``; see docs/cosim.md.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib
import itertools
import os
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import ClockDomain, ClockSignal, DomainRenamer, Module, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from pysim.perf import arch
from pysim.perf.arch import ArrayConfig

from pysim.files import atomic_write

from hw import verilog as hw_verilog

from . import sim

#: the harness source (compiled per configuration with the defines of ``_defines``)
HARNESS_SOURCE = Path(__file__).resolve().with_name("bulk_array.cpp")
#: stimulus file name -> dtype (see bulk_array.cpp; the names are bench_array's vectors)
STIMULUS = {"tables_a": "<u4", "tables_b": "<u4", "k": "<i8", "beats": "<i8", "rows": "<i8",
            "ready_len": "<i8", "offer": "<i8", "a_beats": "u1", "b_beats": "u1",
            "ready": "u1"}
#: result file name -> dtype
RESULTS = {"accept": "<i8", "pop": "<i8", "row_index": "<i8", "row_values": "<u4"}
_SUFFIX = {"<u4": "u32", "<i8": "i64", "u1": "u8"}
#: the C++ compiler's optimization for the harness object (the model's objects keep the
#: build's flags): the harness loop is ~1 % of a cycle (perf) either way. Recompiling the
#: model itself with -O2 instead of Verilator's -Os was measured no faster (registered 4x4:
#: 0.28 s CPU for 1e6 MACs both ways) for 3x the compile time, so it is not done.
HARNESS_OPT = "-O2"


@dataclass(frozen=True)
class BulkBuild:
    """The harness binary of one array configuration, beside its cocotb model build."""

    config: ArrayConfig
    model: sim.Build         # the cocotb build whose compiled model the harness links
    binary: Path
    seconds: float           # harness compile + link time (0.0 when cached)
    cached: bool

    @property
    def build_seconds(self) -> float:
        """Model build (0 if it was cached) plus harness build."""
        return self.model.seconds + self.seconds


def row_bits(config: ArrayConfig) -> int:
    """Bits of the row index at the bottom of ``c.payload`` (as in bench_array)."""
    return max(config.rows - 1, 0).bit_length()


def _defines(config: ArrayConfig, registered: bool) -> dict:
    return {"S2FP8_ROWS": config.rows, "S2FP8_COLS": config.cols,
            "S2FP8_ROW_BITS": row_bits(config), "S2FP8_TABLE_ENTRIES": arch.TABLE_LOAD_CYCLES,
            "S2FP8_REGISTERED_INPUTS": int(registered)}


_BUILDS: dict[tuple, BulkBuild] = {}


def get_bulk_build(config: ArrayConfig, build_root=None, *, registered: bool = False
                   ) -> BulkBuild:
    """The harness of ``config`` built once per process (and on disk across processes)."""
    key = (config, str(build_root), registered)
    if key not in _BUILDS:
        _BUILDS[key] = build_harness(config, build_root, registered=registered)
    return _BUILDS[key]


def build_harness(config: ArrayConfig, build_root=None, *, registered: bool = False
                  ) -> BulkBuild:
    """Build (or find) the model and the harness linked against it. ``registered``
    False: the model is the cocotb build of the bare array (``hw.tb.sim.build`` of
    ``config.top_name``: no Verilator run of its own); True: a build of
    :class:`RegisteredInputsArray` (a second Verilator build of the configuration, ~2x
    faster per cycle). No waves either way: bulk runs write no VCD."""
    if registered:
        name = registered_top_name(config)
        source = Path(build_root or sim.BUILD_ROOT).resolve() / "bulk_sources" / f"{name}.v"
        text = registered_verilog(config)
        if not (source.is_file() and source.read_text(encoding="utf-8") == text):
            source.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(source, text)
        model = sim.build(name, verilog_path=source, build_root=build_root, waves=False)
    else:
        model = sim.build(config.top_name, build_root=build_root, waves=False)
    defines = _defines(config, registered)
    source = HARNESS_SOURCE.read_text(encoding="utf-8")
    digest = hashlib.sha256((repr(sorted(defines.items())) + HARNESS_OPT + "\n" + source)
                            .encode()).hexdigest()[:12]
    name = f"s2fp8_bulk_{digest}"
    binary = model.directory / name
    if binary.is_file():
        return BulkBuild(config, model, binary, 0.0, True)
    # the lock hw.tb.sim.build holds while building this directory: also keeps two
    # harness builds of one configuration apart
    with open(model.directory.parent / f".{model.directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():
            return BulkBuild(config, model, binary, 0.0, True)
        return _build_locked(config, model, name, source, defines)


_MAKEFILE = """\
# Written by hw/tb/bulk.py: links the bulk harness against this directory's model.
include Vtop.mk
$(BULK): $(VK_USER_OBJS) $(VK_GLOBAL_OBJS) $(VM_PREFIX)__ALL.a
\t$(LINK) $(LDFLAGS) $^ $(LOADLIBES) $(LDLIBS) $(LIBS) -o $@.tmp && mv $@.tmp $@
"""


def _build_locked(config, model: sim.Build, name: str, source: str, defines: dict) -> BulkBuild:
    directory = model.directory
    if not (directory / "Vtop.mk").is_file() or not (directory / "Vtop__ALL.a").is_file():
        raise sim.SimError(f"{directory} has no compiled Verilator model (Vtop.mk, "
                           f"Vtop__ALL.a): the cocotb build layout changed")
    atomic_write(directory / f"{name}.cpp", source)
    atomic_write(directory / "s2fp8_bulk.mk", _MAKEFILE)
    shared = ["Vtop__ALL.a"] + [p.name for p in directory.glob("verilated*.o")]
    cflags = " ".join(f"-D{key}={value}" for key, value in defines.items())
    command = ["make", "-s", "-C", str(directory), "-f", "s2fp8_bulk.mk",
               f"VM_USER_CLASSES={name}", "VM_USER_DIR=.", "VM_USER_LDLIBS=",
               f"VM_USER_CFLAGS={cflags}", f"OPT_FAST={HARNESS_OPT}", f"BULK={name}",
               *(f"--old-file={object_name}" for object_name in shared), name]
    log = directory / f"{name}.log"
    start = time.monotonic()
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0 or not (directory / name).is_file():
        raise sim.SimError(f"building the bulk harness of {config.top_name} failed "
                           f"(exit {done.returncode}); log {log}:\n{sim._tail(log)}")
    return BulkBuild(config, model, directory / name, time.monotonic() - start, False)


@dataclass
class BulkResult:
    results: dict            # RESULTS arrays, plus stalled_job, cycles, sim_seconds
    seconds: float           # wall time of the harness process (file I/O included)
    cpu_seconds: float       # its user + system CPU time (the machine may be shared)
    run_dir: Path


_RUN_COUNTER = itertools.count()


def split_jobs(vectors: dict, shards: int) -> list[tuple[int, dict]]:
    """``vectors`` cut into at most ``shards`` runs of consecutive jobs with about equal
    beats: (index of the first job, its vectors) each. Jobs are independent (each starts
    with its own table load, cycles count from it), so shards can run side by side."""
    beats, ready_len = np.asarray(vectors["beats"]), np.asarray(vectors["ready_len"])
    jobs = len(beats)
    ends = np.cumsum(beats)
    cuts = np.unique(np.searchsorted(ends, ends[-1] * np.arange(1, shards) / shards)
                     + 1) if jobs and shards > 1 else np.zeros(0, np.int64)
    bounds = [0, *[int(c) for c in cuts if 0 < c < jobs], jobs]
    beat_at = np.concatenate([[0], ends]).astype(np.int64)
    ready_at = np.concatenate([[0], np.cumsum(ready_len)]).astype(np.int64)
    pieces = []
    for first, last in zip(bounds, bounds[1:]):
        b0, b1 = beat_at[first], beat_at[last]
        r0, r1 = ready_at[first], ready_at[last]
        piece = {name: np.asarray(vectors[name])[first:last] for name in
                 ("tables_a", "tables_b", "k", "beats", "rows", "ready_len")}
        piece.update(offer=np.asarray(vectors["offer"])[b0:b1],
                     a_beats=np.asarray(vectors["a_beats"])[b0:b1],
                     b_beats=np.asarray(vectors["b_beats"])[b0:b1],
                     ready=np.asarray(vectors["ready"])[r0:r1])
        pieces.append((first, piece))
    return pieces


def run_bulk(built: BulkBuild, vectors: dict, *, keep: bool = False, shards: int = 1
             ) -> BulkResult:
    """Run the harness on ``vectors`` (``STIMULUS`` names -> arrays, bench_array's job
    vectors). ``shards`` > 1: that many harness processes side by side on consecutive
    runs of jobs (:func:`split_jobs`; use the free cores), results concatenated in job
    order. ``row_values`` comes back as uint32[rows, cols]; ``sim_seconds`` is the
    longest shard's cycle loop, ``cycles`` the sum."""
    missing = sorted(set(STIMULUS) - set(vectors))
    if missing:
        raise ValueError(f"bulk stimulus lacks {', '.join(missing)}")
    run_dir = built.model.directory / "runs" / f"bulk-{os.getpid()}-{next(_RUN_COUNTER)}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    runs = []
    for index, (first, piece) in enumerate(split_jobs(vectors, max(1, int(shards)))):
        shard_dir = run_dir / f"shard{index}"
        stimulus, out = shard_dir / "stimulus", shard_dir / "results"
        stimulus.mkdir(parents=True)
        out.mkdir()
        for field, dtype in STIMULUS.items():
            np.ascontiguousarray(piece[field], dtype=dtype).tofile(
                stimulus / f"{field}.{_SUFFIX[dtype]}")
        runs.append((first, stimulus, out, shard_dir / "harness.log"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    processes = []
    try:
        for _, stimulus, out, log in runs:
            with open(log, "w") as handle:
                processes.append(subprocess.Popen([str(built.binary), str(stimulus), str(out)],
                                                  stdout=handle, stderr=subprocess.STDOUT))
        codes = [process.wait() for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    seconds = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    parts, stalled, cycles, loop = [], -1, 0, 0.0
    for code, (first, _, out, log) in zip(codes, runs):
        summary = out / "summary.txt"
        if code != 0 or not summary.is_file():
            raise sim.SimError(f"bulk harness {built.binary.name} of {built.config.top_name} "
                               f"exited {code}; log {log}:\n{sim._tail(log)}")
        parts.append({field: np.fromfile(out / f"{field}.{_SUFFIX[dtype]}", dtype=dtype)
                      for field, dtype in RESULTS.items()})
        shard_stalled, shard_cycles, shard_seconds = summary.read_text().split()
        cycles += int(shard_cycles)
        loop = max(loop, float(shard_seconds))
        if int(shard_stalled) >= 0 and stalled < 0:
            stalled = first + int(shard_stalled)
    results = {field: np.concatenate([part[field] for part in parts]) for field in RESULTS}
    results["row_values"] = results["row_values"].astype(np.uint32).reshape(-1, built.config.cols)
    results.update(stalled_job=np.int64(stalled), cycles=np.int64(cycles),
                   sim_seconds=np.float64(loop))
    if not keep and stalled < 0:                     # a stalled job: keep its log
        shutil.rmtree(run_dir, ignore_errors=True)
    return BulkResult(results, seconds, cpu, run_dir)


class RegisteredInputsArray(wiring.Component):
    """The systolic array behind one register on every input, reset included: the
    Verilog top of the bulk harness (the cocotb benches use the bare array).

    Why: Verilator's ``eval()`` re-runs all logic fed by top-level inputs on every call,
    and the bare array's ``rst`` feeds every register's next state, so each half cycle
    re-evaluated the whole array. Behind registers only the clocked region runs, once
    per cycle. The array sees exactly the input sequence the harness writes, one edge
    later; the harness (``S2FP8_REGISTERED_INPUTS``) reads the outputs after the edge
    instead of before it, so cycle numbers are unchanged.

    Parameters (keyword-only): ``config`` (an ArrayConfig), ``pe_module`` (the separately
    generated PE module, as for S2FP8Array). Ports: those of S2FP8Array.
    """

    def __init__(self, *, config: ArrayConfig, pe_module: str | None = None):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be a pysim.perf.arch.ArrayConfig, not {config!r}")
        self._array = importlib.import_module("hw.array").S2FP8Array(config=config,
                                                                      pe_module=pe_module)
        super().__init__(dict(self._array.signature.members))

    @property
    def config(self) -> ArrayConfig:
        return self._array.config

    def elaborate(self, platform):
        m = Module()
        m.domains.array = ClockDomain("array", local=True)
        m.d.comb += ClockSignal("array").eq(ClockSignal("sync"))
        m.d.sync += ResetSignal("array").eq(ResetSignal("sync"))
        m.submodules.array = DomainRenamer("array")(self._array)
        outer = {path: value for path, _, value in self.signature.flatten(self)}
        for path, member, inner in self._array.signature.flatten(self._array):
            if member.flow == In:
                m.d.sync += inner.eq(outer[path])
            else:
                m.d.comb += outer[path].eq(inner)
        return m


def registered_top_name(config: ArrayConfig) -> str:
    return f"s2fp8_bulk_{config.top_name}"


#: Verilator metacomment placed in the PE module of the registered build: keep the PE a
#: module of its own instead of inlining it into the array. Verilator still emits one
#: copy of the PE's code per instance, but as one function per PE (each touching its own
#: instance's state) rather than the whole array's logic in a few huge functions: 8x8
#: measured 0.40 - 0.43 s CPU against 0.54 - 0.58 for 62,789 cycles (-25 %), results
#: and cycles identical. (Verilator's hierarchical mode, one compiled PE model shared by
#: the 64 instances, measured 2x slower: every instance's ports are copied per cycle.
#: -O2 or -march=x86-64-v3 for the model's C++ instead of -Os: no change.)
NO_INLINE_PE = "/*verilator no_inline_module*/"


def registered_verilog(config: ArrayConfig) -> str:
    """Verilog of :class:`RegisteredInputsArray` (PE module first, as ``hw.verilog``),
    the PE marked :data:`NO_INLINE_PE`."""
    from amaranth.back import verilog
    pe_name, pe = hw_verilog._pe(config)
    top = RegisteredInputsArray(config=config, pe_module=pe_name)
    pe_text = verilog.convert(pe, name=pe_name, emit_src=False)
    header = re.search(rf"^module {re.escape(pe_name)}\b[^;]*;\n", pe_text, re.MULTILINE)
    if header is None:
        raise RuntimeError(f"no 'module {pe_name}(...);' header in the PE's Verilog")
    pe_text = pe_text[:header.end()] + f"  {NO_INLINE_PE}\n" + pe_text[header.end():]
    return pe_text + verilog.convert(top, name=registered_top_name(config), emit_src=False)
