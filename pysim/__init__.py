"""Bit-exact golden model of the S2FP8 MAC/GEMM unit, plus tiler, cycle model and traces."""
