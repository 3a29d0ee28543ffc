"""Layer traces: a versioned JSON list of layers (and optionally their captured operands).

A trace is what the front end of the simulator consumes: the layers of a network, each
mapping 1:1 onto a :mod:`pysim.workload.layers` dataclass (``linear`` -> :class:`Linear`,
``conv2d`` -> :class:`Conv2d`, ``matmul`` -> :class:`MatMul`), the phases of each
layer to run (forward, dgrad, wgrad), a ``repeat`` and, per phase, optional references
to captured operand tensors in ``.npz`` / ``.npy`` / ``.safetensors`` files.

The format (``"format": "s2fp8-trace"``, ``"version": 1``) is specified, with an
example, in docs/traces.md.

- :func:`load_trace` reads and validates a trace; every problem raises
  :class:`TraceError` (a CLI ``BadInput``: one line, exit code 2) naming the file, the
  layer (index and name), the field and the value.
- :meth:`Trace.gemms` lists the GEMMs; :meth:`Trace.tensors` lazily loads the captured
  operands of one layer and phase and checks their shape against the GEMM and that they
  are finite.
- :func:`save_trace` writes a trace atomically (temp file + ``os.replace``).
"""
from __future__ import annotations

import json
import numbers
import os
import tempfile
from dataclasses import MISSING as _MISSING, dataclass, field, fields
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from pysim.errors import BadInput, TraceError
from pysim.numerics.fp8 import first_index
from pysim.workload.layers import PHASES, Conv2d, Gemm, Layer, Linear, MatMul, ShapeError

FORMAT = "s2fp8-trace"
VERSION = 1

#: op name in a trace -> layer class
OPS: dict[str, type] = {"linear": Linear, "conv2d": Conv2d, "matmul": MatMul}
OP_OF_CLASS = {cls: op for op, cls in OPS.items()}

#: tensor roles of a phase: A (M, K), B (K, N) and the result C (M, N)
ROLES = ("a", "b", "c")
#: tensor file kinds
TENSOR_SUFFIXES = (".npz", ".npy", ".safetensors")

_PAIR_FIELDS = {"kernel": 1, "stride": 1, "padding": 0, "dilation": 1}
_BOOL_FIELDS = {"needs_input_grad"}
#: keys of a layer entry that are not parameters of the layer dataclass
_LAYER_KEYS = ("name", "op", "phase", "phases", "repeat", "tensors", "source")
_TOP_KEYS = ("format", "version", "model", "source", "unsupported", "layers")


class Unsupported(NamedTuple):
    """A node of an imported model that is not run on the array (not a GEMM layer and
    not a pure elementwise/reshape op): reported, never silently dropped."""

    node: str
    op_type: str


@dataclass(frozen=True)
class TensorRef:
    """A reference to a captured tensor: ``file.npz#name``, ``file.safetensors#name`` or
    ``file.npy``. ``text`` is the reference as written, ``path`` the resolved file."""

    text: str
    path: Path
    key: str | None

    @property
    def kind(self) -> str:
        return self.path.suffix.lower()


@dataclass(frozen=True)
class TraceLayer:
    """One layer entry: the :mod:`pysim.workload.layers` object, its phases, ``repeat`` and
    tensor references per phase (``{phase: {role: TensorRef}}``)."""

    layer: Layer
    phases: tuple[str, ...] = ("forward",)
    repeat: int = 1
    tensors: dict = field(default_factory=dict)
    source: str | None = None

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def op(self) -> str:
        return OP_OF_CLASS[type(self.layer)]

    def gemms(self) -> list[Gemm]:
        return self.layer.gemms(self.phases, repeat=self.repeat)


