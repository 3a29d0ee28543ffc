"""The data model of a trace: :class:`Trace`, its :class:`TraceLayer` entries and the
:class:`Unsupported` nodes an importer could not map."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from pysim.errors import TraceError
from pysim.validate import is_int
from pysim.workload.layers import Conv2d, Gemm, Layer, Linear, MatMul
from pysim.workload.trace.tensors import check_finite, read_tensor

FORMAT = "s2fp8-trace"
VERSION = 1

#: op name in a trace -> layer class
OPS: dict[str, type] = {"linear": Linear, "conv2d": Conv2d, "matmul": MatMul}
OP_OF_CLASS = {cls: op for op, cls in OPS.items()}

#: tensor roles of a phase: A (M, K), B (K, N) and the result C (M, N)
ROLES = ("a", "b", "c")


class Unsupported(NamedTuple):
    """A node of an imported model that is not run on the array (not a GEMM layer and
    not a pure elementwise/reshape op): reported, never silently dropped."""

    node: str
    op_type: str


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
        if is_int(layer):
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
            array = read_tensor(ref, where)
            shape = expected[role]
            if array.shape not in (shape, (gemm.count, *shape)):
                alt = f" or {(gemm.count, *shape)}" if gemm.count > 1 else ""
                raise TraceError(f"{where}: shape {array.shape} does not match the "
                                 f"{phase} GEMM (M={gemm.m}, K={gemm.k}, N={gemm.n}): "
                                 f"expected {shape}{alt}")
            check_finite(array, where)
            out[role] = array
        return out


def trace_from_layers(model: str, layers: Iterable[Layer], phases=("forward",),
                      source: str | None = None,
                      unsupported: Iterable[Unsupported] = ()) -> Trace:
    """A trace running ``phases`` of every layer once (used by the importers)."""
    phases = tuple(phases)
    return Trace(model, [TraceLayer(layer, phases) for layer in layers], None, source,
                 list(unsupported))
