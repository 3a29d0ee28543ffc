"""``s2fp8 verilog``: Verilog of every top-level block (``hw.verilog``), optionally linted.

All or nothing: the files are generated into a temporary directory inside ``--out-dir``
and moved in only when every one is done (an interrupt leaves the directory as it was).
"""
from __future__ import annotations

import filecmp
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
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


def _move_in(staging: Path, out_dir: Path) -> None:
    """Move every file of ``staging`` into ``out_dir`` (same file system: renames), with
    Ctrl-C held back so an interrupt cannot leave half of the set: generation takes
    ~15 s and writes into ``staging`` first, an interrupt there leaves ``out_dir`` as it
    was. Files whose content is unchanged are left alone (their mtime too); a replaced
    file keeps its permission bits."""
    names = sorted(path.name for path in staging.iterdir())
    blocked = threading.current_thread() is threading.main_thread()
    if blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        for name in names:
            target = out_dir / name
            if target.is_file():
                if filecmp.cmp(staging / name, target, shallow=False):
                    continue
                os.chmod(staging / name, stat.S_IMODE(target.stat().st_mode))
            os.replace(staging / name, target)
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


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
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".s2fp8-verilog.", dir=out_dir))
    except OSError as error:
        raise BadInput(f"cannot write to {out_dir}: {error.strerror or error}") from None
    try:
        staged = generate(widths, staging,
                          on_written=lambda path: print(f"generated {path.name}", flush=True))
        _move_in(staging, out_dir)
    except OSError as error:
        raise BadInput(f"cannot write to {out_dir}: {error.strerror or error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    paths = [out_dir / path.name for path in staged]
    print(f"wrote {len(paths)} Verilog files to {out_dir}", flush=True)
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