@dataclass
class Trace:
    """A validated trace. ``path`` is the JSON file it was read from (``None`` if built
    in memory); ``unsupported`` lists nodes an importer could not map."""

    model: str
    layers: list[TraceLayer]
    path: Path | None = None
    source: str | None = None
    unsupported: list[Unsupported] = field(default_factory=list)

    @property
    def display(self) -> str:
        return str(self.path) if self.path is not None else f"<trace {self.model!r}>"

    def gemms(self) -> list[Gemm]:
        """Every GEMM of the trace, layer by layer, phases in the order listed."""
        return [g for entry in self.layers for g in entry.gemms()]

    def _find(self, layer) -> tuple[int, TraceLayer]:
        if isinstance(layer, numbers.Integral) and not isinstance(layer, bool):
            if not 0 <= layer < len(self.layers):
                raise TraceError(f"{self.display}: no layer {layer} "
                                 f"(the trace has {len(self.layers)} layers)")
            return int(layer), self.layers[layer]
        for index, entry in enumerate(self.layers):
            if entry.name == layer:
                return index, entry
        raise TraceError(f"{self.display}: no layer named {layer!r}")

    def tensors(self, layer, phase: str = "forward") -> dict[str, np.ndarray]:
        """Load the captured tensors of a layer (index or name) and phase:
        ``{"a": A, "b": B[, "c": C]}`` (only the roles the trace lists; ``{}`` if none).

        Each is checked: numeric, shape ``(M, K)`` / ``(K, N)`` / ``(M, N)`` of the GEMM
        or the same with a leading ``count`` axis, no NaN or Inf.
        """
        index, entry = self._find(layer)
        prefix = f"{self.display}: layer {index} {entry.name!r}"
        if phase not in entry.phases:
            raise TraceError(f"{prefix}: phase {phase!r} is not in the layer's phases "
                             f"{list(entry.phases)}")
        refs = entry.tensors.get(phase, {})
        if not refs:
            return {}
        gemm = {g.phase: g for g in entry.gemms()}[phase]
        expected = {"a": (gemm.m, gemm.k), "b": (gemm.k, gemm.n), "c": (gemm.m, gemm.n)}
        out = {}
        for role, ref in refs.items():
            where = f"{prefix}: field 'tensors.{phase}.{role}' ({ref.text!r})"
            array = _read_tensor(ref, where)
            shape = expected[role]
            if array.shape not in (shape, (gemm.count, *shape)):
                alt = f" or {(gemm.count, *shape)}" if gemm.count > 1 else ""
                raise TraceError(f"{where}: shape {array.shape} does not match the "
                                 f"{phase} GEMM (M={gemm.m}, K={gemm.k}, N={gemm.n}): "
                                 f"expected {shape}{alt}")
            _check_finite(array, where)
            out[role] = array
        return out


# ------------------------------------------------------------------------ tensors

def _read_tensor(ref: TensorRef, where: str) -> np.ndarray:
    if not ref.path.is_file():
        raise TraceError(f"{where}: file {ref.text.split('#')[0]!r} not found "
                         f"(resolved to {ref.path})")
    kind = ref.kind
    try:
        if kind == ".npy":
            array = np.load(ref.path, allow_pickle=False)
        elif kind == ".npz":
            with np.load(ref.path, allow_pickle=False) as archive:
                if ref.key not in archive.files:
                    names = ", ".join(archive.files[:10]) or "none"
                    raise TraceError(f"{where}: no array {ref.key!r} in {ref.path} "
                                     f"(it holds: {names})")
                array = archive[ref.key]
        else:
            try:
                from safetensors import safe_open
            except ImportError:
                raise TraceError(f"{where}: reading .safetensors files needs the "
                                 f"optional 'safetensors' package (pip install "
                                 f"safetensors), or convert the tensors to .npz") from None
            with safe_open(str(ref.path), framework="np") as archive:
                keys = list(archive.keys())
                if ref.key not in keys:
                    names = ", ".join(keys[:10]) or "none"
                    raise TraceError(f"{where}: no tensor {ref.key!r} in {ref.path} "
                                     f"(it holds: {names})")
                array = archive.get_tensor(ref.key)
    except TraceError:
        raise
    except Exception as error:  # corrupt archive, bad header, unsupported dtype...
        raise TraceError(f"{where}: cannot read {ref.path}: "
                         f"{type(error).__name__}: {error}") from None
    array = np.asarray(array)
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.floating)
                                       or np.issubdtype(array.dtype, np.integer)):
        raise TraceError(f"{where}: dtype {array.dtype} is not a real number type")
    return array


def _check_finite(array: np.ndarray, where: str) -> None:
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = ~np.isfinite(array)
    if bad.any():
        nans = int(np.isnan(array).sum())
        infs = int(bad.sum()) - nans
        raise TraceError(f"{where}: {nans} NaN and {infs} Inf values (first at index "
                         f"{first_index(bad)})")


def parse_tensor_ref(text, base: Path, where: str) -> TensorRef:
    """``file.npz#name`` / ``file.safetensors#name`` / ``file.npy``, relative to ``base``;
    the file must exist (its contents are read lazily)."""
    if not isinstance(text, str) or not text:
        raise TraceError(f"{where}: must be a string 'file.npz#name', "
                         f"'file.safetensors#name' or 'file.npy', got {text!r}")
    file, sep, key = text.rpartition("#") if "#" in text else (text, "", "")
    suffix = Path(file).suffix.lower()
    if suffix not in TENSOR_SUFFIXES:
        raise TraceError(f"{where}: file {file!r} must end in "
                         f"{', '.join(TENSOR_SUFFIXES)}, got {text!r}")
    if suffix == ".npy":
        if sep:
            raise TraceError(f"{where}: a .npy file holds one array, no '#name': "
                             f"got {text!r}")
        key = None
    elif not key:
        raise TraceError(f"{where}: a {suffix} reference needs an array name "
                         f"('{file}#name'), got {text!r}")
    path = (base / file) if not os.path.isabs(file) else Path(file)
    path = Path(os.path.normpath(path.absolute()))
    if not path.is_file():
        raise TraceError(f"{where}: tensor file {file!r} not found (resolved to {path})")
    return TensorRef(text, path, key)


