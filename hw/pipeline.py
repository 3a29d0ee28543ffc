"""Small building blocks shared by the datapath components."""
from amaranth import Signal


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
