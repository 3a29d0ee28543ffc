"""``s2fp8 train [--modes LIST] [--loss-scale N] [--seeds LIST] [--epochs N] [--model M]
[--json FILE] [--plot FILE.png] [--quiet]``: train a model with every GEMM operand in
S2FP8 (pysim's formula, or the hardware output path's rule: ``s2fp8-hw``), FP32, plain
E5M2 or E4M3 and compare the final accuracies (pysim.accuracy.train, docs/training.md).
Needs the torch extra.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

from pysim.errors import BadInput

HELP = "train ResNet-8 on digits with GEMM operands in S2FP8 vs FP32 vs plain FP8"

DEFAULT_MODES = "fp32,s2fp8,s2fp8-hw,e5m2,e4m3"
DEFAULT_LOSS_SCALE = "1024"
DEFAULT_SEEDS = "0,1"
DEFAULT_EPOCHS = 30
INSTALL = 'pip install torch==2.13.0 && pip install -e ".[torch]"'

EPILOG = f"""\
The defaults run the headline comparison of docs/training.md: ResNet-8 (channels
16/32/64, strides 1) on scikit-learn's bundled load_digits, batch 512, SGD momentum 0.9,
lr 0.2 cosine, weight decay 5e-4, {DEFAULT_EPOCHS} epochs, 2 threads, seeds {DEFAULT_SEEDS},
in FP32, S2FP8, S2FP8-HW (the statistics and threshold encoder of the hardware output
path), E5M2, E4M3 and E5M2 with loss scale {DEFAULT_LOSS_SCALE}. Forward, the
weights and activations of every conv and Linear are quantized; backward, the incoming
gradient; the rest (accumulation, master weights, BatchNorm) stays FP32.

--model transformer: a 2-block Transformer (width 32) on a generated marked-token
sequence task, same optimizer settings; every Linear (embedding, Q/K/V/output, MLP,
head) quantized, softmax, LayerNorm and the Q K^T, P V products FP32 (docs/training.md).

exit codes:
  0  ok
  1  internal error
  2  bad input (unknown mode or model, bad seed list, epochs or loss scale, plot not
     .png, unwritable output, torch not installed): one line on stderr; no output file
     is written
