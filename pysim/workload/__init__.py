"""Workloads: network layers, built-in models, traces, importers, PyTorch capture, zoo.

Layer rule: imports the leaves, ``pysim.numerics`` and ``pysim.perf`` only.
"""
