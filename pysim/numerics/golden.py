"""Bit-exact golden model of the S2FP8 MAC datapath: decode, FP32 multiply, FP32 accumulate.

Every operation is IEEE 754 binary32 with round-to-nearest-even, subnormals kept (no
flush-to-zero), signed zeros, Inf, and the canonical quiet NaN 0x7FC00000 as the only NaN
ever produced. numpy float32 arithmetic provides exactly that rounding (SSE/AVX/NEON
scalar-equivalent lanes, no FTZ/DAZ); NaN payloads are canonicalized on the way out.
``gemm`` runs its accumulation loop in the compiled kernel of
:mod:`pysim.numerics.kernels` (the same operations, in the same order). See docs/numerics.md.
"""
from __future__ import annotations

import numpy as np

from pysim.numerics.formats import FP32, TABLE_ENTRIES
from pysim.numerics.rounding import canonicalize_nan, fp32_bits, fp32_from_bits
from pysim.numerics.s2fp8 import S2FP8Tensor, apply_sign


def _float_ops():
    return np.errstate(over="ignore", under="ignore", invalid="ignore")


def fp32_mul(a_bits, b_bits) -> np.ndarray:
    """FP32 product of two uint32 bit-pattern arrays (broadcast), RNE, canonical NaN."""
    with _float_ops():
        product = fp32_from_bits(a_bits) * fp32_from_bits(b_bits)
    return canonicalize_nan(fp32_bits(product))


def fp32_add(a_bits, b_bits) -> np.ndarray:
    """FP32 sum of two uint32 bit-pattern arrays (broadcast), RNE, canonical NaN.

    An exact zero sum of operands with opposite signs is +0 (RNE rule).
    """
    with _float_ops():
        total = fp32_from_bits(a_bits) + fp32_from_bits(b_bits)
    return canonicalize_nan(fp32_bits(total))


def _check_table(table, name: str) -> np.ndarray:
    table = np.asarray(table)
    if table.shape != (TABLE_ENTRIES,) or table.dtype != np.uint32:
        raise ValueError(f"{name} must be uint32[{TABLE_ENTRIES}] FP32 bit patterns, "
                         f"got {table.dtype}{list(table.shape)}")
    return table


def mac(table_a, table_b, codes_a, codes_b, init=None, lengths=None) -> np.ndarray:
    """Run S independent MAC sequences exactly as the hardware does; returns uint32[S] bits.

    ``codes_a``, ``codes_b``: uint8[S, L]. Sequence s accumulates, for k = 0..lengths[s]-1
    in order, acc = FP32(acc + FP32(decode_a(codes_a[s, k]) * decode_b(codes_b[s, k]))),
    starting from ``init[s]`` (uint32 FP32 bits; default +0.0). ``lengths`` (default L)
    lets sequences of different lengths share one array.
    """
    table_a, table_b = _check_table(table_a, "table_a"), _check_table(table_b, "table_b")
    codes_a, codes_b = np.asarray(codes_a), np.asarray(codes_b)
    if codes_a.dtype != np.uint8 or codes_b.dtype != np.uint8:
        raise ValueError(f"codes must be uint8, got {codes_a.dtype} and {codes_b.dtype}")
    if codes_a.ndim != 2 or codes_a.shape != codes_b.shape:
        raise ValueError(f"codes_a and codes_b must both be [S, L], got "
                         f"{list(codes_a.shape)} and {list(codes_b.shape)}")
    seqs, steps = codes_a.shape
    acc = np.zeros(seqs, np.uint32) if init is None else np.asarray(init)
    if acc.dtype != np.uint32:
        raise TypeError(f"init must hold uint32 FP32 bit patterns, got dtype {acc.dtype}")
    if acc.shape != (seqs,):
        raise ValueError(f"init must have shape [{seqs}], got {list(acc.shape)}")
    lengths = np.full(seqs, steps) if lengths is None else np.asarray(lengths)
    if (not np.issubdtype(lengths.dtype, np.integer) or lengths.shape != (seqs,)
            or (lengths < 0).any() or (lengths > steps).any()):
        raise ValueError(f"lengths must be {seqs} integers in 0..{steps}, "
                         f"got {lengths.dtype}{list(lengths.shape)}")
    a = fp32_from_bits(apply_sign(codes_a, table_a))
    b = fp32_from_bits(apply_sign(codes_b, table_b))
    acc = fp32_from_bits(acc).copy()
    with _float_ops():
        for k in range(steps):
            summed = acc + a[:, k] * b[:, k]
            acc = np.where(k < lengths, summed, acc)
    return canonicalize_nan(fp32_bits(acc))


def gemm(a: S2FP8Tensor, b: S2FP8Tensor, mant_bits: int = FP32.precision, init=None) -> np.ndarray:
    """C = A @ B as the hardware computes it, as float32 (M, N).

    A (M, K) and B (K, N) are S2FP8 tensors, decoded through their tables with
    ``mant_bits`` significant bits. For each (m, n): acc = init[m, n] (float32, broadcast;
    default +0.0), then for k = 0..K-1 in order acc = FP32(acc + FP32(a[m,k] * b[k,n])).
    Every NaN in the result is the canonical quiet NaN.
    """
    if not isinstance(a, S2FP8Tensor) or not isinstance(b, S2FP8Tensor):
        raise TypeError("gemm takes two S2FP8Tensor operands (see pysim.numerics.s2fp8.encode)")
    if a.codes.ndim != 2 or b.codes.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"gemm needs A (M, K) and B (K, N), got {list(a.shape)} and {list(b.shape)}")
    from pysim.numerics.kernels import gemm_accumulate  # numba: imported on first GEMM

    a_dec = fp32_from_bits(apply_sign(a.codes, a.table(mant_bits)))
    b_dec = fp32_from_bits(apply_sign(b.codes, b.table(mant_bits)))
    acc = np.zeros((a.shape[0], b.shape[1]), np.float32)
    if init is not None:
        acc[...] = np.asarray(init, dtype=np.float32)
    gemm_accumulate(a_dec, b_dec, acc)
    return fp32_from_bits(canonicalize_nan(fp32_bits(acc)))