"""


def add_arguments(parser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--modes", default=DEFAULT_MODES, metavar="LIST",
                        help=f"comma-separated formats of the GEMM operands, from "
                             f"fp32, s2fp8, s2fp8-hw, e5m2, e4m3 (default {DEFAULT_MODES})")
    parser.add_argument("--loss-scale", default=DEFAULT_LOSS_SCALE, metavar="N",
                        help="add an E5M2 run whose loss is multiplied by N (the gradients "
                             "divided by N before the FP32 optimizer step) when e5m2 is "
                             f"among the modes; 0: no such run (default {DEFAULT_LOSS_SCALE})")
    parser.add_argument("--seeds", default=DEFAULT_SEEDS, metavar="LIST",
                        help=f"comma-separated seeds, one run per mode and seed (default "
                             f"{DEFAULT_SEEDS})")
    parser.add_argument("--epochs", default=str(DEFAULT_EPOCHS), metavar="N",
                        help=f"training epochs (default {DEFAULT_EPOCHS})")
    parser.add_argument("--model", default="resnet8", metavar="MODEL",
                        help="resnet8 or mlp (load_digits), or transformer (a generated "
                             "marked-token sequence task) (default resnet8)")
    parser.add_argument("--train-subset", metavar="N",
                        help="train on the first N training images (sequences) only "
                             "(quick looks)")
    parser.add_argument("--json", metavar="FILE", help="write every run as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="write the loss and test-accuracy curves as a PNG")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def _parse_list(option: str, text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise BadInput(f"{option}: expected a comma-separated list, got {text!r}")
    if len(set(items)) != len(items):
        raise BadInput(f"{option}: {text!r} lists an entry twice")
    return items


def parse_modes(text: str) -> list[str]:
    from pysim.accuracy.quantize import MODES
    modes = [mode.lower() for mode in _parse_list("--modes", text)]
    for mode in modes:
        if mode not in MODES:
            raise BadInput(f"--modes: unknown mode {mode!r} (choose from {', '.join(MODES)})")
    return modes


def parse_seeds(text: str) -> list[int]:
    from pysim.cli.cycles import parse_int_option
    return [parse_int_option("--seeds", seed, 0, 2 ** 32 - 1)
            for seed in _parse_list("--seeds", text)]


def parse_loss_scale(text: str) -> float | None:
    try:
        scale = float(text)
    except ValueError:
        raise BadInput(f"--loss-scale: expected a number, got {text!r}") from None
    if not math.isfinite(scale) or scale < 0:
        raise BadInput(f"--loss-scale: expected a finite number >= 0, got {text!r}")
    return scale or None


def run_plan(modes, seeds, loss_scale) -> list[tuple[str, float | None, int]]:
    """(mode, loss_scale, seed) of every run, grouped by format: the modes in order, the
    loss-scaled E5M2 right after the plain E5M2."""
    formats = []
    for mode in modes:
        formats.append((mode, None))
        if mode == "e5m2" and loss_scale is not None:
            formats.append((mode, loss_scale))
    return [(mode, scale, seed) for mode, scale in formats for seed in seeds]


def run(args) -> int:
    from pysim.cli.cycles import parse_int_option
    from pysim.files import atomic_write_many

    try:
        import sklearn  # noqa: F401
        import torch  # noqa: F401
    except ImportError as error:
        raise BadInput(f"s2fp8 train needs torch and scikit-learn ({error.name} is missing): "
                       f"{INSTALL}") from None
    from pysim.accuracy.train import (
        DATASETS, MODELS, TrainConfig, format_table, load_data, to_png, train_run)

    modes = parse_modes(args.modes)
    seeds = parse_seeds(args.seeds)
    loss_scale = parse_loss_scale(args.loss_scale)
    epochs = parse_int_option("--epochs", args.epochs, 1, 10_000)
    subset = (None if args.train_subset is None
              else parse_int_option("--train-subset", args.train_subset, 1))
    if args.model not in MODELS:
        raise BadInput(f"--model: unknown model {args.model!r} (choose from "
                       f"{', '.join(MODELS)})")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise BadInput(f"--plot: the output must be a .png file, got {args.plot!r}")

    data = load_data(subset, args.model)
    plan = run_plan(modes, seeds, loss_scale)
    runs = []
    start = time.perf_counter()
    for mode, scale, seed in plan:
        config = TrainConfig(mode=mode, seed=seed, loss_scale=scale, model=args.model,
                             epochs=epochs, train_subset=subset)
        bar = None
        if not args.quiet:
            from tqdm import tqdm
            bar = tqdm(total=epochs, desc=f"{config.label} seed {seed}", unit="epoch",
                       file=sys.stderr, leave=False)

        def progress(epoch, loss, accuracy, bar=bar):
            bar.set_postfix(loss=f"{loss:.4f}", test=f"{accuracy:.1f}%", refresh=False)
            bar.update(1)
        try:
            result = train_run(config, data, progress if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
        runs.append(result)
        outcome = (f"NaN loss at epoch {result.diverged_epoch}" if result.diverged_epoch
                   else f"test {result.test_accuracy:.1f} %, train loss "
                        f"{result.final_train_loss:.4f}")
        print(f"{config.label} seed {seed}: {outcome}, {1e3 * result.step_seconds:.0f} "
              f"ms/step, {result.seconds:.0f} s", flush=True)

    title = (f"{args.model} on {DATASETS[args.model]}, {epochs} epochs, seeds "
             f"{', '.join(map(str, seeds))}")
    outputs = {}
    if args.json:
        document = {"model": args.model, "epochs": epochs, "seeds": seeds,
                    "train_subset": subset, "runs": [r.to_json() for r in runs]}
        outputs[args.json] = json.dumps(document, indent=1) + "\n"
    if args.plot:
        outputs[args.plot] = to_png(runs, title)
    if outputs:
        atomic_write_many(outputs)
    print(f"\n{title} ({time.perf_counter() - start:.0f} s)")
    print(format_table(runs))
    if outputs:
        print(f"wrote {', '.join(outputs)}")
    return 0
