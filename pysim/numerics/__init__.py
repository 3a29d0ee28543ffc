"""Numerics: the formats and the bit-exact golden model of every arithmetic block.

Layer rule: imports only the leaves (``pysim.errors``, ``pysim.validate``,
``pysim.files``) and numpy. Everything else builds on it.
"""
