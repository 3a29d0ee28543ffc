"""What a capture records: one :class:`GemmRecord` per GEMM, grouped in a
:class:`LayerRecord` per forward call, and the :class:`Recorder` that turns torch
operands into records (and, with ``tensors=True``, into saved numpy operands)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pysim.errors import BadInput

PIP_HINT = 'pip install torch==2.13.0 && pip install -e ".[torch]"'


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


class Recorder:
    """The records of one capture: ``layers`` in call order, ``unsupported`` nodes
    ``(module, op)``, the count of ``unattributed`` backward GEMMs, and unique layer
    names. With ``tensors`` the operands are kept as float32 numpy arrays, capped by
    ``max_elements`` per tensor."""

    def __init__(self, torch, tensors: bool, max_elements: int | None):
        self.torch = torch
        self.tensors = tensors
        self.max_elements = max_elements
        self.layers: list[LayerRecord] = []
        self.unsupported: list[tuple[str, str]] = []
        self.unattributed = 0
        self._used: dict[str, int] = {}

    def unique(self, name: str) -> str:
        """``name``, or ``name#2``, ``name#3``... for its later uses."""
        n = self._used.get(name, 0) + 1
        self._used[name] = n
        return name if n == 1 else f"{name}#{n}"

    def to_numpy(self, t, count: int):
        """Operand (count, M, K) torch tensor -> (saved numpy array or None, note)."""
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

    def record(self, layer: LayerRecord, phase, A, B, op, transposed=False):
        """A (count, M, K) and B (count, K, N) torch tensors (or 2-D)."""
        A = A.unsqueeze(0) if A.dim() == 2 else A
        B = B.unsqueeze(0) if B.dim() == 2 else B
        count, m, k = A.shape
        n = B.shape[-1]
        if B.shape[0] != count:
            B = B.expand(count, -1, -1)
        a, note_a = self.to_numpy(A, count)
        b, note_b = self.to_numpy(B, count)
        if a is not None and b is not None and a.ndim != b.ndim:  # keep one GEMM of each
            a = a if a.ndim == 2 else a[0]
            b = b if b.ndim == 2 else b[0]
        note = "; ".join(sorted({x for x in (note_a, note_b) if x}))
        if a is None or b is None:
            a = b = None
        layer.add(GemmRecord(phase, int(m), int(k), int(n), int(count), op, transposed,
                             a, b, note or None))

    def record_shape(self, rec: LayerRecord, phase: str, op: str) -> None:
        """A GEMM recorded by its shape only (the layer's own), no operands."""
        g = rec.layer.gemms((phase,))[0]
        rec.add(GemmRecord(phase, g.m, g.k, g.n, g.count, op))
