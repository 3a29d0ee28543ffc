"""A trace document (parsed JSON) -> a validated :class:`Trace`.

Every problem raises :class:`TraceError` naming the file, the layer (index and name), the
field and the value, in JSON terms (``true``, ``[h, w]``). The layer parameters are
checked by the layer dataclasses' own :func:`pysim.workload.layers.field_rules`; this
module only words their failures for a JSON file and checks what is the trace's own
(keys, phases, repeat, tensor references, the top-level fields).
"""
from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path

from pysim.errors import TraceError
from pysim.validate import is_int, parse_int_text
from pysim.workload.layers import PHASES, FieldRule, ShapeError, field_rules
from pysim.workload.trace.model import (FORMAT, OPS, ROLES, VERSION, Trace, TraceLayer,
                                        Unsupported)
from pysim.workload.trace.tensors import parse_tensor_ref

#: keys of a layer entry that are not parameters of the layer dataclass
_LAYER_KEYS = ("name", "op", "phase", "phases", "repeat", "tensors", "source")
_TOP_KEYS = ("format", "version", "model", "source", "unsupported", "layers")
#: what a field of each rule kind must be, in JSON terms
_EXPECTED = {"int": "an integer >= {minimum}",
             "pair": "an integer >= {minimum} or a pair [h, w] of such integers",
             "bool": "true or false"}
_REPEAT = FieldRule("int")


def _split_fields(cls):
    required, optional = [], []
    for f in fields(cls):
        if f.name != "name":
            (required if f.default is MISSING else optional).append(f.name)
    return required, optional


def _check_param(layer: str, key: str, rule: FieldRule, value, fail) -> object:
    """One layer parameter (JSON value) checked by the layer's rule -> the value for the
    dataclass; a failure is reworded for the trace file."""
    try:
        return rule.check(layer, key, value)
    except ShapeError:
        shown = repr(value) if rule.kind == "bool" else json.dumps(value)
        fail(key, f"must be {_EXPECTED[rule.kind].format(minimum=rule.minimum)}, "
                  f"got {shown}")


def _parse_phases(entry: dict, fail) -> tuple[str, ...]:
    if "phase" in entry and "phases" in entry:
        fail("phases", "give either 'phase' or 'phases', not both")
    if "phase" in entry:
        key, value = "phase", entry["phase"]
        if not isinstance(value, str):
            fail(key, f"must be one of {', '.join(PHASES)}, got {json.dumps(value)}")
        value = [value]
    elif "phases" in entry:
        key, value = "phases", entry["phases"]
        if not isinstance(value, list) or not value:
            fail(key, f"must be a non-empty list of {', '.join(PHASES)}, "
                      f"got {json.dumps(value)}")
    else:
        return ("forward",)
    for phase in value:
        if phase not in PHASES:
            fail(key, f"must name phases among {', '.join(PHASES)}, got "
                      f"{json.dumps(phase)}")
    if len(set(value)) != len(value):
        fail(key, f"phases must not repeat, got {json.dumps(value)}")
    return tuple(value)


def _parse_layer(index: int, entry, base: Path, display: str) -> TraceLayer:
    label = f"{display}: layer {index}"
    if not isinstance(entry, dict):
        raise TraceError(f"{label}: must be a JSON object, got {json.dumps(entry)[:60]}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise TraceError(f"{label}: field 'name': must be a non-empty string, got "
                         f"{json.dumps(name) if 'name' in entry else 'nothing (missing)'}")
    label = f"{label} {name!r}"

    def fail(key, message):
        raise TraceError(f"{label}: field {key!r}: {message}")

    op = entry.get("op")
    if not isinstance(op, str) or op not in OPS:  # a list or object is unhashable
        fail("op", f"must be one of {', '.join(map(repr, OPS))}, got "
                   f"{json.dumps(op) if 'op' in entry else 'nothing (missing)'}")
    cls = OPS[op]
    rules = field_rules(cls)
    required, optional = _split_fields(cls)
    params = {}
    for key, value in entry.items():
        if key in _LAYER_KEYS:
            continue
        if key not in rules:
            fail(key, f"unknown field for op {op!r} (its fields: "
                      f"{', '.join(required + optional)}; and {', '.join(_LAYER_KEYS)})")
        params[key] = _check_param(name, key, rules[key], value, fail)
    for key in required:
        if key not in entry:
            fail(key, f"missing (required for op {op!r})")
    phases = _parse_phases(entry, fail)
    repeat = _check_param(name, "repeat", _REPEAT, entry.get("repeat", 1), fail)
    source = entry.get("source")
    if source is not None and not isinstance(source, str):
        fail("source", f"must be a string, got {json.dumps(source)}")
    try:
        layer = cls(name=name, **params)
    except ShapeError as error:  # cross-field checks: divisibility, output size
        message = str(error)
        head = f"layer {name!r}: "
        message = message[len(head):] if message.startswith(head) else message
        raise TraceError(f"{label}: {message}") from None
    tensors = _parse_tensors(entry.get("tensors"), layer, phases, repeat, base, fail)
    return TraceLayer(layer, phases, repeat, tensors, source)


