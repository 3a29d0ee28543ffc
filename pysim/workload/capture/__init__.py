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

One module per job: :mod:`.dispatch` (module hooks, the dispatch mode, attributing a
backward op to its forward op), :mod:`.records` (GEMM and layer records, operand saving),
:mod:`.mm`, :mod:`.conv`, :mod:`.sdpa` (one per op family), :mod:`.output` (the trace
and the ``.npz``). This module routes each op to its family.

torch is imported lazily: importing this package does not need torch.
"""
from __future__ import annotations

import numpy as np

from pysim.workload.capture.dispatch import (Attribution, ModuleStack, make_dispatch_mode,
                                             storage_ptr)
from pysim.workload.capture.conv import ConvOps
from pysim.workload.capture.mm import MM_OPS, MatmulOps
from pysim.workload.capture.output import operand_arrays, save_capture, to_trace
from pysim.workload.capture.records import (PIP_HINT, CaptureError, GemmRecord, LayerRecord,
                                            Recorder, require_torch)
from pysim.workload.capture.sdpa import SDPA_OPS, AttentionOps, is_sdpa_backward

__all__ = ["MM_OPS", "PIP_HINT", "SDPA_OPS", "Capture", "CaptureError", "GemmRecord",
           "LayerRecord", "require_torch", "save_capture"]


class Capture:
    """Context manager recording the GEMMs of a forward + backward run.

    ``model``: the root module (names layers after its ``named_modules`` and tells
    weights from activations); ``tensors``: keep the operands; ``max_elements``: cap on
    the saved elements of one tensor (None: no cap).
    """

    def __init__(self, model=None, tensors: bool = False, max_elements: int | None = None):
        self.torch = require_torch()
        self.model = model
        self.tensors = tensors
        self.max_elements = max_elements
        self.errors: list[Exception] = []
        self._recorder = Recorder(self.torch, tensors, max_elements)
        self._modules = ModuleStack(self.torch, model)
        self._attribution = Attribution()
        param_ptrs = {storage_ptr(p) for p in model.parameters()} if model is not None else set()
        parts = (self._recorder, self._modules, self._attribution)
        self._mm = MatmulOps(*parts, param_ptrs)
        self._conv = ConvOps(*parts)
        self._sdpa = AttentionOps(*parts)
        self._mode = make_dispatch_mode(self._on_op, self.errors)

    @property
    def layers(self) -> list[LayerRecord]:
        """The recorded layers, in call order."""
        return self._recorder.layers

    @property
    def unsupported(self) -> list[tuple[str, str]]:
        """``(module, op)`` of the GEMM-like ops not simulated (transposed or 3-D conv)."""
        return self._recorder.unsupported

    @property
    def unattributed(self) -> int:
        """Backward GEMMs whose forward op was not recorded."""
        return self._recorder.unattributed

    # ---------------------------------------------------------------- context manager
    def __enter__(self):
        self._modules.install()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        self._modules.remove()
        self._attribution.clear()
        if exc[0] is None and self.errors:
            raise self.errors[0]
        return False

    # -------------------------------------------------------------------- dispatch
    def _on_op(self, func, args, kwargs, out):
        name = func.overloadpacket.__name__
        node = self.torch._C._current_autograd_node()
        if name in MM_OPS:
            self._mm.on_op(name, args, out, node)
        elif name == "convolution":
            if node is None:
                self._conv.forward(args, out)
        elif name == "convolution_backward":
            self._conv.backward(args, node)
        elif name in SDPA_OPS:
            self._sdpa.forward(func, name, args, kwargs, out)
        elif is_sdpa_backward(name):
            self._sdpa.backward(func, name, args, kwargs, node)

    # --------------------------------------------------------------------- results
    def to_trace(self, model_name: str, source: str | None = None, tensor_file=None):
        """Build a :class:`pysim.workload.trace.Trace`; with tensors, ``tensor_file`` (the
        .npz path that :func:`save_capture` writes) is referenced."""
        return to_trace(self.layers, self.unsupported, model_name, source, tensor_file)

    def arrays(self) -> dict[str, np.ndarray]:
        """The saved operands, keyed as :meth:`to_trace` references them."""
        return operand_arrays(self.layers)
