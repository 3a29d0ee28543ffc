"""The records of a capture -> a :class:`pysim.workload.trace.Trace` and the saved
operands: :func:`to_trace`, :func:`operand_arrays`, and :func:`save_capture` writing the
trace JSON and its ``.npz`` all-or-nothing."""
from __future__ import annotations

import io
from dataclasses import fields
from pathlib import Path

import numpy as np

from pysim.files import atomic_write_many
from pysim.workload.capture.records import CaptureError, LayerRecord
from pysim.workload.layers import PHASES
from pysim.workload.trace import (TensorRef, Trace, TraceLayer, Unsupported, dumps_trace,
                                  load_trace, trace_to_dict)


def tensor_key(index: int, phase: str, role: str) -> str:
    """The name of an operand in the ``.npz``: ``L003.wgrad.a``."""
    return f"L{index:03d}.{phase}.{role}"


def to_trace(records: list[LayerRecord], unsupported, model_name: str,
             source: str | None = None, tensor_file=None) -> Trace:
    """A trace of the recorded layers (those with at least one GEMM); with tensors,
    ``tensor_file`` (the .npz path that :func:`save_capture` writes) is referenced."""
    layers = []
    for index, rec in enumerate(records):
        if not rec.gemms:
            continue
        phases = tuple(p for p in PHASES if p in rec.gemms)
        layer = rec.layer
        if hasattr(layer, "needs_input_grad") and "dgrad" not in phases:
            params = {f.name: getattr(layer, f.name) for f in fields(layer)}
            layer = type(layer)(**{**params, "needs_input_grad": False})
        tensors = {}
        notes = []
        for phase in phases:
            g = rec.gemms[phase]
            if g.note:
                notes.append(f"{phase}: {g.note}")
            if g.a is not None and tensor_file is not None:
                path = Path(tensor_file).absolute()
                tensors[phase] = {
                    role: TensorRef(f"{path.name}#{tensor_key(index, phase, role)}", path,
                                    tensor_key(index, phase, role)) for role in ("a", "b")}
        ops = sorted({g.op + (" (transposed)" if g.transposed else "")
                      for g in rec.gemms.values()})
        text = "torch: " + ", ".join(ops) + ("; " + "; ".join(notes) if notes else "")
        entry = TraceLayer(layer, phases, 1, tensors, text)
        assert [(g.phase, g.m, g.k, g.n, g.count) for g in entry.gemms()] == \
            [(p, rec.gemms[p].m, rec.gemms[p].k, rec.gemms[p].n, rec.gemms[p].count)
             for p in phases], rec.name
        layers.append(entry)
    if not layers:
        raise CaptureError(f"capture: model {model_name!r}: no GEMM was recorded")
    return Trace(model_name, layers, None, source, [Unsupported(n, o) for n, o in unsupported])


def operand_arrays(records: list[LayerRecord]) -> dict[str, np.ndarray]:
    """The saved operands, keyed as :func:`to_trace` references them."""
    out = {}
    for index, rec in enumerate(records):
        for phase, g in rec.gemms.items():
            if g.a is not None:
                out[tensor_key(index, phase, "a")] = g.a
                out[tensor_key(index, phase, "b")] = g.b
    return out


def save_capture(cap, path, model_name: str, source: str | None = None) -> Trace:
    """Write the trace JSON of a :class:`Capture` to ``path`` and, if tensors were
    captured, the operands to ``<path without .json>.npz`` beside it (compressed),
    all-or-nothing. Returns the trace (re-loaded from disk, so it is validated)."""
    path = Path(path)
    arrays = cap.arrays() if cap.tensors else {}
    npz = path.with_suffix(".npz") if arrays else None
    trace = cap.to_trace(model_name, source, npz)
    outputs = {}
    if npz is not None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        outputs[npz] = buffer.getvalue()
    outputs[path] = dumps_trace(trace_to_dict(trace, path.absolute().parent))
    atomic_write_many(outputs)
    return load_trace(path)
