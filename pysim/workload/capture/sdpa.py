"""Fused attention (``aten._scaled_dot_product_*_attention`` and their ``_backward``):
each call is expanded into the GEMMs of two ``MatMul`` layers, ``<module>.attn_qk``
(S = Q K^T) and ``<module>.attn_pv`` (O = P V), ``count = batch * heads``. The fused
kernel never materialises P, so with tensors it is recomputed in float32."""
from __future__ import annotations

from pysim.workload.capture.dispatch import Attribution, ModuleStack, named_args
from pysim.workload.capture.records import CaptureError, LayerRecord, Recorder
from pysim.workload.layers import MatMul

SDPA_OPS = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
            "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention")


def is_sdpa_backward(op: str) -> bool:
    return op.endswith("_backward") and op[: -len("_backward")] in SDPA_OPS


def _inputs(named):
    q, k, v = named["query"], named["key"], named["value"]
    if k.shape[1] != q.shape[1]:  # grouped-query attention: repeat the key/value heads
        rep = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    return q, k, v


def _flatten(t, q):
    """(B, H, L, E) -> (B*H, L, E)."""
    B, H = q.shape[:2]
    return t.reshape(B * H, t.shape[-2], t.shape[-1])


class AttentionOps:
    def __init__(self, recorder: Recorder, modules: ModuleStack, attribution: Attribution):
        self.recorder = recorder
        self.modules = modules
        self.attribution = attribution

    def _layers(self, q, k, v, op):
        mod_name, _, _ = self.modules.current()
        B, H, Lq, E = q.shape
        Lk, Ev = k.shape[2], v.shape[3]
        c = int(B * H)
        qk_name = self.recorder.unique(f"{mod_name}.attn_qk")
        pv_name = self.recorder.unique(f"{mod_name}.attn_pv")
        qk = LayerRecord(qk_name, MatMul(qk_name, c, int(Lq), int(E), int(Lk)), op)
        pv = LayerRecord(pv_name, MatMul(pv_name, c, int(Lq), int(Lk), int(Ev)), op)
        return qk, pv

    def _softmax(self, named, q, k):
        """P = softmax(Q K^T * scale + mask), recomputed in float32 (B, H, Lq, Lk)."""
        torch = self.recorder.torch
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
        if self.recorder.tensors and float(named.get("dropout_p") or 0.0) > 0.0:
            raise CaptureError(f"capture: {where}: attention dropout_p="
                               f"{named.get('dropout_p')}: its probabilities cannot be "
                               f"recomputed; capture tensors with model.eval()")

    def forward(self, func, op, args, kwargs, out):
        recorder = self.recorder
        named = named_args(func, args, kwargs)
        q, k, v = _inputs(named)
        qk, pv = self._layers(q, k, v, f"aten.{op}")
        self._check_dropout(named, qk.name)
        recorder.layers += [qk, pv]
        if recorder.tensors:
            P, _ = self._softmax(named, q, k)
            recorder.record(qk, "forward", _flatten(q, q), _flatten(k, q).transpose(1, 2),
                            f"aten.{op}")
            recorder.record(pv, "forward", _flatten(P, q), _flatten(v, q), f"aten.{op}")
        else:
            recorder.record_shape(qk, "forward", f"aten.{op}")
            recorder.record_shape(pv, "forward", f"aten.{op}")
        self.attribution.remember(out[0], [qk, pv])

    def backward(self, func, op, args, kwargs, node):
        recorder = self.recorder
        layers = self.attribution.lookup(node) if node is not None else None
        if not layers:
            recorder.unattributed += 1
            return
        qk, pv = layers
        named = named_args(func, args, kwargs)
        op = f"aten.{op}"
        if not recorder.tensors:
            for rec in (pv, qk):
                recorder.record_shape(rec, "dgrad", op)
                recorder.record_shape(rec, "wgrad", op)
            return
        self._check_dropout(named, qk.name)
        q, k, v = _inputs(named)
        d_o = named.get("grad_out", named.get("grad_out_")).float()
        flat = lambda t: _flatten(t, q)  # noqa: E731
        P, scale = self._softmax(named, q, k)
        dP = recorder.torch.matmul(d_o, v.float().transpose(-1, -2))
        dS = P * (dP - (dP * P).sum(-1, keepdim=True)) * scale  # gradient of Q K^T
        recorder.record(pv, "dgrad", flat(d_o), flat(v).transpose(1, 2), op)   # dP = dO V^T
        recorder.record(pv, "wgrad", flat(P).transpose(1, 2), flat(d_o), op)   # dV = P^T dO
        recorder.record(qk, "dgrad", flat(dS), flat(k), op)                    # dQ = dS K
        recorder.record(qk, "wgrad", flat(q).transpose(1, 2), flat(dS), op)    # dK^T = Q^T dS
