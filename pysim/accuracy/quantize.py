"""Torch quantizers for training, bit-exact with the numpy golden model.

Each ``quantize_*`` maps a float32 torch tensor to the float32 tensor of its 8-bit
round trip (encode, then decode):

- ``s2fp8``: pysim itself, :func:`pysim.numerics.s2fp8.encode` then
  :func:`~pysim.numerics.s2fp8.decode` on the tensor's numpy view (per-tensor statistics
  over the nonzero entries, alpha and beta stored as float32, decode through the
  tensor's 128-entry FP32 table);
- ``e5m2``: torch's ``float8_e5m2`` conversion after clamping to +-57344, equal to
  :func:`pysim.numerics.fp8.e5m2_encode` then ``e5m2_decode`` (RNE, subnormals,
  saturating);
- ``e4m3``: torch's ``float8_e4m3fn`` conversion with the overflow patched to NaN, equal
  to the ml_dtypes round trip of :mod:`pysim.accuracy.gemm_error` (RNE, subnormals, a
  magnitude above 464 becomes NaN).

tests/test_train.py compares every quantizer with the numpy path bit for bit. NaN input
propagates through E5M2 and E4M3 (pysim's E5M2 refuses it) and raises
:class:`NonFiniteTensor` in S2FP8: training stops the run either way.

:class:`QuantizedConv2d` and :class:`QuantizedLinear` are the paper's quantization points
(Cambier et al. 2020): forward, both GEMM inputs (weights and activations) are quantized;
backward, the incoming gradient is quantized once and used by both the dgrad and the
wgrad GEMM together with the saved quantized inputs. Accumulation (the torch conv /
matmul) and everything else stay FP32. Import this module only where torch is installed.
"""
from __future__ import annotations

import numpy as np
import torch

from pysim.numerics import s2fp8
from pysim.numerics.formats import E4M3, E5M2

MODES = ("fp32", "s2fp8", "e5m2", "e4m3")
LABELS = {"fp32": "FP32", "s2fp8": "S2FP8", "e5m2": "E5M2", "e4m3": "E4M3"}

#: ml_dtypes rounds |x| up to the next E4M3 binade step past the largest finite value
#: (which does not exist: NaN) from the midpoint on, ties to even staying at max_finite.
E4M3_NAN_ABOVE = E4M3.max_finite + 2.0 ** (E4M3.emax - E4M3.frac_bits - 1)


def quantize_e5m2(x: torch.Tensor) -> torch.Tensor:
    """E5M2 round trip of a float32 tensor: RNE, subnormals, saturating to +-57344."""
    limit = E5M2.max_finite
    return torch.clamp(x, -limit, limit).to(torch.float8_e5m2).to(torch.float32)


def quantize_e4m3(x: torch.Tensor) -> torch.Tensor:
    """E4M3 (``float8_e4m3fn``) round trip as ml_dtypes does it: torch's conversion
    saturates to 448 where ml_dtypes gives NaN (sign kept), so those entries are patched."""
    q = x.to(torch.float8_e4m3fn).to(torch.float32)
    overflow = x.abs() > E4M3_NAN_ABOVE
    if bool(overflow.any()):
        q = torch.where(overflow, torch.copysign(torch.full_like(q, float("nan")), x), q)
    return q


class NonFiniteTensor(ValueError):
    """S2FP8 encode of a tensor holding NaN or Inf (pysim refuses it)."""


def quantize_s2fp8(x: torch.Tensor) -> torch.Tensor:
    """S2FP8 round trip of a float32 tensor: ``s2fp8.decode(s2fp8.encode(x))`` on the
    tensor's numpy view, statistics recomputed for this tensor.

    pysim itself, not a torch re-implementation: its cache-sized blocks on both cores
    took 112 ms per 2M-element tensor here against 425 ms for the same algorithm as
    ~20 whole-tensor torch passes (float64 log2/exp2 and the bit rounding), measured
    with the machine shared (load 4.5 on 2 cores).
    """
    try:
        encoded = s2fp8.encode(x.detach().contiguous().numpy())
    except ValueError as error:  # NaN or Inf: the training run has diverged
        raise NonFiniteTensor(str(error)) from None
    return torch.from_numpy(s2fp8.decode(encoded))


