"""Real PyTorch models to capture (``s2fp8 trace capture MODEL``).

Each entry of :data:`TORCH_MODELS` is a module exposing ``DESCRIPTION`` and
``run_capture(tensors, max_elements, progress) -> (Capture, info dict)``; torch and the
model packages are imported only when a model is captured.
"""
from __future__ import annotations

#: model name -> module (imported lazily); the built-in layer-level models of the
#: cycle model are :data:`pysim.workload.models.MODELS`
TORCH_MODELS = {
    "digits-cnn": "pysim.workload.zoo.digits_cnn",
    "minilm": "pysim.workload.zoo.minilm",
}
