"""Accuracy studies: S2FP8 against other formats on real tensors.

Layer rule: imports the leaves, ``pysim.numerics``, ``pysim.perf`` and ``pysim.workload``.
``gemm_error``: per-GEMM error of S2FP8 (the bit-exact golden GEMM) vs plain FP8 on a trace.
"""
# the public names of the flat ``pysim.accuracy`` module, where users' scripts find them
from pysim.accuracy.gemm_error import (  # noqa: F401
    format_table, gemm_accuracy, summarize, to_png, trace_accuracy)
