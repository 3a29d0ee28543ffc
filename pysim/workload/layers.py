"""Network layers and the GEMMs they run, forward and backward.

Every layer that the S2FP8 GEMM engine executes is lowered to one or more identical
GEMMs ``C[M, N] = A[M, K] @ B[K, N]`` (:class:`Gemm`). Three layer types cover the
built-in networks (``pysim.workload.models``):

- :class:`Linear`: a fully connected layer, with optional extra leading dimensions
  (``tokens``, e.g. a transformer's sequence length) flattened into M;
- :class:`Conv2d`: a 2-D convolution lowered by im2col, one GEMM per group;
- :class:`MatMul`: a batched matmul of two activations (attention: Q K^T and P V).

``layer.gemms(phases, repeat)`` gives the forward GEMM, the data-gradient GEMM
("dgrad") and the weight-gradient GEMM ("wgrad") of one training step. The shapes, and
why dgrad of a convolution is the col2im GEMM, are in docs/layers.md.

Invalid shapes raise :class:`ShapeError`, which is both a ``ValueError`` and the CLI's
``BadInput`` (reported in one line, exit code 2); the message names the layer, the field
and the value.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import NamedTuple

from pysim.errors import ShapeError
from pysim.perf.gemm import PHASES, Gemm
from pysim.perf.gemm import check_field
from pysim.perf.gemm import check_layer_name as _check_name
from pysim.validate import is_int


# --------------------------------------------------------------------------- helpers

def _check_pair(layer: str, name: str, value, minimum: int) -> tuple[int, int]:
    """An int, or a pair of ints, each >= minimum -> a tuple of two Python ints."""
    if is_int(value):
        pair = (value, value)
    else:
        try:
            pair = tuple(value)
        except TypeError:
            raise ShapeError(f"layer {layer!r}: field {name!r} must be an integer or a "
                             f"pair of integers, got {value!r}") from None
        if len(pair) != 2:
            raise ShapeError(f"layer {layer!r}: field {name!r} must be an integer or a "
                             f"pair of integers, got {value!r}")
    for item in pair:
        if not is_int(item):
            raise ShapeError(f"layer {layer!r}: field {name!r} must be an integer or a "
                             f"pair of integers, got {value!r}")
        if item < minimum:
            raise ShapeError(f"layer {layer!r}: field {name!r} must be >= {minimum}, "
                             f"got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_bool(layer: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ShapeError(f"layer {layer!r}: field {name!r} must be True or False, "
                         f"got {value!r}")
    return value


def _check_phases(layer: str, phases, repeat) -> tuple[str, ...]:
    if isinstance(phases, str):
        phases = (phases,)
    try:
        phases = tuple(phases)
    except TypeError:
        raise ShapeError(f"layer {layer!r}: phases must be a sequence of "
                         f"{', '.join(PHASES)}, got {phases!r}") from None
    for phase in phases:
        if phase not in PHASES:
            raise ShapeError(f"layer {layer!r}: unknown phase {phase!r} "
                             f"(expected one of {', '.join(PHASES)})")
    if len(set(phases)) != len(phases):
        raise ShapeError(f"layer {layer!r}: phases must not repeat, got {phases!r}")
    check_field(layer, "repeat", repeat)
    return phases


class FieldRule(NamedTuple):
    """How one layer parameter is checked: ``kind`` is ``"int"``, ``"pair"`` (an int or a
    pair of ints, stored as a pair) or ``"bool"``; ``minimum`` bounds the integers. The
    layers check their fields with it and the trace loader reuses it for its fields."""

    kind: str
    minimum: int = 1

    def check(self, layer: str, name: str, value):
        """The checked (normalised) value, or :class:`ShapeError` naming layer and field."""
        if self.kind == "bool":
            return _check_bool(layer, name, value)
        if self.kind == "pair":
            return _check_pair(layer, name, value, self.minimum)
        return check_field(layer, name, value, self.minimum)


#: rule kind of each field annotation of a layer dataclass
_KIND_OF_ANNOTATION = {"int": "int", "tuple[int, int]": "pair", "bool": "bool"}
#: integer fields whose smallest value is not 1
_MINIMUM = {"padding": 0}


@functools.cache
def _rules(cls) -> tuple[tuple[str, FieldRule], ...]:
    # cached: building the rules on every construction measured 17 us on top of 34 us
    # per Conv2d
    return tuple((f.name, FieldRule(_KIND_OF_ANNOTATION[f.type], _MINIMUM.get(f.name, 1)))
                 for f in fields(cls) if f.name != "name")


def field_rules(cls) -> dict[str, FieldRule]:
    """The rule of every parameter (each field but ``name``) of a layer class, in
    declaration order, read from its annotations."""
    return dict(_rules(cls))


class _Layer:
    """Shared behaviour: ``gemms()`` filters the per-phase shapes of ``_shapes()``;
    ``_check_fields()`` checks every parameter by its :func:`field_rules`."""

    name: str
    needs_input_grad: bool

    def _check_fields(self) -> str:
        name = _check_name(self.name)
        for field_name, rule in _rules(type(self)):
            object.__setattr__(self, field_name, rule.check(name, field_name,
                                                            getattr(self, field_name)))
        return name

    def _shapes(self) -> dict[str, tuple[int, int, int, int]]:  # pragma: no cover
        raise NotImplementedError

    def gemms(self, phases=PHASES, repeat: int = 1) -> list[Gemm]:
        """The GEMMs of the requested phases, in the order of ``phases``.

        ``repeat`` multiplies every ``count`` (e.g. a layer applied several times).
        A layer with ``needs_input_grad=False`` (the first layer of a network) has no
        dgrad: it is dropped silently even when requested.
        """
        phases = _check_phases(self.name, phases, repeat)
        shapes = self._shapes()
        out = []
        for phase in phases:
            if phase == "dgrad" and not self.needs_input_grad:
                continue
            m, k, n, count = shapes[phase]
            out.append(Gemm(self.name, phase, m, k, n, count * repeat))
        return out

    def macs(self, phase: str = "forward") -> int:
        """MACs of one phase (0 for a dropped dgrad)."""
        return sum(g.macs for g in self.gemms((phase,)))


# ---------------------------------------------------------------------------- Linear

@dataclass(frozen=True)
class Linear(_Layer):
    """``Y[batch*tokens, out] = X[batch*tokens, in] @ W^T``; W is ``[out, in]``.

    GEMMs (M, K, N): forward (B*T, in, out); dgrad ``dX = dY @ W`` (B*T, out, in);
    wgrad ``dW^T = X^T @ dY`` (in, B*T, out).
    """

    name: str
    batch: int
    in_features: int
    out_features: int
    tokens: int = 1
    needs_input_grad: bool = True

    def __post_init__(self):
        self._check_fields()

    @property
    def rows(self) -> int:
        """Rows of the activation matrix: ``batch * tokens``."""
        return self.batch * self.tokens

    def _shapes(self):
        bt, i, o = self.rows, self.in_features, self.out_features
        return {"forward": (bt, i, o, 1), "dgrad": (bt, o, i, 1), "wgrad": (i, bt, o, 1)}


# ---------------------------------------------------------------------------- Conv2d

def conv_output_size(size: int, kernel: int, stride: int, padding: int,
                     dilation: int) -> int:
    """``floor((size + 2*padding - dilation*(kernel-1) - 1) / stride) + 1`` (PyTorch)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True)
