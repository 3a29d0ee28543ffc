"""``s2fp8 cycles``: cycles, utilization and operand bytes of every GEMM of a network.

The input is a trace JSON, a SCALE-Sim topology CSV, an ONNX model or the name of a
built-in model (``pysim.workload.models.MODELS``: a training step, forward + dgrad + wgrad, via
``training_step_gemms``). The cycle model is the closed form of docs/array.md
(``pysim.perf.cycles.breakdown``, vectorized). Output files (``--csv``, ``--json``,
``--plot``) are written all-or-nothing: on any error none of them is created.
"""
from __future__ import annotations

import argparse
import sys

from pysim.errors import BadInput

HELP = "cycles, utilization and S2FP8/FP32 bytes of every GEMM of a trace or model"

EPILOG = """\
TRACE is a trace JSON (docs/traces.md), a SCALE-Sim topology CSV (.csv), an ONNX model
(.onnx) or a built-in model name ({models}).

exit codes:
  0  ok
  1  internal error
  2  bad input (array size, file, model name, malformed CSV/JSON/ONNX, unwritable
     output): one line on stderr naming the file/line/layer/field/value; no output
     file is written
"""


def add_arguments(parser) -> None:
    from pysim.workload.models import MODELS
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG.format(models=", ".join(MODELS))
    parser.add_argument("trace", metavar="TRACE",
                        help="trace .json, SCALE-Sim .csv, .onnx, or built-in model name")
    parser.add_argument("--rows", required=True, metavar="R",
                        help="array rows (1..64)")
    parser.add_argument("--cols", required=True, metavar="C",
                        help="array columns (1..64)")
    parser.add_argument("--mant-bits", "-W", default="24", metavar="W",
                        help="decoded-significand width of the array (1..24, default 24); "
                             "recorded in the report, the cycle count does not depend on it")
    parser.add_argument("--acc-stages", "-L", default="1", metavar="L",
                        help="accumulator loop depth of each PE (1..6, default 1: the compact "
                             "array; 6: the pipelined array, 3.3-3.5x the clock, L tiles "
                             "interleaved: docs/array.md)")
    parser.add_argument("--batch", metavar="N", default=None,
                        help="batch of SCALE-Sim conv rows and of a symbolic ONNX batch "
                             "dimension (default 1); refused for inputs with a fixed batch "
                             "(built-in models, trace JSON, GEMM-form CSV, ONNX models "
                             "without a symbolic batch unless N equals theirs)")
    parser.add_argument("--training", action="store_true",
                        help="for .csv/.onnx/.json inputs: forward + dgrad + wgrad of every "
                             "layer (built-in models always are a training step)")
    parser.add_argument("--csv", metavar="FILE", help="write the per-GEMM table as CSV")
    parser.add_argument("--json", metavar="FILE", help="write the per-GEMM table as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="write a PNG: cycles per GEMM (bars, log) and utilization (line)")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print only the totals, not one row per GEMM")
    memory = parser.add_argument_group(
        "memory model (docs/memory.md); any of these adds stalls, DRAM bytes and energy "
        "per operand format, and --json then holds them per format")
    memory_options = [
        memory.add_argument("--config", metavar="ACC.toml",
                            help="accelerator TOML: buffers, DRAM bandwidth, clock, formats, "
                                 "energy"),
        memory.add_argument("--dram-bw", metavar="BYTES_PER_CYCLE",
                            help="DRAM bandwidth in bytes per cycle, or inf (default 32)"),
        memory.add_argument("--buffer-kib", metavar="N",
                            help="on-chip A + B operand buffers in KiB, split evenly, or inf "
                                 "(default 256)"),
        memory.add_argument("--formats", metavar="LIST",
                            help="operand formats side by side, e.g. s2fp8,bf16,fp32 "
                                 "(s2fp8, e5m2, e4m3, bf16, fp16, fp32)"),
        memory.add_argument("--roofline", metavar="FILE.png",
                            help="write a roofline PNG: every GEMM a point per format"),
    ]
    # run() imports the memory model (pysim.perf.memory, 17-20 ms) only when one of
    # these options is given: the plain cycle table does not need it.
    parser.set_defaults(memory_options=tuple(action.dest for action in memory_options))


def parse_int_option(option: str, text, minimum: int, maximum: int | None = None) -> int:
    """An integer option given as text (ASCII digits, below 2^63) -> int, or a one-line
    ``BadInput``."""
    from pysim.validate import INT_TEXT_MAX, is_int, parse_int_text
    maximum = INT_TEXT_MAX if maximum is None else maximum
    if is_int(text):  # a default given as an int
        if not (minimum <= text <= maximum):
            raise BadInput(f"{option}: must be an integer in {minimum}..{maximum}, got {text}")
        return int(text)
    return parse_int_text(text, f"{option}:", minimum=minimum, maximum=maximum)


