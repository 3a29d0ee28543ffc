"""The mm family (``aten.mm``, ``addmm``, ``bmm``, ``baddbmm``): a forward call is a
``Linear`` layer when its right operand is a parameter of the model, else a ``MatMul``;
a backward call is the dgrad or wgrad of the forward call whose autograd node runs."""
from __future__ import annotations

import numpy as np

from pysim.workload.capture.dispatch import Attribution, ModuleStack, storage_ptr
from pysim.workload.capture.records import LayerRecord, Recorder
from pysim.workload.layers import Linear, MatMul

MM_OPS = ("mm", "addmm", "bmm", "baddbmm")


class MatmulOps:
    def __init__(self, recorder: Recorder, modules: ModuleStack, attribution: Attribution,
                 param_ptrs: set):
        self.recorder = recorder
        self.modules = modules
        self.attribution = attribution
        self.param_ptrs = param_ptrs

    def on_op(self, op, args, out, node) -> None:
        a, b = (args[1], args[2]) if op in ("addmm", "baddbmm") else (args[0], args[1])
        if node is None:
            self.forward(op, a, b, out)
        else:
            self.backward(op, a, b, node)

    def forward(self, op, a, b, out):
        mod_name, module, in_shape = self.modules.current()
        m, k = a.shape[-2:]
        n = b.shape[-1]
        count = a.shape[0] if a.dim() == 3 else 1
        is_weight = count == 1 and storage_ptr(b) in self.param_ptrs
        torch = self.recorder.torch
        if is_weight:
            batch, tokens = m, 1
            if isinstance(module, torch.nn.Linear) and len(in_shape) >= 2:
                rows = int(np.prod(in_shape[:-1]))
                if rows == m and in_shape[0] >= 1:
                    batch, tokens = int(in_shape[0]), rows // int(in_shape[0])
            leaf = isinstance(module, torch.nn.Linear)
            name = self.recorder.unique(mod_name if leaf else f"{mod_name}.{op}")
            layer = Linear(name, batch, int(k), int(n), tokens)
        else:
            name = self.recorder.unique(f"{mod_name}.{op}")
            layer = MatMul(name, int(count), int(m), int(k), int(n))
        rec = LayerRecord(name, layer, f"aten.{op}", ptr_a=storage_ptr(a), ptr_b=storage_ptr(b))
        self.recorder.layers.append(rec)
        self.recorder.record(rec, "forward", a, b, f"aten.{op}")
        self.attribution.remember(out, [rec])

    def backward(self, op, x, y, node):
        layers = self.attribution.lookup(node)
        if not layers:
            self.unattributed(op, x, y, node)
            return
        rec = layers[0]
        fwd = rec.gemms["forward"]
        M, K, N = fwd.m, fwd.k, fwd.n
        xs, ys = tuple(x.shape[-2:]), tuple(y.shape[-2:])
        px, py = storage_ptr(x), storage_ptr(y)
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
        self.recorder.record(rec, phase, A, B, f"aten.{op}", transposed)

    def unattributed(self, op, x, y, node):
        """A backward GEMM whose forward op was not recorded: its own MatMul layer,
        phase dgrad (M, K, N) = (m, n, k) of the layer."""
        self.recorder.unattributed += 1
        count = x.shape[0] if x.dim() == 3 else 1
        m, k = x.shape[-2:]
        n = y.shape[-1]
        name = self.recorder.unique(f"backward.{node.name()}")
        rec = LayerRecord(name, MatMul(name, int(count), int(m), int(n), int(k)), f"aten.{op}")
        self.recorder.layers.append(rec)
        self.recorder.record(rec, "dgrad", x, y, f"aten.{op}")