QUANTIZERS = {"s2fp8": quantize_s2fp8, "e5m2": quantize_e5m2, "e4m3": quantize_e4m3}


class GradientFlushCounter:
    """Per layer: nonzero incoming-gradient entries, and how many of them the quantizer
    flushed to zero (the underflow that stops plain E5M2 training)."""

    def __init__(self):
        self.nonzero: dict[str, int] = {}
        self.flushed: dict[str, int] = {}

    def register(self, layer: str) -> None:
        """Give ``layer`` its place: reports list layers in registration (forward) order."""
        self.nonzero.setdefault(layer, 0)
        self.flushed.setdefault(layer, 0)

    def add(self, layer: str, grad: torch.Tensor, quantized: torch.Tensor) -> None:
        nonzero = grad != 0
        self.nonzero[layer] = self.nonzero.get(layer, 0) + int(nonzero.sum())
        flushed = int((nonzero & (quantized == 0)).sum())
        self.flushed[layer] = self.flushed.get(layer, 0) + flushed

    def fractions(self) -> dict[str, float]:
        """layer -> flushed / nonzero (0 for a layer that never saw a nonzero gradient)."""
        return {layer: (self.flushed[layer] / n if n else 0.0)
                for layer, n in self.nonzero.items()}


class _QuantizedConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, quantize, padding, counter, name):
        qx, qw = quantize(x), quantize(weight)
        ctx.save_for_backward(qx, qw)
        ctx.quantize, ctx.padding, ctx.counter, ctx.name = quantize, padding, counter, name
        return torch.nn.functional.conv2d(qx, qw, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        qx, qw = ctx.saved_tensors
        qgrad = ctx.quantize(grad)
        if ctx.counter is not None:
            ctx.counter.add(ctx.name, grad, qgrad)
        dgrad, wgrad, _ = torch.ops.aten.convolution_backward(
            qgrad, qx, qw, None, [1, 1], [ctx.padding] * 2, [1, 1], False, [0, 0], 1,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False])
        return dgrad, wgrad, None, None, None, None


class _QuantizedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, quantize, counter, name):
        qx, qw = quantize(x), quantize(weight)
        ctx.save_for_backward(qx, qw)
        ctx.quantize, ctx.counter, ctx.name = quantize, counter, name
        return qx @ qw.t()

    @staticmethod
    def backward(ctx, grad):
        qx, qw = ctx.saved_tensors
        qgrad = ctx.quantize(grad)
        if ctx.counter is not None:
            ctx.counter.add(ctx.name, grad, qgrad)
        dgrad = qgrad @ qw if ctx.needs_input_grad[0] else None
        wgrad = qgrad.t() @ qx if ctx.needs_input_grad[1] else None
        return dgrad, wgrad, None, None, None


class QuantizedConv2d(torch.nn.Conv2d):
    """A stride-1, bias-free 3x3 (or k x k) convolution whose GEMM operands go through
    ``quantize`` (None: plain FP32). ``counter`` records gradient flushes under ``name``."""

    def __init__(self, in_channels, out_channels, kernel_size=3, *, quantize=None,
                 counter=None, name="conv"):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                         bias=False)
        self.quantize, self.counter, self.name = quantize, counter, name
        if counter is not None and quantize is not None:
            counter.register(name)

    def forward(self, x):
        if self.quantize is None:
            return super().forward(x)
        return _QuantizedConv.apply(x, self.weight, self.quantize, self.padding[0],
                                    self.counter, self.name)


class QuantizedLinear(torch.nn.Linear):
    """A Linear layer whose GEMM operands go through ``quantize``; the bias is added in FP32."""

    def __init__(self, in_features, out_features, *, quantize=None, counter=None,
                 name="fc"):
        super().__init__(in_features, out_features)
        self.quantize, self.counter, self.name = quantize, counter, name
        if counter is not None and quantize is not None:
            counter.register(name)

    def forward(self, x):
        if self.quantize is None:
            return super().forward(x)
        return _QuantizedLinear.apply(x, self.weight, self.quantize, self.counter,
                                      self.name) + self.bias
