"""A trace -> its canonical JSON document and text, and writing it atomically."""
from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

from pysim.files import atomic_write
from pysim.workload.trace.model import FORMAT, VERSION, Trace
from pysim.workload.trace.tensors import TensorRef


def _json_value(value):
    return list(value) if isinstance(value, tuple) else value


def trace_to_dict(trace: Trace, base: Path | None = None) -> dict:
    """The canonical JSON document of a trace; tensor paths are written relative to
    ``base`` (the directory of the file being written) when given."""
    layers = []
    for entry in trace.layers:
        item = {"name": entry.name, "op": entry.op}
        for f in fields(entry.layer):
            if f.name != "name":
                item[f.name] = _json_value(getattr(entry.layer, f.name))
        item["phases"] = list(entry.phases)
        item["repeat"] = entry.repeat
        if entry.source is not None:
            item["source"] = entry.source
        if entry.tensors:
            item["tensors"] = {
                phase: {role: _ref_text(ref, base) for role, ref in refs.items()}
                for phase, refs in entry.tensors.items()}
        layers.append(item)
    data = {"format": FORMAT, "version": VERSION, "model": trace.model}
    if trace.source is not None:
        data["source"] = trace.source
    if trace.unsupported:
        data["unsupported"] = [{"node": u.node, "op_type": u.op_type}
                               for u in trace.unsupported]
    data["layers"] = layers
    return data


def _ref_text(ref: TensorRef, base: Path | None) -> str:
    if base is None:
        return ref.text
    file = os.path.relpath(ref.path, base).replace(os.sep, "/")
    return f"{file}#{ref.key}" if ref.key is not None else file


def dumps_trace(data: dict) -> str:
    """JSON text of a trace document: top-level fields one per line, one layer per
    line (readable and diff-friendly)."""
    lines = []
    for key, value in data.items():
        if key == "layers":
            items = [f"  {json.dumps(layer, separators=(', ', ': '))}" for layer in value]
            lines.append(f' "layers": [\n' + ",\n".join(items) + "\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, separators=(', ', ': '))}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def save_trace(trace: Trace, path) -> None:
    """Write ``trace`` as JSON to ``path`` atomically; tensor references are rewritten
    relative to the new file's directory."""
    path = Path(path)
    data = trace_to_dict(trace, path.absolute().parent)
    atomic_write(path, dumps_trace(data))
