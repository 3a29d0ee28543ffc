"""``s2fp8 accuracy TRACE [--mant-bits W] [--max-macs N] [--csv FILE] [--plot FILE.png]
[--skip-missing] [--quiet]``: GEMM errors of S2FP8 (bit-exact golden model) vs plain
FP8 E5M2 / E4M3 on the captured operands of a trace (pysim.accuracy.gemm_error, docs/capture.md).
"""
from __future__ import annotations

import argparse
import sys

from pysim.errors import BadInput
from pysim.numerics.formats import MANT_BITS_MAX, MANT_BITS_MIN

HELP = "GEMM error of S2FP8 vs plain FP8 (E5M2, E4M3) on a trace's captured tensors"

EPILOG = """\
TRACE is a trace JSON with captured tensors (s2fp8 trace capture MODEL --tensors), e.g.
traces/digits_cnn/digits_cnn.json. Errors are relative Frobenius errors against a float64
reference; S2FP8 uses the bit-exact hardware model (pysim.numerics.golden.gemm).

exit codes:
  0  ok
  1  internal error
  2  bad input (missing file, malformed trace, a GEMM without tensors, NaN/Inf in a
     tensor, bad option, unwritable output): one line on stderr naming the
     file/layer/field/value; no output file is written
"""


def add_arguments(parser) -> None:
    from pysim.accuracy.gemm_error import DEFAULT_MAX_MACS
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("trace", metavar="TRACE", help="trace .json with captured tensors")
    parser.add_argument("--mant-bits", "-W", default=str(MANT_BITS_MAX), metavar="W",
                        help=f"significant bits of the decoded S2FP8 operands "
                             f"({MANT_BITS_MIN}..{MANT_BITS_MAX}, default {MANT_BITS_MAX})")
    parser.add_argument("--max-macs", default=str(DEFAULT_MAX_MACS), metavar="N",
                        help=f"sample GEMMs above N MACs (rows of A, columns of B; default "
                             f"{DEFAULT_MAX_MACS:,})")
    parser.add_argument("--csv", metavar="FILE", help="write the per-GEMM table as CSV")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="write a PNG: error per GEMM and format (grouped bars, log)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="skip GEMMs without captured tensors instead of failing")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print only the summary; no progress bar")


def run(args) -> int:
    from pysim.accuracy.gemm_error import format_table, to_csv, to_png, trace_accuracy
    from pysim.cli.cycles import parse_int_option
    from pysim.files import atomic_write_many, check_outputs
    from pysim.workload.trace import load_trace

    mant_bits = parse_int_option("--mant-bits", args.mant_bits, MANT_BITS_MIN, MANT_BITS_MAX)
    max_macs = parse_int_option("--max-macs", args.max_macs, 1)
    if args.plot and not args.plot.lower().endswith(".png"):
        raise BadInput(f"--plot: the output must be a .png file, got {args.plot!r}")
    trace = load_trace(args.trace)
    inputs = [args.trace] + sorted({str(ref.path) for entry in trace.layers
                                    for refs in entry.tensors.values()
                                    for ref in refs.values()})
    check_outputs([args.csv, args.plot], inputs)  # before the work
    bar = None
    if not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=len(trace.gemms()), desc="accuracy", unit="GEMM", file=sys.stderr,
                   leave=False, delay=2.0)
    try:
        rows, skipped = trace_accuracy(trace, mant_bits, max_macs, args.skip_missing,
                                       progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    title = (f"{args.trace}: model {trace.model!r}, {len(rows)} GEMMs with tensors, "
             f"S2FP8 W={mant_bits}")
    outputs = {}
    if args.csv:
        outputs[args.csv] = to_csv(rows)
    if args.plot:
        outputs[args.plot] = to_png(rows, title)
    if outputs:
        atomic_write_many(outputs, inputs)
    print(format_table(rows, title, args.quiet))
    if skipped:
        print(f"skipped {len(skipped)} GEMM(s) without tensors: "
              + ", ".join(f"{l} {p}" for l, p in skipped[:8])
              + (" ..." if len(skipped) > 8 else ""))
    return 0
