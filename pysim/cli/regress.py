"""``s2fp8 regress``: the RTL regression (cocotb benches under Verilator) with a summary.

Runs every check of ``hw.tb.registry.all_checks()`` at the chosen level (quick: a few thousand
vectors each, full: >= 50,000 for the FP32 operators), prints one table row per check
(test, vectors, mismatches, seconds), the first mismatch of each failing check and the
seed. Exit code 1 on any mismatch or failed run, 0 otherwise.

The table (``format_summary`` / ``print_summary``) is shared with ``--vectors``; running
the checks is ``hw.tb.runner.run_checks``.
"""
from __future__ import annotations

import os
import sys
import zipfile
import zlib

HELP = "run the RTL regression (cocotb + Verilator) and print a summary table"
DEFAULT_SEED = 1


def add_arguments(parser) -> None:
    parser.add_argument("--level", choices=("quick", "full"), default="quick",
                        help="quick: ~5k vectors per check (default); full: >= 50k for the "
                             "FP32 operators")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed of the vectors and idle gaps (default {DEFAULT_SEED})")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these checks (names as in the table)")
    parser.add_argument("--vectors", metavar="FILE.npz",
                        help="run your own MAC vector file through the RTL instead: arrays "
                             "table_a, table_b (uint32[128]), codes_a, codes_b (uint8[S, L]), "
                             "init, expected (uint32[S], FP32 bits)")
    parser.add_argument("--mant-bits", type=int, default=24, metavar="W",
                        help="with --vectors: the MAC's decoded-significand width (default 24)")
    parser.add_argument("--tensors", metavar="FILE.npz",
                        help="run your own float32 tensors through the RTL output path "
                             "instead: array x (float32[S, L], S tensors of L finite values); "
                             "codes, alpha and beta compared with the golden model")
    parser.add_argument("-o", "--out", metavar="OUT.npz",
                        help="with --tensors: also write what the RTL produced: codes "
                             "(uint8[S, L]), alpha, beta (float32[S])")


def format_summary(reports, seed: int, title: str = "RTL regression") -> str:
    width = max([len("test")] + [len(r.name) for r in reports])
    lines = [f"{title} (seed {seed})",
             f"  {'test':<{width}}  {'vectors':>9}  {'mismatches':>10}  {'seconds':>8}  status"]
    for r in reports:
        status = "ok" if r.ok else ("ERROR" if r.errors and not r.mismatches else "FAIL")
        lines.append(f"  {r.name:<{width}}  {r.vectors:>9,}  {r.mismatches:>10,}  "
                     f"{r.seconds:>8.1f}  {status}")
    total_v = sum(r.vectors for r in reports)
    total_m = sum(r.mismatches for r in reports)
    total_s = sum(r.seconds for r in reports)
    lines.append(f"  {'total':<{width}}  {total_v:>9,}  {total_m:>10,}  {total_s:>8.1f}")
    for r in reports:
        notes = ([f"{r.rate:,.0f} vectors/s simulated"] if r.rate else []) + r.notes
        if notes and r.ok:
            lines.append(f"  {r.name}: " + "; ".join(notes))
    for r in reports:
        if not r.ok:
            lines.append(f"  {r.name}: first failure: {r.first_mismatch}")
            for extra in r.errors[1:]:
                lines.append(f"  {' ' * len(r.name)}  {extra}")
    return "\n".join(lines)


def print_summary(reports, seed: int, title: str = "RTL regression", file=None) -> int:
    """Print the table; return the exit code (0 all ok, 1 otherwise)."""
    print(format_summary(reports, seed, title), file=file or sys.stdout)
    return 0 if all(r.ok for r in reports) else 1


