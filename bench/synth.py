"""Silicon-cost comparison: ``python -m bench.synth [--out DIR] [--arrays] [--timeout S]``.

Prints (a report, not a test) the ``s2fp8 synth`` tables of the default blocks (S2FP8 MACs
at W=24 and W=8, decoder, PE, output path, FP32/BF16/E5M2 baseline MACs, and the MAC, PE
and FP32 MAC with the pipelined accumulator loop) through both flows, once with the
decode tables as memories and once as registers, the overhead of S2FP8 over each
baseline and the Fmax gain of the pipelined loop over the compact one; with ``--arrays`` also the 4x4 W=24 systolic array through
the hierarchical flow (``-noflatten``: flat synthesis of it ran past 10 minutes; its
place and route takes tens of minutes on 2 cores). JSON and bar charts go to DIR.
Tool runs are cached under ``synth_build/`` (a rerun with nothing changed is instant).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hw.synth import BLOCKS, DEFAULT_BLOCKS, DEFAULT_CACHE_DIR, TABLE_MODES, SynthError, \
    summary_json, synthesize
from pysim.cli.synth import format_clock_gains, format_overheads, format_table, plot

ARRAY_BLOCKS = tuple(name for name, block in BLOCKS.items() if block.hierarchical)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="synth_report", help="JSON and PNG directory")
    parser.add_argument("--arrays", action="store_true",
                        help=f"also {', '.join(ARRAY_BLOCKS)} (hierarchical; tens of minutes)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="limit of one tool run, seconds (default 3600)")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(DEFAULT_BLOCKS) + (list(ARRAY_BLOCKS) if args.arrays else [])

    for tables in TABLE_MODES:
        blocks = {}
        for name in names:
            started = time.monotonic()
            try:
                blocks[name] = synthesize(name, tables=tables, cache_dir=args.cache_dir,
                                          timeout=args.timeout)
            except SynthError as error:  # one block's failure (e.g. a timeout) is reported
                print(f"{name}: {error}", flush=True)
                continue
            print(f"{name} ({tables}): {time.monotonic() - started:.0f} s", flush=True)
        summary = summary_json(blocks)
        print(f"\n=== decode tables: {tables} ===")
        print(format_table(blocks))
        print()
        print(format_overheads(summary["overhead_percent"]))
        print()
        print(format_clock_gains(summary["clock_gain"]))
        (out / f"synth_{tables}.json").write_text(json.dumps(summary, indent=1) + "\n")
        plot(blocks, out / f"synth_{tables}.png", tables)
        print(f"wrote {out}/synth_{tables}.json, {out}/synth_{tables}.png\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
