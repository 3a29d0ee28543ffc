"""Record the GEMMs (and optionally their real operands) a PyTorch model runs.

:class:`Capture` is a ``TorchDispatchMode``: while a model runs its forward pass and
``loss.backward()`` inside ``with Capture(model) as cap:``, every GEMM-like aten op the
framework dispatches is recorded:

- ``aten.mm``, ``aten.addmm``, ``aten.bmm``, ``aten.baddbmm`` (a ``Linear`` layer when
  the right operand is a parameter of ``model``, else a ``MatMul``);
- ``aten.convolution`` (2-D, or 1-D as height 1; not transposed) and
  ``aten.convolution_backward``, split into its dgrad and wgrad GEMMs per
  ``output_mask`` (im2col, one GEMM per group);
- fused attention ``aten._scaled_dot_product_{flash_attention_for_cpu,flash_attention,
  efficient_attention,cudnn_attention}`` and their ``_backward``: expanded into the
  GEMMs of two ``MatMul`` layers per call, ``<module>.attn_qk`` (S = Q K^T) and
  ``<module>.attn_pv`` (O = P V), ``count = batch * heads``.

Phases (docs/capture.md): an op dispatched while the autograd engine runs a backward
node (``torch._C._current_autograd_node()`` is not None) is a backward GEMM; it is
attributed to the forward op whose autograd node is running, and it is **dgrad** if it
produces the gradient of the forward GEMM's left operand A (the input activation) and
**wgrad** if it produces the gradient of the right operand B (the weight, or the second
activation of a matmul), decided by which forward operand (by storage) it reads. Torch
sometimes computes a gradient transposed (``(g^T @ x)^T``); such a GEMM is stored in the
layer's canonical orientation (``C^T = B^T A^T``), the one ``pysim.workload.layers`` lists.

Every recorded GEMM is mapped to a trace layer (``pysim.workload.layers`` Linear / Conv2d /
MatMul) and it is asserted that ``layer.gemms([phase])`` gives exactly the recorded
M, K, N and count. With ``tensors=True`` the operands A (M, K) and B (K, N) are kept as
float32 numpy arrays (``(count, M, K)`` stacks when count > 1), capped by
``max_elements`` per tensor: a stack that is too big keeps only its first GEMM; a single
GEMM operand that is still too big is not saved (noted in the layer's ``source``).

torch is imported lazily: importing this module does not need torch.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pysim.errors import BadInput
from pysim.workload.layers import Conv2d, Linear, MatMul

PIP_HINT = 'pip install torch==2.13.0 && pip install -e ".[torch]"'

MM_OPS = ("mm", "addmm", "bmm", "baddbmm")
SDPA_OPS = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
            "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention")


class CaptureError(BadInput):
    """A capture that cannot be done (missing torch, unsupported op with tensors...)."""


def require_torch():
    """Import torch or raise a one-line :class:`CaptureError` naming the pip command."""
    try:
        import torch
    except ImportError:
        raise CaptureError(f"capturing a PyTorch model needs torch: {PIP_HINT}") from None
    return torch


@dataclass
class GemmRecord:
    """One captured GEMM in canonical orientation: ``C = A @ B`` of the layer's phase."""

    phase: str
    m: int
    k: int
    n: int
    count: int
    op: str
    transposed: bool = False
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    note: str | None = None


@dataclass
class LayerRecord:
    """One forward call of a GEMM op: a trace layer and its captured phases."""

    name: str
    layer: object  # pysim.workload.layers Linear | Conv2d | MatMul
    op: str
    gemms: dict = field(default_factory=dict)  # phase -> GemmRecord
    ptr_a: int | None = None   # storage of the forward left operand
    ptr_b: int | None = None   # storage of the forward right operand

    def add(self, rec: GemmRecord) -> None:
        if rec.phase in self.gemms:
            raise CaptureError(f"capture: layer {self.name!r}: phase {rec.phase!r} "
                               f"recorded twice ({rec.op})")
        expected = self.layer.gemms((rec.phase,))
        got = (rec.m, rec.k, rec.n, rec.count)
        if not expected or (expected[0].m, expected[0].k, expected[0].n,
                            expected[0].count) != got:
            exp = expected[0] if expected else None
            raise AssertionError(
                f"capture: layer {self.name!r} {rec.phase}: recorded GEMM "
                f"(M, K, N, count) = {got} but the trace layer gives "
                f"{(exp.m, exp.k, exp.n, exp.count) if exp else 'no GEMM'}")
        for role, arr, shape in (("a", rec.a, (rec.m, rec.k)), ("b", rec.b, (rec.k, rec.n))):
            if arr is not None and arr.shape not in (shape, (rec.count, *shape)):
                raise AssertionError(f"capture: layer {self.name!r} {rec.phase} {role}: "
                                     f"tensor shape {arr.shape}, GEMM shape {shape}")
        self.gemms[rec.phase] = rec