def check_batch_applies(spec: str, batch: int | None) -> None:
    """``--batch`` sets the batch of SCALE-Sim conv rows and of a symbolic ONNX batch
    dimension; given for an input whose batch is fixed (a built-in model, a trace JSON)
    it would be silently ignored, so it is refused (a GEMM-form CSV is refused by
    :func:`pysim.workload.importers.scalesim.import_scalesim`, an ONNX model without a
    symbolic batch dimension by :func:`pysim.workload.importers.onnx_model.import_onnx`,
    which reads the shapes)."""
    from pathlib import Path

    from pysim.workload.models import MODELS
    if batch is None:
        return
    if spec in MODELS and not Path(spec).exists():
        raise BadInput(f"--batch: the built-in model {spec!r} has a fixed batch; --batch "
                       f"applies to SCALE-Sim conv CSVs and ONNX models only")
    if Path(spec).suffix.lower() == ".json":
        raise BadInput(f"--batch: a trace JSON ({spec}) fixes the batch of every layer; "
                       f"--batch applies to SCALE-Sim conv CSVs and ONNX models only")


def warn_unsupported(prog: str, source: str, unsupported) -> None:
    """One warning line per unsupported op type, naming every node."""
    by_op: dict[str, list[str]] = {}
    for node, op_type in unsupported:
        by_op.setdefault(op_type, []).append(node)
    for op_type, nodes in by_op.items():
        print(f"{prog}: warning: {source}: {len(nodes)} {op_type} node(s) not simulated "
              f"(not a GEMM layer): {', '.join(nodes)}", file=sys.stderr)


def run(args) -> int:
    from pysim.perf.arch import ACC_STAGES, ARRAY_DIM_MAX, ARRAY_DIM_MIN
    from pysim.numerics.formats import MANT_BITS_MAX, MANT_BITS_MIN
    from pysim.workload.importers import load_input
    from pysim.workload.models import MODELS, build_model, training_step_gemms
    from pysim.perf.report import cycle_report, format_table, to_csv, to_json, to_png
    from pysim.files import atomic_write_many, check_outputs

    rows = parse_int_option("--rows", args.rows, ARRAY_DIM_MIN, ARRAY_DIM_MAX)
    cols = parse_int_option("--cols", args.cols, ARRAY_DIM_MIN, ARRAY_DIM_MAX)
    mant_bits = parse_int_option("--mant-bits", args.mant_bits, MANT_BITS_MIN, MANT_BITS_MAX)
    acc_stages = parse_int_option("--acc-stages", args.acc_stages, min(ACC_STAGES),
                                  max(ACC_STAGES))
    memory_requested = any(getattr(args, option) is not None for option in args.memory_options)
    if acc_stages > 1 and memory_requested:
        raise BadInput("--acc-stages: the memory model streams whole tiles to the compact "
                       "array (acc_stages 1); an interleaved array with memory options is "
                       "not modelled")
    batch = None if args.batch is None else parse_int_option("--batch", args.batch, 1)
    check_batch_applies(args.trace, batch)
    for option in ("csv", "json", "plot"):
        value = getattr(args, option)
        if value is not None and not value:
            raise BadInput(f"--{option}: empty file name")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise BadInput(f"--plot: the file name must end in .png, got {args.plot!r}")
    from pathlib import Path
    inputs = [args.trace] if Path(args.trace).is_file() else []
    inputs += [args.config] if args.config else []
    check_outputs([args.csv, args.json, args.plot, args.roofline], inputs)  # before the work

    unsupported = []
    if args.trace in MODELS and not Path(args.trace).exists():
        gemms = training_step_gemms(build_model(args.trace))
        source = args.trace
    else:
        trace = load_input(args.trace, batch=batch, training=args.training)
        gemms = trace.gemms()
        source = args.trace
        unsupported = list(trace.unsupported)
    warn_unsupported("s2fp8 cycles", source, unsupported)
    if not gemms:
        raise BadInput(f"{source}: no GEMM to run (every requested phase was dropped)")

    report = cycle_report(gemms, rows, cols, mant_bits, source=source, acc_stages=acc_stages)
    memory_text, memory_files = "", {}
    if memory_requested:
        from pysim.perf.memory import memory_cli_outputs
        memory_text, memory_files = memory_cli_outputs(args, gemms, source, rows, cols,
                                                       mant_bits)
    outputs = {}
    if args.csv:
        outputs[args.csv] = to_csv(report)
    if args.json:
        outputs[args.json] = to_json(report, unsupported)
    if args.plot:
        outputs[args.plot] = to_png(report)
    outputs.update(memory_files)
    atomic_write_many(outputs, inputs)
    sys.stdout.write(format_table(report, quiet=args.quiet) + memory_text)
    for path in outputs:
        print(f"wrote {path}")
    return 0
