"""Importers: other descriptions of a network -> a :class:`pysim.workload.trace.Trace`.

- :func:`pysim.workload.importers.scalesim.import_scalesim`: SCALE-Sim topology CSV (conv or
  GEMM form);
- :func:`pysim.workload.importers.onnx_model.import_onnx`: an ONNX model (needs ``onnx``).

:func:`import_file` picks one by the file extension (``.csv``, ``.onnx``, or ``.json``
for a trace, which is loaded and validated); :func:`load_input` also accepts the name of
a built-in model (:data:`pysim.workload.models.MODELS`).
"""
from __future__ import annotations

from pathlib import Path

from pysim.workload.layers import PHASES
from pysim.workload.trace import Trace, TraceError, TraceLayer, load_trace

#: file extension -> the kind of input (which importer reads it)
INPUT_KINDS = {".csv": "scalesim", ".onnx": "onnx", ".json": "trace"}


def import_file(path, batch: int | None = None, training: bool = False) -> Trace:
    """Read a SCALE-Sim CSV, an ONNX model or a trace JSON, chosen by extension.

    ``batch`` sets the batch of SCALE-Sim conv rows and the symbolic batch of ONNX
    inputs (default 1); it does not apply to traces. With ``training`` every layer
    runs all three phases (a trace's layers too: their ``phases`` are replaced).
    """
    path = Path(path)
    kind = INPUT_KINDS.get(path.suffix.lower())
    if kind is None:
        raise TraceError(f"{path}: unknown input format {path.suffix or '(no extension)'!r}"
                         f" (expected {', '.join(INPUT_KINDS)})")
    if not path.exists():
        raise TraceError(f"{path}: no such file")
    if kind == "scalesim":
        from pysim.workload.importers.scalesim import import_scalesim
        return import_scalesim(path, batch=batch, training=training)
    if kind == "onnx":
        from pysim.workload.importers.onnx_model import import_onnx
        return import_onnx(path, batch=batch, training=training)
    trace = load_trace(path)
    if training:
        trace.layers = [TraceLayer(e.layer, PHASES, e.repeat, e.tensors, e.source)
                        for e in trace.layers]
    return trace


def builtin_trace(name: str) -> Trace:
    """A built-in model as a training-step trace (forward, dgrad and wgrad of every
    layer, the first layer without dgrad): the GEMMs of
    :func:`pysim.workload.models.training_step_gemms`."""
    from pysim.workload.models import build_model
    from pysim.workload.trace import trace_from_layers
    return trace_from_layers(name, build_model(name), PHASES, source=f"builtin:{name}")


def load_input(spec: str, batch: int | None = None, training: bool = False) -> Trace:
    """A path (``.csv``/``.onnx``/``.json``) or a built-in model name -> a Trace."""
    from pysim.workload.models import MODELS
    path = Path(spec)
    if spec in MODELS and not path.exists():
        return builtin_trace(spec)
    if not path.exists():
        if path.suffix.lower() in INPUT_KINDS:
            raise TraceError(f"{spec}: no such file")
        raise TraceError(f"{spec}: no such file, and not a built-in model (built-in: "
                         f"{', '.join(MODELS)})")
    return import_file(path, batch=batch, training=training)
