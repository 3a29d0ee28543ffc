"""Convolutions (``aten.convolution``, ``aten.convolution_backward``): 2-D, or 1-D as
height 1, lowered by im2col to one GEMM per group; the backward op is split into its
dgrad and wgrad GEMMs per ``output_mask``. Transposed and 3-D convolutions are listed
as unsupported."""
from __future__ import annotations

from pysim.workload.capture.dispatch import Attribution, ModuleStack, storage_ptr
from pysim.workload.capture.records import LayerRecord, Recorder
from pysim.workload.layers import Conv2d


def conv_params(input, weight, stride, padding, dilation, groups) -> dict:
    """The :class:`Conv2d` parameters of a convolution call."""
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


def im2col(torch, input, p: dict):
    """X_col per group: (groups, B*L, Cg*kh*kw), rows ordered (b, l)."""
    x = input if input.dim() == 4 else input.unsqueeze(2)
    cols = torch.nn.functional.unfold(x, p["kernel"], dilation=p["dilation"],
                                      padding=p["padding"], stride=p["stride"])
    B, KK, L = cols.shape
    g = p["groups"]
    cols = cols.reshape(B, g, KK // g, L).permute(1, 0, 3, 2)  # (g, B, L, Kc)
    return cols.reshape(g, B * L, KK // g)


def weight_col(weight, groups):
    """W_col per group: (groups, Kc, Nc)."""
    o = weight.shape[0]
    return weight.reshape(groups, o // groups, -1).transpose(1, 2)


def grad_col(grad, groups):
    """dY per group: (groups, B*L, Nc)."""
    B, o = grad.shape[:2]
    g = grad.reshape(B, groups, o // groups, -1).permute(1, 0, 3, 2)
    return g.reshape(groups, -1, o // groups)


class ConvOps:
    def __init__(self, recorder: Recorder, modules: ModuleStack, attribution: Attribution):
        self.recorder = recorder
        self.modules = modules
        self.attribution = attribution

    def forward(self, args, out):
        input, weight, bias, stride, padding, dilation, transposed, out_pad, groups = args[:9]
        recorder, torch = self.recorder, self.recorder.torch
        mod_name, module, _ = self.modules.current()
        if transposed or input.dim() not in (3, 4):
            kind = "transposed" if transposed else f"{input.dim() - 2}-D"
            recorder.unsupported.append((mod_name, f"aten.convolution ({kind})"))
            return
        p = conv_params(input, weight, stride, padding, dilation, groups)
        leaf = isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d))
        name = recorder.unique(mod_name if leaf else f"{mod_name}.conv")
        layer = Conv2d(name, **p)
        rec = LayerRecord(name, layer, "aten.convolution", ptr_a=storage_ptr(input),
                          ptr_b=storage_ptr(weight))
        recorder.layers.append(rec)
        if recorder.tensors:
            recorder.record(rec, "forward", im2col(torch, input, p), weight_col(weight, groups),
                            "aten.convolution")
        else:
            recorder.record_shape(rec, "forward", "aten.convolution")
        self.attribution.remember(out, [rec])

    def backward(self, args, node):
        grad, input, weight, _bias, stride, padding, dilation, transposed, _op, groups, mask = args[:11]
        recorder, torch = self.recorder, self.recorder.torch
        layers = self.attribution.lookup(node) if node is not None else None
        if transposed or input.dim() not in (3, 4):
            return
        if not layers:
            recorder.unattributed += 1
            return
        rec = layers[0]
        p = conv_params(input, weight, stride, padding, dilation, groups)
        op = "aten.convolution_backward"
        grad4 = grad if grad.dim() == 4 else grad.unsqueeze(2)
        if mask[0]:
            if recorder.tensors:
                w = weight_col(weight, groups)  # dX_col = dY @ W_col^T
                recorder.record(rec, "dgrad", grad_col(grad4, groups), w.transpose(1, 2), op)
            else:
                recorder.record_shape(rec, "dgrad", op)
        if mask[1]:
            if recorder.tensors:  # dW_col = X_col^T @ dY
                recorder.record(rec, "wgrad", im2col(torch, input, p).transpose(1, 2),
                                grad_col(grad4, groups), op)
            else:
                recorder.record_shape(rec, "wgrad", op)
