"""Hardware output-path rule vs the paper's float64 formula: ``python -m bench.outpath``.

For each tensor: the hardware rule (``pysim.numerics.outpath.encode_hw``: fixed-point log2
statistics, FP64 scalar step, threshold-table search) against ``pysim.numerics.s2fp8.encode``
(float64 log2/exp2). Printed per distribution: the fraction of identical codes, the
largest difference in code steps (magnitude codes, same sign), the largest relative
error of alpha and of beta, and how many codes differ when the threshold table is built
from the paper's own alpha and beta (the encoder alone). Targets (issue 10): >= 99.9 %
identical codes, never more than one step apart, alpha and beta within 1e-4 relative.

``--sweep`` repeats the table over log2 configurations (table bits x fractional bits),
the measurement that chose ``Log2Config``'s defaults. ``--trace FILE.npz ...`` adds every
tensor of captured traces (default: traces/digits_cnn/digits_cnn.npz).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pysim.numerics import outpath, s2fp8
from pysim.numerics.formats import E5M2

TARGET_IDENTICAL = 0.999
TARGET_MAX_STEPS = 1
TARGET_REL = 1e-4
DEFAULT_TRACE = Path(__file__).resolve().parent.parent / "traces" / "digits_cnn" / "digits_cnn.npz"


def distributions(rng: np.random.Generator, size: int) -> dict[str, list[np.ndarray]]:
    """Named lists of float32 tensors (several tensors per distribution)."""
    def f32(x):
        return np.asarray(x, np.float32)

    out = {
        "normal": [f32(rng.standard_normal(size) * s) for s in (1e-3, 1.0, 30.0)],
        # log2|x| ~ N(0, s), clipped inside the FP32 range
        "log-normal wide": [f32(np.exp2(np.clip(rng.standard_normal(size) * s, -140, 120))
                                * rng.choice([-1, 1], size)) for s in (3.0, 10.0, 30.0)],
        "laplace (gradients)": [f32(rng.laplace(0, s, size)) for s in (1e-6, 1e-3, 1.0)],
        "near-constant": [f32(c * (1 + e * rng.standard_normal(size)))
                          for c, e in ((3.0, 1e-2), (-0.7, 1e-3), (1e4, 1e-1))],
        "subnormal-heavy": [f32(np.where(rng.random(size) < 0.7,
                                         rng.standard_normal(size) * 2.0 ** -135,
                                         rng.standard_normal(size) * 2.0 ** e))
                            for e in (-120, -60, 0)],
        "with zeros": [f32(np.where(rng.random(size) < p, 0.0, rng.standard_normal(size)))
                       for p in (0.5, 0.9, 0.999)],
    }
    return out


def compare(x: np.ndarray, config: outpath.Log2Config) -> dict:
    """One tensor through both rules."""
    paper = s2fp8.encode(x)
    hw = outpath.encode_hw(x, config)
    a = paper.codes.reshape(-1)
    b = hw.codes.reshape(-1)
    mask = np.uint8(E5M2.magnitude_mask)
    steps = np.abs((a & mask).astype(np.int16) - (b & mask).astype(np.int16))
    steps[(a ^ b) >> np.uint8(E5M2.width - 1) != 0] = 255          # sign differs: never
    encoder_only = outpath.encode_codes(x, outpath.threshold_table(paper.alpha, paper.beta))
    return {
        "n": a.size,
        "differ": int((a != b).sum()),
        "max_steps": int(steps.max()) if steps.size else 0,
        "alpha_rel": abs(float(hw.alpha) / float(paper.alpha) - 1.0),
        # beta is a shift in binades: relative to |beta|, or to one binade when |beta| < 1
        # (a tensor centred on 1.0 has beta near 0, where a relative error means nothing)
        "beta_rel": abs(float(hw.beta) - float(paper.beta)) / max(abs(float(paper.beta)), 1.0),
        "encoder_differ": int((encoder_only.reshape(-1) != a).sum()),
        "alpha": float(paper.alpha),
    }


def summarize(rows: list[dict]) -> dict:
    n = sum(r["n"] for r in rows)
    return {
        "tensors": len(rows), "n": n,
        "identical": 1.0 - sum(r["differ"] for r in rows) / n,
        "max_steps": max(r["max_steps"] for r in rows),
        "alpha_rel": max(r["alpha_rel"] for r in rows),
        "beta_rel": max(r["beta_rel"] for r in rows),
        "encoder_differ": sum(r["encoder_differ"] for r in rows),
        "alpha_range": (min(r["alpha"] for r in rows), max(r["alpha"] for r in rows)),
    }


def trace_tensors(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [np.asarray(data[name], np.float32).reshape(-1) for name in data.files
                if np.issubdtype(data[name].dtype, np.floating)]


def table(groups: dict[str, list[np.ndarray]], config: outpath.Log2Config) -> list[str]:
    lines = [f"{'distribution':22} {'tensors':>7} {'values':>9} {'identical':>10} {'max step':>8} "
             f"{'alpha rel':>9} {'beta rel':>9} {'enc-only':>8}  alpha range",
             "-" * 104]
    worst = {"identical": 1.0, "max_steps": 0, "alpha_rel": 0.0, "beta_rel": 0.0}
    for name, tensors in groups.items():
        s = summarize([compare(x, config) for x in tensors])
        worst = {"identical": min(worst["identical"], s["identical"]),
                 "max_steps": max(worst["max_steps"], s["max_steps"]),
                 "alpha_rel": max(worst["alpha_rel"], s["alpha_rel"]),
                 "beta_rel": max(worst["beta_rel"], s["beta_rel"])}
        lines.append(f"{name:22} {s['tensors']:7d} {s['n']:9d} {100 * s['identical']:9.4f}% "
                     f"{s['max_steps']:8d} {s['alpha_rel']:9.2e} {s['beta_rel']:9.2e} "
                     f"{s['encoder_differ']:8d}  {s['alpha_range'][0]:.3g}..{s['alpha_range'][1]:.3g}")
    ok = (worst["identical"] >= TARGET_IDENTICAL and worst["max_steps"] <= TARGET_MAX_STEPS
          and worst["alpha_rel"] <= TARGET_REL and worst["beta_rel"] <= TARGET_REL)
    lines.append(f"worst: {100 * worst['identical']:.4f}% identical (target >= "
                 f"{100 * TARGET_IDENTICAL:.1f}%), {worst['max_steps']} step(s) (target <= "
                 f"{TARGET_MAX_STEPS}), alpha {worst['alpha_rel']:.2e}, beta {worst['beta_rel']:.2e} "
                 f"(target <= {TARGET_REL:.0e}): {'PASS' if ok else 'BELOW TARGET'}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200_000, help="values per random tensor")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--trace", type=Path, nargs="*", default=[DEFAULT_TRACE],
                        help="captured trace tensor files (.npz; default: the digits CNN's), "
                             "e.g. from `s2fp8 trace capture minilm --tensors -o m.json`")
    parser.add_argument("--sweep", action="store_true", help="also other log2 configurations")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    groups = distributions(rng, args.size)
    for path in args.trace:
        if not path.is_file():
            print(f"bench.outpath: {path}: no such file", file=sys.stderr)
            return 2
        groups[f"trace {path.stem}"] = trace_tensors(path)
    configs = [outpath.DEFAULT_LOG2]
    if args.sweep:
        configs += [outpath.Log2Config(table_bits=t, frac_bits=f)
                    for t, f in ((6, 20), (8, 22), (9, 22), (10, 20), (10, 22), (12, 22))]
    print(f"seed {args.seed}, {args.size:,} values per random tensor")
    for config in configs:
        print(f"\nlog2: {1 << config.table_bits} segments (table_bits {config.table_bits}), "
              f"{config.frac_bits} fractional bits")
        print("\n".join(table(groups, config)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
