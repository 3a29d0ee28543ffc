"""cocotb side of the benches: job I/O, clock/reset, stream driver and monitor.

A bench module (``hw/tb/bench_*.py``) is a cocotb test that

1. ``job = load_job()``: vectors (.npz), seed and parameters from the host (``hw.tb.sim.run``);
2. starts the clock and resets the DUT (``start_clock_and_reset``);
3. builds a ``StreamDriver`` (inputs, valid, random idle gaps from the seeded RNG) and a
   ``StreamMonitor`` (valid_out + result ports) and calls ``run_stream``;
4. ``job.save(...)``: the monitor's observations and the driver's accept cycles, which the
   host compares with the golden model (``hw.tb.scoreboard``).

Speed: Python per cycle is the bottleneck, so there is exactly one ``await`` per clock
cycle (``run_stream`` steps the driver and the monitor from one loop instead of running
them as two coroutines), every per-vector quantity (operands as ints, issue schedule) is
precomputed with numpy, and signals are only written when they change.

Timing convention: cycle k is the clock period between rising edges k and k+1, edge 0
being the first edge after reset (the loop's step k runs right after edge k). The driver
presents vector i during cycle ``schedule[i]`` (``in_cycle``). Under cocotb + Verilator,
values read right after ``await RisingEdge(clk)`` are the ones that edge sampled (the
flops' pre-edge state, i.e. the end of cycle k-1), and a value written then is what the
next edge samples. So the monitor reports a ``valid_out`` beat read in step k as
``out_cycle = k - 1``, and a block of latency L (inputs presented in cycle t, result
valid in cycle t + L) gives ``out_cycle - in_cycle == L``, which the scoreboard checks.
The stand-in self-test (tests/test_rtl_fp32.py::test_harness_selftest) pins this down.
Every bench follows this one convention, including the array bench's own loop
(``bench_array``: it reads ``a.ready``/``c.valid`` in step k as cycle k-1's and decides
then what to drive in cycle k), and its accept and pop cycles equal the amaranth.sim
run and ``pysim.perf.cycles.gemm_schedule`` to the cycle.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import numpy as np

from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from hw.tb import sim as _sim

CLOCK_PERIOD_NS = 10


@dataclass
class Job:
    vectors: dict
    seed: int
    params: dict
    results_path: str

    def save(self, **arrays) -> None:
        _sim.save_npz(self.results_path, arrays)


def load_job() -> Job:
    with np.load(os.environ[_sim.ENV_VECTORS]) as data:
        vectors = {name: data[name] for name in data.files}
    seed = int(os.environ[_sim.ENV_SEED])
    params = json.loads(os.environ.get(_sim.ENV_PARAMS, "{}"))
    logging.getLogger("cocotb.s2fp8").info("bench seed %d, %d vectors, params %s", seed,
                                           len(next(iter(vectors.values()), ())), params)
    return Job(vectors, seed, params, os.environ[_sim.ENV_RESULTS])


async def start_clock_and_reset(dut, cycles: int = 2):
    """Start a clock on ``dut.clk``, hold ``dut.rst`` for ``cycles`` edges. Returns the
    RisingEdge trigger (reuse it: one object, one callback)."""
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    edge = RisingEdge(dut.clk)
    dut.rst.value = 1
    for _ in range(cycles):
        await edge
    dut.rst.value = 0
    return edge


def issue_schedule(n: int, rng: np.random.Generator, idle_prob: float = 0.2,
                   max_gap: int = 3) -> np.ndarray:
    """Step numbers (increasing) at which the driver presents vector i: with probability
    ``idle_prob`` a vector is preceded by 1..max_gap idle cycles (valid low)."""
    gaps = np.where(rng.random(n) < idle_prob, rng.integers(1, max_gap + 1, n), 0)
    return np.cumsum(gaps + 1) - 1


#: Bypass cocotb's value objects on the hot path (raw GPI get/set of ints), which is what
#: keeps the benches above 20k vectors/s. Set S2FP8_TB_PUBLIC_API=1 to use only the
#: public ``handle.value`` API (slower; for debugging a cocotb upgrade).
FAST_IO = os.environ.get("S2FP8_TB_PUBLIC_API", "0") != "1"


def reader(handle):
    """A zero-argument callable returning ``handle``'s current value as an int (the fast
    path may return it signed: mask with the port width)."""
    raw = getattr(handle, "_handle", None)
    if FAST_IO and hasattr(raw, "get_signal_val_long") and len(handle) <= 32:
        return raw.get_signal_val_long
    if FAST_IO and hasattr(raw, "get_signal_val_binstr"):
        get_binstr = raw.get_signal_val_binstr
        return lambda: int(get_binstr(), 2)          # wide ports: no LogicArray on the way
    return lambda: int(handle.value)


def writer(handle):
    """A one-argument callable writing an int to ``handle`` (inertial deposit)."""
    raw = getattr(handle, "_handle", None)
    trusted = os.environ.get("COCOTB_TRUST_INERTIAL_WRITES", "0") == "1"
    if FAST_IO and trusted and hasattr(raw, "set_signal_val_int") and len(handle) <= 32:
        set_int = raw.set_signal_val_int
        return lambda value: set_int(0, value)      # 0: _GPISetAction.DEPOSIT
    if FAST_IO and trusted and hasattr(raw, "set_signal_val_binstr"):
        set_binstr, width = raw.set_signal_val_binstr, f"0{len(handle)}b"
        return lambda value: set_binstr(0, format(value, width))   # wide ports

    def write(value):
        handle.value = value
    return write


def as_int_list(array) -> list[int]:
    """numpy array -> list of Python ints (what handle writes want)."""
    return np.asarray(array).astype(np.uint64).tolist()


class StreamDriver:
    """Presents vector i on the ``data`` ports with ``valid`` high in step ``schedule[i]``,
    ``valid`` low in the other steps. ``data``: list of (handle, list[int])."""

    def __init__(self, valid, data, schedule: np.ndarray):
        self.valid = writer(valid)
        self.data = [(writer(handle), values) for handle, values in data]
        self.schedule = schedule.tolist()
        if self.schedule and (self.schedule[0] < 0 or np.any(np.diff(schedule) < 1)):
            raise ValueError("schedule must be increasing step numbers >= 0")
        self.count = len(self.schedule)
        self.index = 0
        self.next_step = self.schedule[0] if self.count else -1
        self.valid_now = False
        self.valid(0)

    @property
    def done(self) -> bool:
        return self.index >= self.count

    def step(self, k: int) -> None:
        if k == self.next_step:
            i = self.index
            for write, values in self.data:
                write(values[i])
            if not self.valid_now:
                self.valid(1)
                self.valid_now = True
            self.index = i + 1
            self.next_step = self.schedule[i + 1] if i + 1 < self.count else -1
        elif self.valid_now:
            self.valid(0)
            self.valid_now = False

    def in_cycles(self) -> np.ndarray:
        """The cycle vector i was presented in (valid_in high)."""
        return np.asarray(self.schedule, np.int64)


class StreamMonitor:
    """Samples ``valid`` every step and the ``data`` handles when it is high."""

    def __init__(self, valid, data: dict):
        self.valid = reader(valid)
        self.names = list(data)
        self.handles = [reader(data[name]) for name in self.names]
        self.widths = [len(data[name]) for name in self.names]
        self.cycles: list[int] = []
        self.values: list[list[int]] = [[] for _ in self.handles]

    def step(self, k: int) -> None:
        if self.valid():
            self.cycles.append(k - 1)   # values read in step k are those of cycle k-1
            for store, read in zip(self.values, self.handles):
                store.append(read())

    def arrays(self) -> dict:
        out = {"out_cycle": np.asarray(self.cycles, np.int64)}
        for name, store, width in zip(self.names, self.values, self.widths):
            # raw GPI reads are signed (two's complement of the port width): mask back
            values = np.asarray(store, np.int64) if width <= 63 else np.asarray(store, object)
            out[f"out_{name}"] = (values & ((1 << width) - 1)).astype(np.uint64)
        return out


async def load_tables(edge, dut, tables: dict) -> None:
    """Write every entry of each decode table (port prefix -> uint32[128]) in parallel, one
    per cycle, one cycle per ``await edge``. Returns in the step after the last write with
    every ``en`` written low: the caller's next writes are for the first cycle with the
    tables loaded (no extra idle cycle)."""
    ports = [(writer(getattr(dut, f"{prefix}__en")), writer(getattr(dut, f"{prefix}__addr")),
              writer(getattr(dut, f"{prefix}__data")), as_int_list(words))
             for prefix, words in tables.items()]
    for address in range(max(len(words) for *_, words in ports)):
        for en, addr, data, words in ports:
            en(1)
            addr(address)
            data(words[address])
        await edge
    for en, *_ in ports:
        en(0)


def pack_lanes(lanes: np.ndarray) -> list[int]:
    """uint8[n, lanes] -> one int per row, lane 0 in the low byte (a wide port's value)."""
    padded = np.zeros((lanes.shape[0], 8 * ((lanes.shape[1] + 7) // 8)), np.uint8)
    padded[:, :lanes.shape[1]] = lanes
    words = padded.view("<u8")
    return [sum(int(w) << (64 * i) for i, w in enumerate(row)) for row in words]


async def run_stream(edge, driver: StreamDriver, monitor: StreamMonitor, drain: int) -> int:
    """One await per cycle: monitor samples, driver drives. Runs until the driver is done
    and ``drain`` more cycles have passed. Returns the number of cycles."""
    k = 0
    step_driver, step_monitor = driver.step, monitor.step
    step_driver(0)
    while not driver.done:
        await edge
        k += 1
        step_monitor(k)
        step_driver(k)
    for _ in range(drain):
        await edge
        k += 1
        step_monitor(k)
        step_driver(k)
    return k