def run(args) -> int:
    from pysim.errors import BadInput
    from hw.tb.registry import all_checks
    from hw.tb.runner import run_checks
    from hw.toolchain import ToolchainError, ensure_verilator
    checks = all_checks()
    if args.only:
        known = {c.name for c in checks}
        unknown = [name for name in args.only if name not in known]
        if unknown:
            raise BadInput(f"--only: unknown check {unknown[0]!r} "
                           f"(known: {', '.join(sorted(known))})")
        checks = [c for c in checks if c.name in args.only]
    if args.seed < 0:
        raise BadInput(f"--seed must be >= 0, got {args.seed}")
    if args.vectors and args.tensors:
        raise BadInput("--vectors and --tensors: give one of them")
    if args.out and not args.tensors:
        raise BadInput("-o/--out is only for --tensors")
    try:
        info = ensure_verilator()
    except ToolchainError as error:
        raise BadInput(str(error)) from None
    if args.vectors:
        return _run_vector_file(args, info)
    if args.tensors:
        return _run_tensor_file(args, info)
    print(f"s2fp8 regress: level {args.level}, seed {args.seed}, verilator "
          f"{info.version_text} ({info.source})", flush=True)
    reports = run_checks(checks, args.level, args.seed,
                         progress=lambda text: print(f"  {text}", flush=True))
    return print_summary(reports, args.seed)


def check_vector_archive(path, option: str = "--vectors") -> None:
    """``path`` must be a readable zip archive (what ``numpy.savez`` writes): an empty or
    truncated file, or a single ``.npy`` array, is bad input naming the file, checked
    before numpy reads it (numpy raises EOFError, BadZipFile or returns an array)."""
    from pysim.errors import BadInput
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as error:
        raise BadInput(f"{option}: {path}: cannot read: {error.strerror or error}") from None
    if not os.path.isfile(path):
        raise BadInput(f"{option}: {path}: no such file")
    if not is_zip:
        raise BadInput(f"{option}: {path}: not a .npz file (a zip archive of arrays, as "
                       f"numpy.savez writes; the file is empty, truncated or another format)")


def _run_vector_file(args, info) -> int:
    """``--vectors FILE.npz``: the file's sequences through the MAC RTL, mismatches counted
    and the first failing sequence printed decoded."""
    from pysim.errors import BadInput
    from pysim.numerics.formats import check_mant_bits
    from hw.tb.mac_checks import VectorFileError, load_vector_file, run_vector_file
    try:
        check_mant_bits(args.mant_bits)
    except (TypeError, ValueError) as error:
        raise BadInput(f"--mant-bits: {error}") from None
    check_vector_archive(args.vectors)
    try:
        load_vector_file(args.vectors)       # validate before building anything
    except VectorFileError as error:
        raise BadInput(f"--vectors: {error}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError, TypeError,
            KeyError) as error:              # a damaged member of a valid-looking archive
        raise BadInput(f"--vectors: {args.vectors}: not a readable .npz file "
                       f"({type(error).__name__}: {error})") from None
    print(f"s2fp8 regress: vectors {args.vectors}, W={args.mant_bits}, seed {args.seed}, "
          f"verilator {info.version_text} ({info.source})", flush=True)
    report = run_vector_file(args.vectors, args.seed, mant_bits=args.mant_bits)
    report.name = "vectors"
    return print_summary([report], args.seed, title=f"MAC vectors {args.vectors}")


def _run_tensor_file(args, info) -> int:
    """``--tensors FILE.npz [-o OUT.npz]``: the file's tensors through both passes of the
    RTL output path; exit 0 when codes, alpha and beta all equal the golden model, 1 with
    the first difference decoded, 2 for a bad file (checked before anything is built)."""
    from pysim.errors import BadInput
    from pysim.files import check_outputs
    from hw.tb.outpath_checks import TensorFileError, load_tensor_file, run_tensor_file
    check_vector_archive(args.tensors, "--tensors")
    try:
        x = load_tensor_file(args.tensors)   # validate before building anything
    except TensorFileError as error:
        raise BadInput(f"--tensors: {error}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError, TypeError,
            KeyError) as error:              # a damaged member of a valid-looking archive
        raise BadInput(f"--tensors: {args.tensors}: not a readable .npz file "
                       f"({type(error).__name__}: {error})") from None
    if args.out:
        check_outputs([args.out], inputs=[args.tensors])
    print(f"s2fp8 regress: tensors {args.tensors} ({x.shape[0]} x {x.shape[1]} float32), "
          f"seed {args.seed}, verilator {info.version_text} ({info.source})", flush=True)
    report = run_tensor_file(args.tensors, args.seed, out=args.out)
    report.name = "tensors"
    code = print_summary([report], args.seed, title=f"output path tensors {args.tensors}")
    if args.out:
        print(f"wrote {args.out}: codes uint8{list(x.shape)}, alpha, beta float32[{x.shape[0]}]")
    return code
