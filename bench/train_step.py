"""Time of one ResNet-8 training step per operand format: ``python -m bench.train_step
[--repeats N] [--threads T]``.

The step of ``s2fp8 train`` (batch 512 of load_digits, forward, backward, SGD update),
with the GEMM operands in FP32, S2FP8, S2FP8-HW, E5M2 and E4M3. The formats are timed
in turn, round after round, so that a load change on the shared machine hits all of
them; best and median of N rounds are printed, with the S2FP8 / FP32 ratio against the
issue's target (< 2), the process's CPU time over the timed rounds and the load average
before and after (the machine is shared). The row ``s2fp8/pysim`` times the same S2FP8
round trip through pysim's own encode and decode (the quantizer before the compiled
passes of pysim.accuracy.quantize), interleaved with the others. A report, not a test.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from pysim.accuracy.quantize import MODES, QUANTIZERS
from pysim.accuracy.train import TrainConfig, build_model, load_data
from pysim.numerics import s2fp8

#: the S2FP8 round trip through pysim's encode and decode, as a reference
PYSIM_S2FP8 = "s2fp8/pysim"


def quantize_through_pysim(x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(s2fp8.decode(s2fp8.encode(x.detach().contiguous().numpy())))

TARGET_S2FP8_RATIO = 2.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_step", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--threads", type=int, default=TrainConfig.threads,
                        help=f"torch threads (default {TrainConfig.threads})")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = TrainConfig()
    x_train, y_train, _, _ = load_data()
    x, y = x_train[:config.batch_size], y_train[:config.batch_size]
    quantizers = dict(QUANTIZERS, **{PYSIM_S2FP8: quantize_through_pysim})
    formats = MODES + (PYSIM_S2FP8,)
    steps = {}
    for mode in formats:
        torch.manual_seed(0)
        model = build_model(config.model, quantizers.get(mode))
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr,
                                    momentum=config.momentum,
                                    weight_decay=config.weight_decay)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        step()  # warm-up: allocations, kernel selection
        steps[mode] = step
    times = {mode: [] for mode in formats}
    load_before = os.getloadavg()
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    for _ in range(args.repeats):
        for mode, step in steps.items():
            start = time.perf_counter()
            step()
            times[mode].append(time.perf_counter() - start)
    cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    load_after = os.getloadavg()
    print(f"ResNet-8 training step, batch {config.batch_size}, {args.threads} threads, "
          f"{args.repeats} rounds: {wall:.1f} s wall, {cpu:.1f} s CPU; load average "
          f"(1, 5, 15 min) {' '.join(f'{v:.2f}' for v in load_before)} before, "
          f"{' '.join(f'{v:.2f}' for v in load_after)} after")
    print(f"{'format':11s} {'best ms':>9s} {'median ms':>10s} {'best / FP32':>12s}")
    best_fp32 = min(times["fp32"])
    for mode in formats:
        best = min(times[mode])
        print(f"{mode:11s} {1e3 * best:9.0f} {1e3 * statistics.median(times[mode]):10.0f} "
              f"{best / best_fp32:12.2f}")
    ratio = min(times["s2fp8"]) / best_fp32
    verdict = "PASS" if ratio < TARGET_S2FP8_RATIO else "ABOVE"
    print(f"S2FP8 / FP32 step time {ratio:.2f} (target < {TARGET_S2FP8_RATIO:g}): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
