"""``s2fp8 verilog``: Verilog of every top-level block (``hw.verilog``), optionally linted."""
from __future__ import annotations

import sys
from pathlib import Path

from hw.verilog import DEFAULT_MANT_BITS, DEFAULT_OUT_DIR, LINT_WAIVERS, generate, lint
from pysim.errors import BadInput
from pysim.numerics.formats import FP32, check_mant_bits

HELP = "generate Verilog for every top-level block (FP32 mul/add, ...) into a directory"

def add_arguments(parser) -> None:
    parser.add_argument("--mant-bits", "-W", type=int, nargs="+", metavar="W",
                        default=list(DEFAULT_MANT_BITS),
                        help="decoded-significand widths for the {W} blocks "
                             f"(default: {' '.join(map(str, DEFAULT_MANT_BITS))}; "
                             f"W={FP32.precision} is always emitted for the FP32 multiplier)")
    parser.add_argument("-o", "--out-dir", default=DEFAULT_OUT_DIR,
                        help=f"output directory (default: {DEFAULT_OUT_DIR}, relative to the "
                             "current directory)")
    parser.add_argument("--lint", action="store_true",
                        help="then run verilator --lint-only -Wall (with the waivers) on each "
                             "file; exit 1 on any warning")


def run(args) -> int:
    widths = []
    for w in args.mant_bits:
        try:
            widths.append(check_mant_bits(w))
        except (TypeError, ValueError) as error:
            raise BadInput(f"--mant-bits: {error}") from None
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"--out-dir {out_dir} exists and is not a directory")
    try:
        paths = generate(widths, out_dir, on_written=lambda path: print(path, flush=True))
    except OSError as error:
        raise BadInput(f"cannot write to {out_dir}: {error.strerror or error}") from None
    if args.lint:
        from hw.toolchain import ToolchainError
        try:
            clean, output = lint(paths)
        except ToolchainError as error:
            raise BadInput(str(error)) from None
        if not clean:
            print(output, file=sys.stderr)
            return 1
        print(f"lint: {len(paths)} files clean (verilator -Wall, waivers {LINT_WAIVERS.name})")
    return 0
