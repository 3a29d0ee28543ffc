"""Layer traces: a versioned JSON list of layers (and optionally their captured operands).

A trace is what the front end of the simulator consumes: the layers of a network, each
mapping 1:1 onto a :mod:`pysim.workload.layers` dataclass (``linear`` -> :class:`Linear`,
``conv2d`` -> :class:`Conv2d`, ``matmul`` -> :class:`MatMul`), the phases of each
layer to run (forward, dgrad, wgrad), a ``repeat`` and, per phase, optional references
to captured operand tensors in ``.npz`` / ``.npy`` / ``.safetensors`` files.

The format (``"format": "s2fp8-trace"``, ``"version": 1``) is specified, with an
example, in docs/traces.md. One module per job:

- :mod:`.model`: :class:`Trace`, :class:`TraceLayer`, :class:`Unsupported`;
  :meth:`Trace.gemms` lists the GEMMs, :meth:`Trace.tensors` lazily loads the captured
  operands of one layer and phase and checks their shape against the GEMM and that they
  are finite;
- :mod:`.tensors`: :class:`TensorRef`, reading ``.npz`` / ``.npy`` / ``.safetensors``;
- :mod:`.parse`: :func:`load_trace` reads and validates a trace; every problem raises
  :class:`TraceError` (a CLI ``BadInput``: one line, exit code 2) naming the file, the
  layer (index and name), the field and the value;
- :mod:`.serialize`: :func:`save_trace` writes a trace atomically
  (:mod:`pysim.files`).

Every name is re-exported here: ``from pysim.workload.trace import X`` is the API.
"""
from __future__ import annotations

from pysim.errors import TraceError
from pysim.files import atomic_write, atomic_write_many
from pysim.workload.layers import PHASES
from pysim.workload.trace.model import (FORMAT, OP_OF_CLASS, OPS, ROLES, VERSION, Trace,
                                        TraceLayer, Unsupported, trace_from_layers)
from pysim.workload.trace.parse import load_trace, read_input_text, trace_from_dict
from pysim.workload.trace.serialize import dumps_trace, save_trace, trace_to_dict
from pysim.workload.trace.tensors import TENSOR_SUFFIXES, TensorRef, parse_tensor_ref

__all__ = [
    "FORMAT", "OPS", "OP_OF_CLASS", "PHASES", "ROLES", "TENSOR_SUFFIXES", "VERSION",
    "TensorRef", "Trace", "TraceError", "TraceLayer", "Unsupported",
    "atomic_write", "atomic_write_many", "dumps_trace", "load_trace", "parse_tensor_ref",
    "read_input_text", "save_trace", "trace_from_dict", "trace_from_layers",
    "trace_to_dict",
]
