"""``s2fp8 demo``: encode two random tensors, run the golden GEMM, report the errors.

A small end-to-end look at the numerics: S2FP8 against plain E5M2 (no scaling) on
tensors whose magnitudes sit far from 1, the case S2FP8 was made for.
"""
from __future__ import annotations

import numpy as np

from . import fp8, golden, s2fp8

HELP = "encode a tensor, run a golden S2FP8 GEMM, print errors against FP64"


def add_arguments(parser) -> None:
    parser.add_argument("--size", type=int, default=256, help="M = K = N (default 256)")
    parser.add_argument("--scale", type=float, default=2.0 ** -20,
                        help="magnitude scale of the random tensors (default 2^-20)")
    parser.add_argument("--seed", type=int, default=0)


def _errors(approx: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    """(median elementwise relative error, relative Frobenius-norm error)."""
    diff = approx.astype(np.float64) - exact
    elementwise = np.abs(diff) / np.maximum(np.abs(exact), np.finfo(float).tiny)
    return float(np.median(elementwise)), float(np.linalg.norm(diff) / np.linalg.norm(exact))


def run(args) -> int:
    from .cli import BadInput
    if args.size < 1:
        raise BadInput(f"--size must be >= 1, got {args.size}")
    if not (np.isfinite(args.scale) and args.scale > 0):
        raise BadInput(f"--scale must be finite and > 0, got {args.scale}")
    rng = np.random.default_rng(args.seed)
    n = args.size
    a = (rng.standard_normal((n, n)) * args.scale).astype(np.float32)
    b = (rng.standard_normal((n, n)) * args.scale).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)

    ta, tb = s2fp8.encode(a), s2fp8.encode(b)
    print(f"S2FP8 demo: {n}x{n} @ {n}x{n}, N(0, 1) * {args.scale:g}, seed {args.seed}")
    print(f"  A: alpha = {float(ta.alpha):.6g}, beta = {float(ta.beta):.6g}")
    print(f"  B: alpha = {float(tb.alpha):.6g}, beta = {float(tb.beta):.6g}")
    rows = [("operand A round trip", *_errors(s2fp8.decode(ta), a.astype(np.float64))),
            ("S2FP8 GEMM (W=24)", *_errors(golden.gemm(ta, tb), exact)),
            ("S2FP8 GEMM (W=8)", *_errors(golden.gemm(ta, tb, mant_bits=8), exact))]
    # Plain E5M2 without scaling (accumulated in FP64: its error is all in the operands).
    a8, b8 = fp8.e5m2_decode(fp8.e5m2_encode(a)), fp8.e5m2_decode(fp8.e5m2_encode(b))
    flushed = int((a8 == 0).sum() - (a == 0).sum() + (b8 == 0).sum() - (b == 0).sum())
    rows.append(("plain E5M2 GEMM", *_errors(a8.astype(np.float64) @ b8, exact)))
    print(f"  {'':24s} {'median rel err':>15s} {'norm rel err':>13s}")
    for name, median, worst in rows:
        print(f"  {name:24s} {median:15.3e} {worst:13.3e}")
    print(f"  plain E5M2 flushed {flushed} of {2 * n * n} operands to zero")
    return 0
