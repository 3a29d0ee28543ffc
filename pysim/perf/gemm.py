"""One GEMM shape of a layer and phase: what the tiler, the cycle model and the reports
count. Layers (``pysim.workload.layers``) lower to it."""
from __future__ import annotations

from dataclasses import dataclass

from pysim.errors import ShapeError
from pysim.validate import check_int

#: the three GEMMs of a training step, in the order they are listed
PHASES = ("forward", "dgrad", "wgrad")


def check_layer_name(name) -> str:
    if not isinstance(name, str) or not name:
        raise ShapeError(f"layer name must be a non-empty string, got {name!r}")
    return name


def check_field(layer: str, name: str, value, minimum: int = 1) -> int:
    """An integer field of a layer or GEMM, named in the error."""
    return check_int(value, f"layer {layer!r}: field {name!r}", minimum=minimum, error=ShapeError)


@dataclass(frozen=True)
class Gemm:
    """``count`` identical GEMMs ``C[m, n] = A[m, k] @ B[k, n]`` of one layer and phase.

    ``count`` is the number of independent GEMMs of that shape: the groups of a grouped
    convolution, the batch of a batched matmul, times a ``repeat``.
    """

    layer: str
    phase: str
    m: int
    k: int
    n: int
    count: int = 1

    def __post_init__(self):
        check_layer_name(self.layer)
        if self.phase not in PHASES:
            raise ShapeError(f"layer {self.layer!r}: field 'phase' must be one of "
                             f"{', '.join(PHASES)}, got {self.phase!r}")
        for name in ("m", "k", "n", "count"):
            object.__setattr__(self, name, check_field(self.layer, name, getattr(self, name)))

    @property
    def macs(self) -> int:
        """Multiply-accumulates: ``m * k * n * count``."""
        return self.m * self.k * self.n * self.count