def _parse_tensors(value, layer, phases, repeat, base: Path, fail) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail("tensors", f"must be an object {{phase: {{role: 'file#name'}}}}, got "
                        f"{json.dumps(value)[:60]}")
    if value and set(value) <= set(ROLES):  # short form for a single-phase layer
        if len(phases) != 1:
            fail("tensors", f"the short form {{'a': ..., 'b': ...}} needs exactly one "
                            f"phase; this layer has {list(phases)}: key the tensors by "
                            f"phase")
        value = {phases[0]: value}
    produced = {g.phase for g in layer.gemms(phases, repeat)}
    out = {}
    for phase, roles in value.items():
        if phase not in PHASES:
            fail("tensors", f"keys must be phases ({', '.join(PHASES)}) or roles "
                            f"({', '.join(ROLES)}), got {json.dumps(phase)}")
        if phase not in produced:
            why = ("needs_input_grad is false, so there is no dgrad"
                   if phase == "dgrad" and phase in phases else
                   f"phase {phase!r} is not in the layer's phases {list(phases)}")
            fail(f"tensors.{phase}", why)
        if not isinstance(roles, dict):
            fail(f"tensors.{phase}", f"must be an object {{role: 'file#name'}}, got "
                                     f"{json.dumps(roles)[:60]}")
        refs = {}
        for role, text in roles.items():
            if role not in ROLES:
                fail(f"tensors.{phase}", f"roles must be {', '.join(ROLES)}, got "
                                         f"{json.dumps(role)}")
            where_key = f"tensors.{phase}.{role}"
            try:
                refs[role] = parse_tensor_ref(text, base, "")
            except TraceError as error:
                fail(where_key, str(error).removeprefix(": "))
        out[phase] = refs
    return out


def _check_unsupported(value, display: str) -> list[Unsupported]:
    if value is None:
        return []
    ok = isinstance(value, list) and all(
        isinstance(item, dict) and set(item) == {"node", "op_type"}
        and all(isinstance(v, str) for v in item.values()) for item in value)
    if not ok:
        raise TraceError(f"{display}: field 'unsupported': must be a list of "
                         f"{{\"node\": str, \"op_type\": str}}, got "
                         f"{json.dumps(value)[:80]}")
    return [Unsupported(item["node"], item["op_type"]) for item in value]


def trace_from_dict(data, display: str, base: Path, path: Path | None = None) -> Trace:
    """Validate a parsed trace document (``display`` names it in errors; tensor
    references are relative to ``base``)."""
    if not isinstance(data, dict):
        raise TraceError(f"{display}: a trace must be a JSON object, got "
                         f"{type(data).__name__}")
    if data.get("format") != FORMAT:
        raise TraceError(f"{display}: field 'format': must be {FORMAT!r}, got "
                         f"{json.dumps(data.get('format')) if 'format' in data else 'nothing (missing)'}")
    version = data.get("version")
    if not is_int(version) or version < 1:
        raise TraceError(f"{display}: field 'version': must be an integer >= 1, got "
                         f"{json.dumps(version)}")
    if version > VERSION:
        raise TraceError(f"{display}: field 'version': {version} is newer than this "
                         f"simulator reads (version {VERSION})")
    for key in data:
        if key not in _TOP_KEYS:
            raise TraceError(f"{display}: field {key!r}: unknown top-level field "
                             f"(expected {', '.join(_TOP_KEYS)})")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise TraceError(f"{display}: field 'model': must be a non-empty string, got "
                         f"{json.dumps(model)}")
    source = data.get("source")
    if source is not None and not isinstance(source, str):
        raise TraceError(f"{display}: field 'source': must be a string, got "
                         f"{json.dumps(source)}")
    entries = data.get("layers")
    if not isinstance(entries, list) or not entries:
        raise TraceError(f"{display}: field 'layers': must be a non-empty list, got "
                         f"{json.dumps(entries)[:60]}")
    layers, seen = [], {}
    for index, entry in enumerate(entries):
        layer = _parse_layer(index, entry, base, display)
        if layer.name in seen:
            raise TraceError(f"{display}: layer {index} {layer.name!r}: field 'name': "
                             f"duplicate of layer {seen[layer.name]}")
        seen[layer.name] = index
        layers.append(layer)
    return Trace(model, layers, path, source,
                 _check_unsupported(data.get("unsupported"), display))


def read_input_text(path, encoding: str = "utf-8") -> str:
    """The text of an input file; a missing or unreadable file raises :class:`TraceError`
    naming it."""
    try:
        return Path(path).read_text(encoding=encoding)
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TraceError(f"{path}: cannot read: {error}") from None


def load_trace(path) -> Trace:
    """Read and validate a trace JSON file (see docs/traces.md); errors raise
    :class:`TraceError` naming the file, the layer, the field and the value."""
    path = Path(path)
    display = str(path)
    text = read_input_text(path)
    try:
        data = json.loads(text, parse_int=lambda digits: int(digits) if len(digits) < 19
                          else parse_int_text(digits, f"{display}: JSON number",
                                              error=TraceError))
    except json.JSONDecodeError as error:
        raise TraceError(f"{display}: line {error.lineno}, column {error.colno}: "
                         f"invalid JSON: {error.msg}") from None
    except RecursionError:  # json's decoder recurses once per level of [ or {
        raise TraceError(f"{display}: invalid JSON: nested too deeply") from None
    return trace_from_dict(data, display, path.absolute().parent, path)
