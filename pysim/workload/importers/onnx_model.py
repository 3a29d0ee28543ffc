"""ONNX models -> a trace (needs the ``onnx`` package).

The model's shapes are completed with ``onnx.shape_inference.infer_shapes`` after a
symbolic (or missing) batch dimension of every graph input has been set to ``batch``
(default 1); fixed batch dimensions are kept. A ``batch`` given for a model with no
symbolic batch dimension would be ignored: it is refused, naming the input and its fixed
batch, unless it equals that fixed batch. Only the main graph is read; weights may
live in external data files (they are not loaded: only shapes matter).

GEMM nodes and the layers they become (``pysim.workload.layers``):

- ``Conv`` with a 4-D input (N, C, H, W) -> :class:`Conv2d` (``kernel_shape``,
  ``strides``, ``pads``, ``dilations``, ``group``; ``auto_pad`` NOTSET, VALID,
  SAME_UPPER, SAME_LOWER). A 3-D input (N, C, L) is a 1-D conv: height 1.
  Asymmetric pads (``begin != end``, e.g. SAME_UPPER with an even kernel) are
  represented with ``padding = min(begin, end)`` and the extra ``|end - begin|`` added to
  the input size: the output size and all GEMM shapes are exact.
- ``Gemm`` -> (M, K, N) after ``transA``/``transB``: :class:`Linear` (batch M) when B
  is a constant (initializer or ``Constant``), else :class:`MatMul` (batch 1).
- ``MatMul`` (numpy semantics): 1-D operands are promoted; batch dimensions broadcast.
  A 2-D right operand is shared by every batch entry, so the batch folds into M (one
  GEMM): a :class:`Linear` (batch = product of A's batch dims, tokens = M) when it is a
  constant, else a :class:`MatMul` of batch 1. Otherwise a batched :class:`MatMul` with
  ``batch`` = product of the broadcast batch dims.

Elementwise and pure reshape/data-movement ops (:data:`PASSTHROUGH`) are skipped; every
other op (pooling, normalisation, softmax, gathers, control flow, 3-D conv, ...) is
returned in ``trace.unsupported`` as ``(node name, op type)``, never dropped silently.

Training (``training=True``): forward, dgrad and wgrad of every layer; a layer's dgrad
is dropped (``needs_input_grad=False``) when its data input does not depend on any
trainable layer, e.g. the first conv reading the graph input.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from pysim.validate import is_int
from pysim.workload.layers import PHASES, Conv2d, Linear, MatMul, ShapeError
from pysim.workload.trace import Trace, TraceError, TraceLayer, Unsupported

#: ops that are elementwise or only move/reshape data: not GEMMs, not reported
PASSTHROUGH = frozenset("""
Abs Acos Acosh Add And Asin Asinh Atan Atanh BitShift Cast CastLike Ceil Celu Clip
Concat Constant ConstantOfShape Cos Cosh Div Dropout Elu Equal Erf Exp Expand Flatten
Floor Gelu Greater GreaterOrEqual HardSigmoid HardSwish Identity IsInf IsNaN LeakyRelu
Less LessOrEqual Log Max Mean Min Mish Mod Mul Neg Not Or PRelu Pad Pow Reciprocal Relu
Reshape Round Selu Shape Sigmoid Sign Sin Sinh Size Slice Softplus Softsign Split Sqrt
Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile Transpose Unsqueeze Where Xor
""".split())

GEMM_OPS = ("Conv", "Gemm", "MatMul")


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnx.shape_inference  # noqa: F401
    except ImportError:  # pragma: no cover - onnx is a project dependency
        raise TraceError("importing ONNX models needs the 'onnx' package "
                         "(pip install onnx)") from None
    return onnx


def _dims(type_proto):
    """A tensor type's shape: list of int (known) or str/None (symbolic/unknown), or
    None if the rank is unknown."""
    tensor = type_proto.tensor_type
    if not tensor.HasField("shape"):
        return None
    out = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            out.append(int(dim.dim_value))
        else:
            out.append(dim.dim_param or None)
    return out


def _set_batch(model, batch: int | None, display: str) -> None:
    """Set the symbolic (``dim_param``) or missing first dimension of every graph input
    to ``batch`` (default 1); a fixed first dimension (``dim_value``) is kept.

    An explicit ``batch`` for a model without any symbolic batch dimension would change
    nothing, so it is refused (``TraceError``) naming every input whose fixed batch
    differs from it; one equal to every fixed batch is accepted (nothing is ignored).
    """
    initializers = {t.name for t in model.graph.initializer}
    symbolic, fixed = [], []
    for value in model.graph.input:
        if value.name in initializers:  # older exporters list the weights as inputs too
            continue
        dims = _dims(value.type)
        if not dims:  # unknown rank, or a scalar: no batch dimension
            continue
        if is_int(dims[0]) and dims[0] > 0:
            fixed.append((value.name, dims[0]))
        else:
            symbolic.append(value.type.tensor_type.shape.dim[0])
    if batch is not None and not symbolic:
        only = "--batch applies to a symbolic batch dimension (dim_param) only"
        differ = [(name, size) for name, size in fixed if size != batch]
        if not fixed:
            raise TraceError(f"{display}: no graph input has a batch dimension; {only}")
        if len(differ) == 1:
            (name, size), = differ
            raise TraceError(f"{display}: input {name!r} has a fixed batch of {size}; {only}")
        if differ:
            raise TraceError(f"{display}: inputs {', '.join(repr(n) for n, _ in differ)} "
                             f"have fixed batches of {', '.join(str(s) for _, s in differ)}; "
                             f"{only}")
    for dim in symbolic:
        dim.Clear()
        dim.dim_value = 1 if batch is None else batch


def import_onnx(path, batch: int | None = None, training: bool = False) -> Trace:
    """Read an ONNX model into a :class:`Trace` (see the module docstring)."""
    onnx = _require_onnx()
    from onnx import helper, numpy_helper  # noqa: F401

    path = Path(path)
    display = str(path)
    if not path.is_file():
        raise TraceError(f"{display}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:
        raise TraceError(f"{display}: not a valid ONNX model: "
                         f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                         ) from None
    if model.ir_version <= 0 or not model.graph.node:
        raise TraceError(f"{display}: not a valid ONNX model (no IR version or no nodes)")
    _set_batch(model, batch, display)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise TraceError(f"{display}: ONNX shape inference failed: "
                         f"{type(error).__name__}: {first}") from None

    graph = model.graph
    shapes: dict[str, list | None] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        if value.type.HasField("tensor_type"):
            shapes[value.name] = _dims(value.type)
    constants = set()
    for tensor in graph.initializer:
        shapes[tensor.name] = [int(d) for d in tensor.dims]
        constants.add(tensor.name)
    for node in graph.node:
        if node.op_type == "Constant":
            constants.update(node.output)
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = [int(d) for d in attr.t.dims]

    layers: list[TraceLayer] = []
    unsupported: list[Unsupported] = []
    used_names: dict[str, int] = {}
    grad: set[str] = set()  # tensors that depend on a trainable layer
    phases = PHASES if training else ("forward",)

    nodes = list(graph.node)
    progress = nodes
    if len(nodes) > 2000:
        try:
            from tqdm import tqdm
            progress = tqdm(nodes, desc=f"import {path.name}", unit="node", delay=2,
                            file=sys.stderr, leave=False)
        except ImportError:  # pragma: no cover
            pass
    for index, node in enumerate(progress):
        name = node.name or f"{node.op_type}_{index}"
        if name in used_names:
            used_names[name] += 1
            name = f"{name}#{used_names[name]}"
        used_names.setdefault(name, 1)
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        inputs_grad = any(i in grad for i in node.input if i)
        if op in GEMM_OPS:
            ctx = _NodeContext(display, name, op, node, shapes, constants, helper)
            layer = ctx.layer(needs_input_grad=node.input[0] in grad)
            if layer is None:
                unsupported.append(Unsupported(name, op))
                if inputs_grad:
                    grad.update(node.output)
                continue
            layers.append(TraceLayer(layer, phases, 1, {}, f"{op}:{node.name or index}"))
            # a layer with a trainable weight makes its output need gradients
            if inputs_grad or any(i in constants for i in node.input[1:2]):
                grad.update(node.output)
            continue
        if op not in PASSTHROUGH:
            unsupported.append(Unsupported(name, op))
        if inputs_grad:
            grad.update(node.output)
    if not layers:
        raise TraceError(f"{display}: no Conv, Gemm or MatMul node to run on the array "
                         f"({len(nodes)} nodes, {len(unsupported)} unsupported)")
    return Trace(path.stem, layers, None, f"onnx:{path.name}", unsupported)


class _NodeContext:
    def __init__(self, display, name, op, node, shapes, constants, helper):
        self.display, self.name, self.op, self.node = display, name, op, node
        self.shapes, self.constants, self.helper = shapes, constants, helper
        self.attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def fail(self, message):
        raise TraceError(f"{self.display}: node {self.name!r} ({self.op}): {message}")

    def shape(self, position: int) -> list[int]:
        if position >= len(self.node.input) or not self.node.input[position]:
            self.fail(f"input {position} is missing")
        tensor = self.node.input[position]
        shape = self.shapes.get(tensor)
        if shape is None or not all(is_int(d) and d > 0 for d in shape):
            self.fail(f"input {tensor!r}: shape {shape if shape is not None else 'unknown'} "
                      f"is not fully known after shape inference (only the batch "
                      f"dimension of a graph input may be symbolic)")
        return shape

    def attr_ints(self, key, default, length):
        value = self.attrs.get(key, default)
        value = [int(v) for v in value]
        if len(value) != length:
            self.fail(f"attribute {key!r}: expected {length} values, got {value}")
        return value

    def layer(self, needs_input_grad: bool):
        try:
            return getattr(self, f"_{self.op.lower()}")(needs_input_grad)
        except ShapeError as error:
            self.fail(str(error))

    # ------------------------------------------------------------------ Conv
    def _conv(self, needs_input_grad):
        x = self.shape(0)
        w = self.shape(1)
        if len(x) not in (3, 4):
            return None  # 3-D (or other) convolutions: reported as unsupported
        if len(w) != len(x):
            self.fail(f"weight {self.node.input[1]!r} shape {w} does not match input "
                      f"rank {len(x)}")
        spatial = len(x) - 2
        kernel = self.attr_ints("kernel_shape", w[2:], spatial)
        strides = self.attr_ints("strides", [1] * spatial, spatial)
        dilations = self.attr_ints("dilations", [1] * spatial, spatial)
        for key, values in (("strides", strides), ("dilations", dilations)):
            if min(values) < 1:  # before auto_pad divides by the stride
                self.fail(f"attribute {key!r}: must be >= 1, got {values}")
        pads = self.attr_ints("pads", [0] * (2 * spatial), 2 * spatial)
        group = int(self.attrs.get("group", 1))
        auto_pad = self.attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        sizes = x[2:]
        if auto_pad == "VALID":
            pads = [0] * (2 * spatial)
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0] * (2 * spatial)
            for axis in range(spatial):
                out = -(-sizes[axis] // strides[axis])
                total = max(0, (out - 1) * strides[axis]
                            + (kernel[axis] - 1) * dilations[axis] + 1 - sizes[axis])
                small, large = total // 2, total - total // 2
                pads[axis], pads[axis + spatial] = ((small, large) if auto_pad == "SAME_UPPER"
                                                    else (large, small))
        elif auto_pad != "NOTSET":
            self.fail(f"attribute 'auto_pad': unknown value {auto_pad!r}")
        if spatial == 1:  # 1-D conv: height 1
            sizes, kernel, strides, dilations = ([1] + sizes, [1] + kernel,
                                                 [1] + strides, [1] + dilations)
            pads = [0, pads[0], 0, pads[1]]
        batch, channels = x[0], x[1]
        if group < 1 or channels != w[1] * group:
            self.fail(f"input channels {channels} != weight channels {w[1]} x group {group}")
        padding, height_width = [], []
        for axis in range(2):
            begin, end = pads[axis], pads[axis + 2]
            if begin < 0 or end < 0:
                self.fail(f"attribute 'pads': must be >= 0, got {pads}")
            common = min(begin, end)
            padding.append(common)
            height_width.append(sizes[axis] + (begin + end - 2 * common))
        layer = Conv2d(self.name, batch, channels, w[0], height_width[0], height_width[1],
                       kernel=tuple(kernel), stride=tuple(strides), padding=tuple(padding),
                       dilation=tuple(dilations), groups=group,
                       needs_input_grad=needs_input_grad)
        out = self.shapes.get(self.node.output[0])
        if out and all(is_int(d) for d in out):
            got = [layer.out_height, layer.out_width] if spatial == 2 else [layer.out_width]
            if list(out[2:]) != got:
                self.fail(f"output size {got} differs from ONNX shape inference {out[2:]}")
        return layer

    # ------------------------------------------------------------------ Gemm
    def _gemm(self, needs_input_grad):
        a, b = self.shape(0), self.shape(1)
        if len(a) != 2 or len(b) != 2:
            self.fail(f"inputs must be 2-D, got {a} and {b}")
        if self.attrs.get("transA", 0):
            a = a[::-1]
        if self.attrs.get("transB", 0):
            b = b[::-1]
        (m, k), (k2, n) = a, b
        if k != k2:
            self.fail(f"inner dimensions differ: A' {a}, B' {b}")
        if self.node.input[1] in self.constants:
            return Linear(self.name, m, k, n, needs_input_grad=needs_input_grad)
        return MatMul(self.name, 1, m, k, n, needs_input_grad=needs_input_grad)

    # ---------------------------------------------------------------- MatMul
    def _matmul(self, needs_input_grad):
        import numpy as np
        a, b = list(self.shape(0)), list(self.shape(1))
        if len(a) == 1:
            a = [1] + a
        if len(b) == 1:
            b = b + [1]
        (m, k), (k2, n) = a[-2:], b[-2:]
        if k != k2:
            self.fail(f"inner dimensions differ: {self.shape(0)} @ {self.shape(1)}")
        a_batch, b_batch = a[:-2], b[:-2]
        try:
            batch_shape = np.broadcast_shapes(tuple(a_batch), tuple(b_batch))
        except ValueError:
            self.fail(f"batch dimensions do not broadcast: {self.shape(0)} @ "
                      f"{self.shape(1)}")
        if not b_batch:  # B shared by every batch entry: fold the batch into M
            rows = math.prod(a_batch)
            if self.node.input[1] in self.constants:
                return Linear(self.name, rows if a_batch else m, k, n,
                              tokens=m if a_batch else 1, needs_input_grad=needs_input_grad)
            return MatMul(self.name, 1, rows * m, k, n, needs_input_grad=needs_input_grad)
        return MatMul(self.name, math.prod(batch_shape), m, k, n,
                      needs_input_grad=needs_input_grad)
