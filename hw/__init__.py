"""Amaranth HDL of the S2FP8 decode-multiply-accumulate datapath and the GEMM array."""
