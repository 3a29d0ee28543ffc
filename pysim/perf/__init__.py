"""Performance model: array configuration, GEMM shapes, tiler, cycle model, reports.

Layer rule: imports the leaves and ``pysim.numerics`` only (``hw`` builds on it; the
workloads lower to its :class:`~pysim.perf.gemm.Gemm`).
"""
