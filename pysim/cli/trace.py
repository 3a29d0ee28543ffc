"""``s2fp8 trace``: work with layer traces (docs/traces.md).

Sub-commands live in :data:`SUBCOMMANDS`, name -> an object (or the dotted name of a
module) exposing ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``, the same
contract as the top-level commands of ``pysim.cli``:

- ``import``: SCALE-Sim CSV / ONNX / trace JSON -> a validated trace JSON;
- ``capture`` (:mod:`pysim.cli.capture`): run a PyTorch model of the zoo forward and
  backward and record its GEMMs (and optionally their operand tensors) into a trace.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from pysim.errors import BadInput

HELP = "layer traces: import a SCALE-Sim CSV or ONNX model into a trace JSON"

EPILOG = """\
exit codes:
  0  ok
  1  internal error
  2  bad input: one line on stderr naming the file/line/layer/field/value; no output
     file is written
"""


class ImportCommand:
    """``s2fp8 trace import FILE -o OUT.json [--batch N] [--training]``"""

    HELP = "convert a SCALE-Sim topology CSV, an ONNX model or a trace JSON to a trace JSON"

    @staticmethod
    def add_arguments(parser) -> None:
        parser.add_argument("file", metavar="FILE",
                            help="input: SCALE-Sim topology .csv, .onnx, or trace .json "
                                 "(format chosen by the extension)")
        parser.add_argument("-o", "--output", required=True, metavar="OUT.json",
                            help="trace JSON to write (atomically)")
        parser.add_argument("--batch", metavar="N", default=None,
                            help="batch of SCALE-Sim conv rows and of a symbolic ONNX "
                                 "batch dimension (default 1); refused for a trace JSON, "
                                 "a GEMM-form CSV or an ONNX model without a symbolic "
                                 "batch (their batch is fixed)")
        parser.add_argument("--training", action="store_true",
                            help="forward + dgrad + wgrad of every layer (default: "
                                 "forward only); the first layer has no dgrad")

    @staticmethod
    def run(args) -> int:
        from pysim.cli.cycles import check_batch_applies, parse_int_option, warn_unsupported
        from pysim.files import check_outputs
        from pysim.workload.importers import import_file
        from pysim.workload.trace import save_trace

        batch = None if args.batch is None else parse_int_option("--batch", args.batch, 1)
        check_batch_applies(args.file, batch)
        if not args.output.lower().endswith(".json"):
            raise BadInput(f"-o: the output must be a .json file, got {args.output!r}")
        check_outputs([args.output], [args.file])
        trace = import_file(args.file, batch=batch, training=args.training)
        warn_unsupported("s2fp8 trace import", args.file, trace.unsupported)
        save_trace(trace, args.output)
        gemms = trace.gemms()
        print(f"wrote {args.output}: model {trace.model!r}, {len(trace.layers)} layers, "
              f"{len(gemms)} GEMMs, {sum(g.macs for g in gemms):,} MACs"
              + (f", {len(trace.unsupported)} unsupported nodes" if trace.unsupported else ""))
        return 0


#: sub-command name -> object or module name with HELP, add_arguments, run
SUBCOMMANDS: dict[str, object] = {
    "import": ImportCommand,
    "capture": "pysim.cli.capture",
}


def _resolve(entry):
    return importlib.import_module(entry) if isinstance(entry, str) else entry


def add_arguments(parser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="trace_command", required=True, metavar="SUBCOMMAND")
    for name, entry in SUBCOMMANDS.items():
        command = _resolve(entry)
        child = sub.add_parser(name, help=command.HELP, description=command.HELP,
                               epilog=EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_arguments(child)
        child.set_defaults(trace_run=command.run)


def run(args) -> int:
    return args.trace_run(args)