class Conv2d(_Layer):
    """2-D convolution, NCHW, lowered by im2col, one GEMM per group (``count=groups``).

    With ``P = batch*Hout*Wout``, ``Kc = in_channels/groups*kh*kw``,
    ``Nc = out_channels/groups``: forward ``Y = X_col @ W_col`` (P, Kc, Nc);
    dgrad ``dX_col = dY @ W_col^T`` then col2im (P, Nc, Kc);
    wgrad ``dW_col = X_col^T @ dY`` (Kc, P, Nc).

    ``kernel``, ``stride``, ``padding`` and ``dilation`` accept an int or a pair and
    are stored as pairs ``(h, w)``.
    """

    name: str
    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    needs_input_grad: bool = True

    def __post_init__(self):
        name = self._check_fields()
        for f in ("in_channels", "out_channels"):
            if getattr(self, f) % self.groups:
                raise ShapeError(f"layer {name!r}: field {f!r} must be divisible by "
                                 f"groups={self.groups}, got {getattr(self, f)}")
        for axis, size_field in ((0, "height"), (1, "width")):
            size = getattr(self, size_field)
            out = conv_output_size(size, self.kernel[axis], self.stride[axis],
                                   self.padding[axis], self.dilation[axis])
            if out < 1:
                raise ShapeError(
                    f"layer {name!r}: field {size_field!r} = {size} is too small for "
                    f"kernel {self.kernel[axis]}, dilation {self.dilation[axis]}, "
                    f"padding {self.padding[axis]}: output size would be {out}")

    @property
    def out_height(self) -> int:
        return conv_output_size(self.height, self.kernel[0], self.stride[0],
                                self.padding[0], self.dilation[0])

    @property
    def out_width(self) -> int:
        return conv_output_size(self.width, self.kernel[1], self.stride[1],
                                self.padding[1], self.dilation[1])

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """``(batch, out_channels, out_height, out_width)``."""
        return self.batch, self.out_channels, self.out_height, self.out_width

    def _shapes(self):
        p = self.batch * self.out_height * self.out_width
        kc = self.in_channels // self.groups * self.kernel[0] * self.kernel[1]
        nc = self.out_channels // self.groups
        g = self.groups
        return {"forward": (p, kc, nc, g), "dgrad": (p, nc, kc, g), "wgrad": (kc, p, nc, g)}


# ---------------------------------------------------------------------------- MatMul

@dataclass(frozen=True)
class MatMul(_Layer):
    """Batched matmul of two activations: ``C[b] = A[b] @ B[b]``, A ``(m, k)``, B ``(k, n)``.

    GEMMs (M, K, N), ``count = batch``: forward (m, k, n); dgrad, the gradient of the
    left operand ``dA = dC @ B^T`` (m, n, k); "wgrad", the gradient of the right operand
    ``dB = A^T @ dC`` (k, m, n). In attention both operands are activations: "wgrad"
    names the right operand's gradient, not a weight's. ``needs_input_grad=False``
    drops the left operand's gradient only.
    """

    name: str
    batch: int
    m: int
    k: int
    n: int
    needs_input_grad: bool = True

    def __post_init__(self):
        self._check_fields()

    def _shapes(self):
        b, m, k, n = self.batch, self.m, self.k, self.n
        return {"forward": (m, k, n, b), "dgrad": (m, n, k, b), "wgrad": (k, m, n, b)}


Layer = Linear | Conv2d | MatMul
