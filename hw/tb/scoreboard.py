"""Scoreboard: compares what a bench's monitor saw with the golden expectation (host side,
vectorized; no cocotb import, so pytest and ``s2fp8 regress`` use it directly).

The bench records, for every input it drove, the cycle it was accepted (``in_cycle``), and
for every ``valid_out`` beat the cycle and the output word(s) (``out_cycle``, ``out_*``).
``check_stream`` then checks, in this order of importance:

- count: exactly one result per input (no lost, no spurious ``valid_out`` beats);
- timing and order: result i appears exactly ``latency`` cycles after input i;
- values: result i equals ``expected[i]`` bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Report:
    """The outcome of one check (one bench run, or several merged with ``merge``)."""

    name: str
    vectors: int = 0
    mismatches: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)   # first few failures, readable
    notes: list[str] = field(default_factory=list)    # e.g. build time
    sim_seconds: float = 0.0                          # time inside the simulator(s)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and not self.errors

    @property
    def first_mismatch(self) -> str:
        return self.errors[0] if self.errors else ""

    @property
    def rate(self) -> float:
        """Vectors per second inside the simulator (0 if unknown)."""
        return self.vectors / self.sim_seconds if self.sim_seconds > 0 else 0.0

    def merge(self, other: "Report") -> "Report":
        self.vectors += other.vectors
        self.mismatches += other.mismatches
        self.seconds += other.seconds
        self.sim_seconds += other.sim_seconds
        self.errors.extend(other.errors[:max(0, MAX_RECORDED - len(self.errors))])
        self.notes.extend(note for note in other.notes if note not in self.notes)
        return self


MAX_RECORDED = 5


def _hex(value, width: int = 32) -> str:
    return f"0x{int(value):0{(width + 3) // 4}X}"


def check_stream(name: str, *, inputs: dict, expected, out_cycle, out_value, in_cycle,
                 latency: int, describe=None, seconds: float = 0.0) -> Report:
    """Compare one streamed run. ``inputs``: name -> array (per input, for the report);
    ``expected``/``out_value``: result words; ``in_cycle``/``out_cycle``: cycle numbers.

    ``describe(i)`` (optional) returns extra text for input i (e.g. its TestFloat family).
    """
    expected = np.asarray(expected).astype(np.uint64)
    out_value = np.asarray(out_value).astype(np.uint64)
    in_cycle, out_cycle = np.asarray(in_cycle, np.int64), np.asarray(out_cycle, np.int64)
    report = Report(name, vectors=int(expected.size), seconds=seconds)
    n_in, n_out = in_cycle.size, out_cycle.size
    if n_in != expected.size:
        report.errors.append(f"bench drove {n_in} inputs, {expected.size} were expected")
    if n_out != n_in:
        report.errors.append(f"{n_out} results for {n_in} inputs")
    n = min(n_in, n_out, expected.size)

    late = np.flatnonzero(out_cycle[:n] - in_cycle[:n] != latency)
    if late.size:
        i = int(late[0])
        report.errors.append(
            f"timing: {late.size} results not exactly {latency} cycles after their input; "
            f"first: input {i} accepted at cycle {in_cycle[i]}, a result appeared at cycle "
            f"{out_cycle[i]}")

    bad = np.flatnonzero(out_value[:n] != expected[:n])
    missing = expected.size - n
    report.mismatches = int(bad.size) + int(missing)
    for i in bad[:MAX_RECORDED]:
        i = int(i)
        operands = ", ".join(f"{key}={_hex(np.asarray(value)[i])}" for key, value in inputs.items())
        extra = f" [{describe(i)}]" if describe is not None else ""
        report.errors.append(f"#{i}: {operands}: expected {_hex(expected[i])}, "
                             f"got {_hex(out_value[i])}{extra}")
    return report