def _ptr(t) -> int | None:
    try:
        return t.untyped_storage().data_ptr()
    except Exception:  # pragma: no cover - tensor subclasses without storage
        return None


def _named_args(func, args, kwargs) -> dict:
    names = [a.name for a in func._schema.arguments]
    out = {a.name: a.default_value for a in func._schema.arguments if a.has_default_value()}
    out.update(zip(names, args))
    out.update(kwargs or {})
    return out


def _make_capture_mode():
    """Build the TorchDispatchMode subclass (torch imported here, lazily)."""
    torch = require_torch()
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten

    class _Mode(TorchDispatchMode):
        def __init__(self, owner):
            super().__init__()
            self.owner = owner

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            try:
                with torch.no_grad():
                    self.owner._on_op(func, args, kwargs or {}, out)
            except Exception as error:  # surface capture bugs after the op completes
                self.owner.errors.append(error)
            return out

    return torch, aten, _Mode


class Capture:
    """Context manager recording the GEMMs of a forward + backward run.

    ``model``: the root module (names layers after its ``named_modules`` and tells
    weights from activations); ``tensors``: keep the operands; ``max_elements``: cap on
    the saved elements of one tensor (None: no cap).
    """

    def __init__(self, model=None, tensors: bool = False, max_elements: int | None = None):
        self.torch, self.aten, mode_cls = _make_capture_mode()
        self.model = model
        self.tensors = tensors
        self.max_elements = max_elements
        self.layers: list[LayerRecord] = []
        self.unsupported: list[tuple[str, str]] = []
        self.unattributed = 0
        self.errors: list[Exception] = []
        self._mode = mode_cls(self)
        self._names = {}
        self._param_ptrs = set()
        if model is not None:
            self._names = {id(mod): name or "model" for name, mod in model.named_modules()}
            self._param_ptrs = {_ptr(p) for p in model.parameters()}
        self._stack: list[tuple[str, object, tuple]] = []  # (name, module, input shape)
        self._pending: list[tuple[object, list]] = []      # (forward output, layer records)
        self._by_node: dict[int, tuple[object, list]] = {}
        self._used: dict[str, int] = {}
        self._hooks = []

    # ---------------------------------------------------------------- context manager
    def __enter__(self):
        mm = self.torch.nn.modules.module
        self._hooks = [mm.register_module_forward_pre_hook(self._pre_hook),
                       mm.register_module_forward_hook(self._post_hook, always_call=True)]
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self._pending.clear()
        self._by_node.clear()
        if exc[0] is None and self.errors:
            raise self.errors[0]
        return False

    def _pre_hook(self, module, args):
        name = self._names.get(id(module), type(module).__name__)
        shape = tuple(args[0].shape) if args and hasattr(args[0], "shape") else ()
        self._stack.append((name, module, shape))

    def _post_hook(self, module, args, output):
        if self._stack:
            self._stack.pop()

    # ------------------------------------------------------------------- helpers
    def _module(self):
        return self._stack[-1] if self._stack else ("model", None, ())

    def _unique(self, name: str) -> str:
        n = self._used.get(name, 0) + 1
        self._used[name] = n
        return name if n == 1 else f"{name}#{n}"

    def _np(self, t, count: int):
        """Operand (count, M, K) torch tensor -> saved numpy array (or None if too big)."""
        if not self.tensors:
            return None, None
        t = t.detach()
        if t.dim() == 3 and t.shape[0] == 1:
            t = t[0]
        size = t.numel()
        if self.max_elements is not None and size > self.max_elements:
            if t.dim() == 3 and t[0].numel() <= self.max_elements:
                return (t[0].to(self.torch.float32).contiguous().numpy().copy(),
                        f"first of {count} GEMMs saved")
            return None, f"tensor of {size:,} elements > --max-elements not saved"
        return t.to(self.torch.float32).contiguous().numpy().copy(), None

    def _record(self, layer: LayerRecord, phase, A, B, op, transposed=False):
        """A (count, M, K) and B (count, K, N) torch tensors (or 2-D)."""
        A = A.unsqueeze(0) if A.dim() == 2 else A
        B = B.unsqueeze(0) if B.dim() == 2 else B
        count, m, k = A.shape
        n = B.shape[-1]
        if B.shape[0] != count:
            B = B.expand(count, -1, -1)
        a, note_a = self._np(A, count)
        b, note_b = self._np(B, count)
        if a is not None and b is not None and a.ndim != b.ndim:  # keep one GEMM of each
            a = a if a.ndim == 2 else a[0]
            b = b if b.ndim == 2 else b[0]
        note = "; ".join(sorted({x for x in (note_a, note_b) if x}))
        if a is None or b is None:
            a = b = None
        layer.add(GemmRecord(phase, int(m), int(k), int(n), int(count), op, transposed,
                             a, b, note or None))

    def _remember(self, output, layers):
        self._pending.append((output, layers))

    def _lookup(self, node):
        if self._pending:
            for output, layers in self._pending:
                grad_fn = getattr(output, "grad_fn", None)
                if grad_fn is not None:
                    self._by_node[id(grad_fn)] = (grad_fn, layers)
            self._pending.clear()
        hit = self._by_node.get(id(node))
        return hit[1] if hit is not None and hit[0] is node else None

    # -------------------------------------------------------------------- dispatch
    def _on_op(self, func, args, kwargs, out):
        name = func.overloadpacket.__name__
        node = self.torch._C._current_autograd_node()
        if name in MM_OPS:
            a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
            if node is None:
                self._forward_mm(name, a, b, out)
            else:
                self._backward_mm(name, a, b, node)
        elif name == "convolution":
            if node is None:
                self._forward_conv(args, out)
        elif name == "convolution_backward":
            self._backward_conv(args, node)
        elif name in SDPA_OPS:
            self._forward_sdpa(func, name, args, kwargs, out)
        elif name.endswith("_backward") and name[: -len("_backward")] in SDPA_OPS:
            self._backward_sdpa(func, name, args, kwargs, node)

    # ---------------------------------------------------------------- mm family
    def _forward_mm(self, op, a, b, out):
        mod_name, module, in_shape = self._module()
        m, k = a.shape[-2:]
        n = b.shape[-1]
        count = a.shape[0] if a.dim() == 3 else 1
        is_weight = count == 1 and _ptr(b) in self._param_ptrs
        torch = self.torch
        if is_weight:
            batch, tokens = m, 1
            if isinstance(module, torch.nn.Linear) and len(in_shape) >= 2:
                rows = int(np.prod(in_shape[:-1]))
                if rows == m and in_shape[0] >= 1:
                    batch, tokens = int(in_shape[0]), rows // int(in_shape[0])
            leaf = isinstance(module, torch.nn.Linear)
            name = self._unique(mod_name if leaf else f"{mod_name}.{op}")
            layer = Linear(name, batch, int(k), int(n), tokens)
        else:
            name = self._unique(f"{mod_name}.{op}")
            layer = MatMul(name, int(count), int(m), int(k), int(n))
        rec = LayerRecord(name, layer, f"aten.{op}", ptr_a=_ptr(a), ptr_b=_ptr(b))
        self.layers.append(rec)
        self._record(rec, "forward", a, b, f"aten.{op}")
        self._remember(out, [rec])

    def _backward_mm(self, op, x, y, node):
        layers = self._lookup(node)
        if not layers:
            self._unattributed_mm(op, x, y, node)
            return
        rec = layers[0]
        fwd = rec.gemms["forward"]
        M, K, N = fwd.m, fwd.k, fwd.n
        xs, ys = tuple(x.shape[-2:]), tuple(y.shape[-2:])
        px, py = _ptr(x), _ptr(y)
        T = lambda t: t.transpose(-1, -2)  # noqa: E731
        # (phase, transposed, shape of x, shape of y, storage test, canonical A, B)
        options = [
            ("dgrad", False, (M, N), (N, K), py == rec.ptr_b, lambda: (x, y)),
            ("wgrad", False, (K, M), (M, N), px == rec.ptr_a, lambda: (x, y)),
            ("dgrad", True, (K, N), (N, M), px == rec.ptr_b, lambda: (T(y), T(x))),
            ("wgrad", True, (N, M), (M, K), py == rec.ptr_a, lambda: (T(y), T(x))),
        ]
        fits = [o for o in options if o[2] == xs and o[3] == ys and o[0] not in rec.gemms]
        best = [o for o in fits if o[4]] or fits
        if not best:
            raise AssertionError(f"capture: backward aten.{op} {xs} @ {ys} under "
                                 f"{node.name()} does not fit layer {rec.name!r} "
                                 f"(forward M={M}, K={K}, N={N})")
        phase, transposed, _, _, _, operands = best[0]
        A, B = operands()
        self._record(rec, phase, A, B, f"aten.{op}", transposed)

    def _unattributed_mm(self, op, x, y, node):
        """A backward GEMM whose forward op was not recorded: its own MatMul layer,
        phase dgrad (M, K, N) = (m, n, k) of the layer."""
        self.unattributed += 1
        count = x.shape[0] if x.dim() == 3 else 1
        m, k = x.shape[-2:]
        n = y.shape[-1]
        name = self._unique(f"backward.{node.name()}")
        rec = LayerRecord(name, MatMul(name, int(count), int(m), int(n), int(k)), f"aten.{op}")
        self.layers.append(rec)
        self._record(rec, "dgrad", x, y, f"aten.{op}")

    # ---------------------------------------------------------------- convolution
    @staticmethod
    def _conv_params(input, weight, stride, padding, dilation, groups):
        if input.dim() == 3:  # 1-D conv as height 1
            return dict(batch=int(input.shape[0]), in_channels=int(input.shape[1]),
                        out_channels=int(weight.shape[0]), height=1,
                        width=int(input.shape[2]), kernel=(1, int(weight.shape[2])),
                        stride=(1, int(stride[0])), padding=(0, int(padding[0])),
                        dilation=(1, int(dilation[0])), groups=int(groups))
        return dict(batch=int(input.shape[0]), in_channels=int(input.shape[1]),
                    out_channels=int(weight.shape[0]), height=int(input.shape[2]),
                    width=int(input.shape[3]),
                    kernel=(int(weight.shape[2]), int(weight.shape[3])),
                    stride=tuple(int(s) for s in stride), padding=tuple(int(p) for p in padding),
                    dilation=tuple(int(d) for d in dilation), groups=int(groups))

    def _im2col(self, input, p: dict):
        """X_col per group: (groups, B*L, Cg*kh*kw), rows ordered (b, l)."""
        x = input if input.dim() == 4 else input.unsqueeze(2)
        cols = self.torch.nn.functional.unfold(x, p["kernel"], dilation=p["dilation"],
                                               padding=p["padding"], stride=p["stride"])
        B, KK, L = cols.shape
        g = p["groups"]
        cols = cols.reshape(B, g, KK // g, L).permute(1, 0, 3, 2)  # (g, B, L, Kc)
        return cols.reshape(g, B * L, KK // g)

    def _w_col(self, weight, groups):
        """W_col per group: (groups, Kc, Nc)."""
        o = weight.shape[0]
        return weight.reshape(groups, o // groups, -1).transpose(1, 2)

    def _dy(self, grad, groups):
        """dY per group: (groups, B*L, Nc)."""
        B, o = grad.shape[:2]
        g = grad.reshape(B, groups, o // groups, -1).permute(1, 0, 3, 2)
        return g.reshape(groups, -1, o // groups)

    def _forward_conv(self, args, out):
        input, weight, bias, stride, padding, dilation, transposed, out_pad, groups = args[:9]
        mod_name, module, _ = self._module()
        if transposed or input.dim() not in (3, 4):
            kind = "transposed" if transposed else f"{input.dim() - 2}-D"
            self.unsupported.append((mod_name, f"aten.convolution ({kind})"))
            return
        p = self._conv_params(input, weight, stride, padding, dilation, groups)
        leaf = isinstance(module, (self.torch.nn.Conv1d, self.torch.nn.Conv2d))
        name = self._unique(mod_name if leaf else f"{mod_name}.conv")
        layer = Conv2d(name, **p)
        rec = LayerRecord(name, layer, "aten.convolution", ptr_a=_ptr(input), ptr_b=_ptr(weight))
        self.layers.append(rec)
        if self.tensors:
            self._record(rec, "forward", self._im2col(input, p), self._w_col(weight, groups),
                         "aten.convolution")
        else:
            self._record_shape(rec, "forward", "aten.convolution")
        self._remember(out, [rec])

    def _record_shape(self, rec, phase, op):
        g = rec.layer.gemms((phase,))[0]
        rec.add(GemmRecord(phase, g.m, g.k, g.n, g.count, op))

    def _backward_conv(self, args, node):
        grad, input, weight, _bias, stride, padding, dilation, transposed, _op, groups, mask = args[:11]
        layers = self._lookup(node) if node is not None else None
        if transposed or input.dim() not in (3, 4):
            return
        if not layers:
            self.unattributed += 1
            return
        rec = layers[0]
        p = self._conv_params(input, weight, stride, padding, dilation, groups)
        op = "aten.convolution_backward"
        grad4 = grad if grad.dim() == 4 else grad.unsqueeze(2)
        if mask[0]:
            if self.tensors:
                w = self._w_col(weight, groups)  # dX_col = dY @ W_col^T
                self._record(rec, "dgrad", self._dy(grad4, groups), w.transpose(1, 2), op)
            else:
                self._record_shape(rec, "dgrad", op)
        if mask[1]:
            if self.tensors:  # dW_col = X_col^T @ dY
                self._record(rec, "wgrad", self._im2col(input, p).transpose(1, 2),
                             self._dy(grad4, groups), op)
            else:
                self._record_shape(rec, "wgrad", op)

    # ------------------------------------------------------------------ attention
    def _sdpa_inputs(self, named):
        q, k, v = named["query"], named["key"], named["value"]
        B, H, Lq, E = q.shape
        if k.shape[1] != H:  # grouped-query attention: repeat the key/value heads
            rep = H // k.shape[1]
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        return q, k, v

    def _sdpa_layers(self, q, k, v, op):
        mod_name, _, _ = self._module()
        B, H, Lq, E = q.shape
        Lk, Ev = k.shape[2], v.shape[3]
        c = int(B * H)
        qk_name = self._unique(f"{mod_name}.attn_qk")
        pv_name = self._unique(f"{mod_name}.attn_pv")
        qk = LayerRecord(qk_name, MatMul(qk_name, c, int(Lq), int(E), int(Lk)), op)
        pv = LayerRecord(pv_name, MatMul(pv_name, c, int(Lq), int(Lk), int(Ev)), op)
        return qk, pv

    def _softmax(self, named, q, k):
        """P = softmax(Q K^T * scale + mask), recomputed in float32 (B, H, Lq, Lk)."""
        torch = self.torch
        scale = named.get("scale")
        scale = 1.0 / float(q.shape[-1]) ** 0.5 if scale is None else float(scale)
        s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
        mask = named.get("attn_mask", named.get("attn_bias"))
        if mask is not None:
            if mask.dtype == torch.bool:
                s = s.masked_fill(~mask, float("-inf"))
            else:
                s = s + mask.float()
        if named.get("is_causal"):
            Lq, Lk = s.shape[-2:]
            causal = torch.ones(Lq, Lk, dtype=torch.bool).tril()
            s = s.masked_fill(~causal, float("-inf"))
        return torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0), scale

    def _check_dropout(self, named, where):
        if self.tensors and float(named.get("dropout_p") or 0.0) > 0.0:
            raise CaptureError(f"capture: {where}: attention dropout_p="
                               f"{named.get('dropout_p')}: its probabilities cannot be "
                               f"recomputed; capture tensors with model.eval()")

    def _forward_sdpa(self, func, op, args, kwargs, out):
        named = _named_args(func, args, kwargs)
        q, k, v = self._sdpa_inputs(named)
        qk, pv = self._sdpa_layers(q, k, v, f"aten.{op}")
        self._check_dropout(named, qk.name)
        self.layers += [qk, pv]
        B, H, Lq, E = q.shape
        flat = lambda t: t.reshape(B * H, t.shape[-2], t.shape[-1])  # noqa: E731
        if self.tensors:
            P, _ = self._softmax(named, q, k)
            self._record(qk, "forward", flat(q), flat(k).transpose(1, 2), f"aten.{op}")
            self._record(pv, "forward", flat(P), flat(v), f"aten.{op}")
        else:
            self._record_shape(qk, "forward", f"aten.{op}")
            self._record_shape(pv, "forward", f"aten.{op}")
        self._remember(out[0], [qk, pv])

    def _backward_sdpa(self, func, op, args, kwargs, node):
        layers = self._lookup(node) if node is not None else None
        if not layers:
            self.unattributed += 1
            return
        qk, pv = layers
        named = _named_args(func, args, kwargs)
        op = f"aten.{op}"
        if not self.tensors:
            for rec in (pv, qk):
                self._record_shape(rec, "dgrad", op)
                self._record_shape(rec, "wgrad", op)
            return
        self._check_dropout(named, qk.name)
        q, k, v = self._sdpa_inputs(named)
        d_o = named.get("grad_out", named.get("grad_out_")).float()
        B, H, Lq, E = q.shape
        flat = lambda t: t.reshape(B * H, t.shape[-2], t.shape[-1])  # noqa: E731
        P, scale = self._softmax(named, q, k)
        dP = self.torch.matmul(d_o, v.float().transpose(-1, -2))
        dS = P * (dP - (dP * P).sum(-1, keepdim=True)) * scale  # gradient of Q K^T
        self._record(pv, "dgrad", flat(d_o), flat(v).transpose(1, 2), op)   # dP = dO V^T
        self._record(pv, "wgrad", flat(P).transpose(1, 2), flat(d_o), op)   # dV = P^T dO
        self._record(qk, "dgrad", flat(dS), flat(k), op)                    # dQ = dS K
        self._record(qk, "wgrad", flat(q).transpose(1, 2), flat(dS), op)    # dK^T = Q^T dS

    # --------------------------------------------------------------------- results
    def to_trace(self, model_name: str, source: str | None = None, tensor_file=None):
        """Build a :class:`pysim.workload.trace.Trace`; with tensors, ``tensor_file`` (the .npz
        path that :func:`save_capture` writes) is referenced."""
        from pysim.workload.trace import TensorRef, Trace, TraceLayer, Unsupported

        layers = []
        for index, rec in enumerate(self.layers):
            if not rec.gemms:
                continue
            phases = tuple(p for p in ("forward", "dgrad", "wgrad") if p in rec.gemms)
            layer = rec.layer
            if hasattr(layer, "needs_input_grad") and "dgrad" not in phases:
                layer = type(layer)(**{**_fields(layer), "needs_input_grad": False})
            tensors = {}
            notes = []
            for phase in phases:
                g = rec.gemms[phase]
                if g.note:
                    notes.append(f"{phase}: {g.note}")
                if g.a is not None and tensor_file is not None:
                    path = Path(tensor_file).absolute()
                    tensors[phase] = {
                        role: TensorRef(f"{path.name}#{_key(index, phase, role)}", path,
                                        _key(index, phase, role)) for role in ("a", "b")}
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
        return Trace(model_name, layers, None, source,
                     [Unsupported(n, o) for n, o in self.unsupported])

    def arrays(self) -> dict[str, np.ndarray]:
        """The saved operands, keyed as :meth:`to_trace` references them."""
        out = {}
        for index, rec in enumerate(self.layers):
            for phase, g in rec.gemms.items():
                if g.a is not None:
                    out[_key(index, phase, "a")] = g.a
                    out[_key(index, phase, "b")] = g.b
        return out


def _fields(layer) -> dict:
    from dataclasses import fields
    return {f.name: getattr(layer, f.name) for f in fields(layer)}


def _key(index: int, phase: str, role: str) -> str:
    return f"L{index:03d}.{phase}.{role}"


def save_capture(cap: Capture, path, model_name: str, source: str | None = None):
    """Write the trace JSON to ``path`` and, if tensors were captured, the operands to
    ``<path without .json>.npz`` beside it (compressed), all-or-nothing. Returns the
    trace (re-loaded from disk, so it is validated)."""
    from pysim.workload.trace import atomic_write_many, dumps_trace, load_trace, trace_to_dict

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
