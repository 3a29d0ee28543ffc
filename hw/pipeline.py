"""Small building blocks shared by the datapath components."""
from amaranth import Signal

from pysim.errors import ShapeError
from pysim.perf import arch


def delay(m, value, cycles: int, name: str):
    """``value`` delayed by ``cycles`` registers in ``m``'s sync domain (0: ``value`` itself).
    The registers are named ``{name}_d1``, ``{name}_d2``, ..."""
    for stage in range(1, cycles + 1):
        register = Signal.like(value, name=f"{name}_d{stage}")
        m.d.sync += register.eq(value)
        value = register
    return value


def stage(m, value, registered: bool, name: str):
    """``value`` through a pipeline register named ``name`` in ``m``'s sync domain if
    ``registered``, else ``value`` itself: one stage boundary of a unit whose depth is a
    parameter (hw.fp32.FPMul, hw.fp32.FPAdd)."""
    return delay(m, value, 1 if registered else 0, name)


class PipelineDepth:
    """The pipeline-depth parameters of the MAC, the array's PE and the baseline MACs:
    ``acc_stages`` (L, the accumulator loop) and ``mul_stages`` (M, the multiplier),
    validated by :func:`pysim.perf.arch.check_stages` and read-only."""

    def _set_depth(self, owner: str, acc_stages, mul_stages) -> None:
        try:
            self._acc_stages, self._mul_stages = arch.check_stages(acc_stages, mul_stages)
        except ShapeError as error:
            raise ValueError(f"{owner}: {error}") from None

    @property
    def acc_stages(self) -> int:
        return self._acc_stages

    @property
    def mul_stages(self) -> int:
        return self._mul_stages
