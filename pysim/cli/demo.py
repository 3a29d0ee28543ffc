"""``s2fp8 demo``: the main job on built-in defaults.

1. Cycles of one ResNet-50 training step (batch 32, 224x224; forward, dgrad and wgrad of
   every convolution and the FC layer) on a 16x16 S2FP8 systolic array (the cycle model,
   which equals the RTL: docs/array.md).
2. The same step under a memory system, formats side by side (``pysim.perf.memory``):
   S2FP8, BF16 and FP32 operands on the same array with the default accelerator
   (``DEMO_ACCELERATOR``: 256 KiB of operand buffers, 64 KiB of results, double-buffered,
   32 B/cycle of DRAM, FP32 results): cycles, stalls, DRAM bytes and energy per format,
   and a roofline (every GEMM a point per format).
3. Accuracy of the captured digits-CNN training step (traces/digits_cnn, real tensors):
   every GEMM through the bit-exact S2FP8 golden model against FP64, beside plain E5M2
   and E4M3 without scaling.
Writes the three plots into ``--out-dir`` (default ``s2fp8_demo/``).
"""
from __future__ import annotations

import time
from pathlib import Path

HELP = ("ResNet-50 training-step cycles on a 16x16 array, formats side by side under a memory "
        "system, digits-CNN accuracy report, with plots")

#: The captured digits-CNN trace shipped with the repository.
DIGITS_TRACE = Path(__file__).resolve().parents[2] / "traces" / "digits_cnn" / "digits_cnn.json"
DEFAULT_MODEL, DEFAULT_ROWS, DEFAULT_COLS = "resnet50", 16, 16
#: the operand formats compared (same array, same compute cycles; what differs is what
#: the operands cost to move and store)
DEMO_FORMATS = ("s2fp8", "bf16", "fp32")


def add_arguments(parser) -> None:
    parser.add_argument("--out-dir", default="s2fp8_demo",
                        help="where the plots go (default: s2fp8_demo/)")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="totals and summaries only, no per-GEMM tables")


def run(args) -> int:
    from pysim import accuracy
    from pysim.errors import BadInput
    from pysim.perf import report
    from pysim.perf.accel import Accelerator
    from pysim.perf.memory import format_memory_table, memory_report
    from pysim.perf.roofline import roofline_png
    from pysim.workload.models import build_model, training_step_gemms
    from pysim.workload.trace import atomic_write_many, load_trace

    start = time.perf_counter()
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"--out-dir: {out_dir} exists and is not a directory")
    try:  # first, so an unusable --out-dir fails before the 4 s of work
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInput(f"--out-dir: cannot create {out_dir}: "
                       f"{error.strerror or error}") from None

    gemms = training_step_gemms(build_model(DEFAULT_MODEL))
    cycles = report.cycle_report(gemms, DEFAULT_ROWS, DEFAULT_COLS, source=DEFAULT_MODEL)
    # the accelerator's documented defaults (docs/memory.md) on the demo's array
    memory = memory_report(gemms, Accelerator(rows=DEFAULT_ROWS, cols=DEFAULT_COLS),
                           DEMO_FORMATS, source=DEFAULT_MODEL)
    trace = load_trace(DIGITS_TRACE)
    rows, _ = accuracy.trace_accuracy(trace)
    title = f"digits CNN training step ({DIGITS_TRACE.name}), S2FP8 W=24"

    cycles_png, accuracy_png = out_dir / "resnet50_cycles.png", out_dir / "digits_accuracy.png"
    roofline = out_dir / "resnet50_roofline.png"
    atomic_write_many({str(cycles_png): report.to_png(cycles),
                       str(roofline): roofline_png(memory),
                       str(accuracy_png): accuracy.to_png(rows, title)})

    print(f"== ResNet-50 training step (batch 32, 224x224) on a {DEFAULT_ROWS}x{DEFAULT_COLS} "
          f"S2FP8 array ==")
    print(report.format_table(cycles, quiet=args.quiet), end="")
    print(f"\n== The same step under a memory system: {', '.join(DEMO_FORMATS)} operands ==")
    print(format_memory_table(memory, quiet=True).lstrip("\n"), end="")
    print(f"\n== S2FP8 vs plain FP8 on a captured training step ==")
    print(accuracy.format_table(rows, title, args.quiet))
    print(f"\nwrote {cycles_png}, {roofline} and {accuracy_png} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0