# ------------------------------------------------------------------------- loading

def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _split_fields(cls):
    required, optional = [], []
    for f in fields(cls):
        if f.name != "name":
            (required if f.default is _MISSING else optional).append(f.name)
    return required, optional


def _check_param(name: str, value, fail) -> object:
    """Validate one layer parameter (JSON value) -> the value for the dataclass."""
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            fail(name, f"must be true or false, got {value!r}")
        return value
    if name in _PAIR_FIELDS:
        minimum = _PAIR_FIELDS[name]
        items = [value] if _is_int(value) else value
        ok = (_is_int(value) or (isinstance(value, list) and len(value) == 2))
        if not ok or not all(_is_int(v) and v >= minimum for v in items):
            fail(name, f"must be an integer >= {minimum} or a pair [h, w] of such "
                       f"integers, got {json.dumps(value)}")
        return value if _is_int(value) else tuple(value)
    if not _is_int(value) or value < 1:
        fail(name, f"must be an integer >= 1, got {json.dumps(value)}")
    return value


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
    if op not in OPS:
        fail("op", f"must be one of {', '.join(map(repr, OPS))}, got "
                   f"{json.dumps(op) if 'op' in entry else 'nothing (missing)'}")
    cls = OPS[op]
    required, optional = _split_fields(cls)
    params = {}
    for key, value in entry.items():
        if key in _LAYER_KEYS:
            continue
        if key not in required and key not in optional:
            fail(key, f"unknown field for op {op!r} (its fields: "
                      f"{', '.join(required + optional)}; and {', '.join(_LAYER_KEYS)})")
        params[key] = _check_param(key, value, fail)
    for key in required:
        if key not in entry:
            fail(key, f"missing (required for op {op!r})")
    phases = _parse_phases(entry, fail)
    repeat = entry.get("repeat", 1)
    if not _is_int(repeat) or repeat < 1:
        fail("repeat", f"must be an integer >= 1, got {json.dumps(repeat)}")
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
    if not _is_int(version) or version < 1:
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
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise TraceError(f"{display}: line {error.lineno}, column {error.colno}: "
                         f"invalid JSON: {error.msg}") from None
    return trace_from_dict(data, display, path.absolute().parent, path)


# -------------------------------------------------------------------------- saving

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


def atomic_write(path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and
    ``os.replace``: readers never see a partial file. Errors raise ``BadInput``."""
    atomic_write_many({path: data})


def atomic_write_many(outputs: dict) -> None:
    """Write several files all-or-nothing: every temp file is written first; only if all
    succeed are they renamed into place. A failure (e.g. a missing directory) leaves
    no output file behind and raises ``BadInput`` naming the path."""
    for path in outputs:
        if Path(path).is_dir():
            raise BadInput(f"{path}: cannot write: is a directory")
    staged = []
    try:
        for path, data in outputs.items():
            path = Path(path)
            payload = data.encode("utf-8") if isinstance(data, str) else data
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                           dir=path.parent if str(path.parent) else ".")
            except OSError as error:
                raise BadInput(f"{path}: cannot write: {error.strerror or error}") from None
            staged.append((tmp, path))
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(payload)
                os.chmod(tmp, 0o644)
            except OSError as error:
                raise BadInput(f"{path}: cannot write: {error.strerror or error}") from None
        for tmp, path in staged:
            try:
                os.replace(tmp, path)
            except OSError as error:
                raise BadInput(f"{path}: cannot write: {error.strerror or error}") from None
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)


def save_trace(trace: Trace, path) -> None:
    """Write ``trace`` as JSON to ``path`` atomically; tensor references are rewritten
    relative to the new file's directory."""
    path = Path(path)
    data = trace_to_dict(trace, path.absolute().parent)
    atomic_write(path, dumps_trace(data))


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


def trace_from_layers(model: str, layers: Iterable[Layer], phases=("forward",),
                      source: str | None = None,
                      unsupported: Iterable[Unsupported] = ()) -> Trace:
    """A trace running ``phases`` of every layer once (used by the importers)."""
    phases = tuple(phases)
    return Trace(model, [TraceLayer(layer, phases) for layer in layers], None, source,
                 list(unsupported))
