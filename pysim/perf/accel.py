"""The accelerator the memory model prices: one frozen, validated configuration.

An :class:`Accelerator` is the array (R x C, W) plus its memory system: on-chip buffers
for A, B and the results (bytes, or unlimited), double buffering on or off, the DRAM
bandwidth (bytes per cycle, or unlimited), the clock, the operand and output formats and
the energy table. It comes from a TOML file (:func:`load_accelerator`, schema in
docs/memory.md) and/or overrides (the CLI flags); every bad key or value raises one
:class:`BadInput` line naming the file, the ``[section] key`` and the value.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

from pysim.errors import BadInput
from pysim.numerics.formats import MANT_BITS_MAX, MANT_BITS_MIN
from pysim.perf.arch import ARRAY_DIM_MAX, ARRAY_DIM_MIN
from pysim.perf.energy import EnergyTable
from pysim.perf.formats_cost import operand_format, output_format
from pysim.validate import is_int

KIB = 1 << 10
#: defaults: 256 KiB of operand buffers split evenly, 64 KiB of results, 32 B/cycle
#: (32 GB/s at 1 GHz, one DDR4-4000 channel), 1 GHz, S2FP8 operands, FP32 results
DEFAULT_A_BYTES = DEFAULT_B_BYTES = 128 * KIB
DEFAULT_RESULT_BYTES = 64 * KIB
DEFAULT_DRAM_BW = Fraction(32)
DEFAULT_CLOCK_MHZ = 1000.0
#: largest buffer or bandwidth accepted (keeps every product the model forms far from
#: the int64 limit; larger means "unlimited": write "inf")
MAX_BYTES = 1 << 40
#: a bandwidth is kept as an exact fraction; its denominator is bounded so that
#: bytes * denominator stays exact in int64
MAX_BW_DENOMINATOR = 1000
UNLIMITED_WORDS = ("inf", "unlimited")

#: TOML schema: section -> key -> kind
SCHEMA = {
    "array": {"rows": "int", "cols": "int", "mant_bits": "int"},
    "buffers": {"a_bytes": "bytes", "b_bytes": "bytes", "results_bytes": "bytes",
                "double_buffered": "bool"},
    "dram": {"bytes_per_cycle": "bandwidth"},
    "clock": {"mhz": "positive"},
    "formats": {"operand": "str", "output": "str"},
    "energy": {"dram_pj_per_byte": "positive", "sram_pj_per_byte": "points",
               "accumulate_pj": "nonnegative", "mac_pj": "mac_table"},
}


@dataclass(frozen=True)
class Accelerator:
    """Array + memory system; buffers and bandwidth ``None`` mean unlimited."""

    rows: int
    cols: int
    mant_bits: int = MANT_BITS_MAX
    a_bytes: int | None = DEFAULT_A_BYTES
    b_bytes: int | None = DEFAULT_B_BYTES
    results_bytes: int | None = DEFAULT_RESULT_BYTES
    double_buffered: bool = True
    dram_bw: Fraction | None = DEFAULT_DRAM_BW
    clock_mhz: float = DEFAULT_CLOCK_MHZ
    operand: str = "s2fp8"
    output: str = "fp32"
    energy: EnergyTable = field(default_factory=EnergyTable)

    def __post_init__(self):
        where = "accelerator"
        _check_range(where, "rows", self.rows, ARRAY_DIM_MIN, ARRAY_DIM_MAX)
        _check_range(where, "cols", self.cols, ARRAY_DIM_MIN, ARRAY_DIM_MAX)
        _check_range(where, "mant_bits", self.mant_bits, MANT_BITS_MIN, MANT_BITS_MAX)
        for name in ("a_bytes", "b_bytes", "results_bytes"):
            value = getattr(self, name)
            if value is not None:
                _check_range(where, name, value, 1, MAX_BYTES)
        if not isinstance(self.double_buffered, bool):
            raise BadInput(f"{where}: double_buffered must be true or false, "
                           f"got {self.double_buffered!r}")
        if self.dram_bw is not None and not (isinstance(self.dram_bw, Fraction)
                                             and 0 < self.dram_bw <= MAX_BYTES):
            raise BadInput(f"{where}: dram_bw must be a positive Fraction, got {self.dram_bw!r}")
        operand_format(self.operand, f"{where}: operand")
        out = output_format(self.output, f"{where}: output")
        if self.results_bytes is not None:
            tile = self.rows * self.cols * out.element_bytes * self.slots
            if self.results_bytes < tile:
                raise BadInput(
                    f"{where}: results buffer of {self.results_bytes} bytes cannot hold "
                    f"{self.slots} {self.rows}x{self.cols} tile(s) of {self.output} results "
                    f"({tile} bytes)")

    @property
    def slots(self) -> int:
        """Blocks a buffer holds at once: 2 when double-buffered (one filling while the
        other is read), else 1."""
        return 2 if self.double_buffered else 1

    def with_format(self, operand: str) -> "Accelerator":
        return replace(self, operand=operand)

    def describe(self) -> dict:
        """JSON-able summary (bandwidth as a float, unlimited as null)."""
        return {"rows": self.rows, "cols": self.cols, "mant_bits": self.mant_bits,
                "a_bytes": self.a_bytes, "b_bytes": self.b_bytes,
                "results_bytes": self.results_bytes, "double_buffered": self.double_buffered,
                "dram_bytes_per_cycle": None if self.dram_bw is None else float(self.dram_bw),
                "clock_mhz": self.clock_mhz, "operand": self.operand, "output": self.output}

    def summary(self) -> str:
        def size(value):
            return "unlimited" if value is None else f"{value / KIB:g} KiB"
        bw = "unlimited" if self.dram_bw is None else f"{float(self.dram_bw):g} B/cycle"
        return (f"{self.rows}x{self.cols} array (W={self.mant_bits}), "
                f"buffers A {size(self.a_bytes)}"
                f" + B {size(self.b_bytes)} + results {size(self.results_bytes)}"
                f"{', double-buffered' if self.double_buffered else ', single-buffered'}, "
                f"DRAM {bw}, {self.clock_mhz:g} MHz, {self.output} results")


def _check_range(where: str, name: str, value, low: int, high: int) -> int:
    if not is_int(value) or not low <= value <= high:
        raise BadInput(f"{where}: {name} must be an integer in {low}..{high}, got {value!r}")
    return int(value)


# ------------------------------------------------------------------------ parsing

def parse_bandwidth(where: str, value) -> Fraction | None:
    """Bytes per cycle: a positive number (kept exact: ``25.6`` -> 128/5) or "inf"."""
    if isinstance(value, str) and value.strip().lower() in UNLIMITED_WORDS:
        return None
    if isinstance(value, float) and math.isinf(value) and value > 0:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadInput(f"{where}: must be a number of bytes per cycle or \"inf\", got {value!r}")
    try:
        bw = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise BadInput(f"{where}: must be a number of bytes per cycle or \"inf\", "
                       f"got {value!r}") from None
    if not 0 < bw <= MAX_BYTES:
        raise BadInput(f"{where}: must be > 0 and <= {MAX_BYTES}, got {value!r}")
    if bw.denominator > MAX_BW_DENOMINATOR:
        raise BadInput(f"{where}: at most 3 decimals, got {value!r}")
    return bw


def parse_bytes(where: str, value) -> int | None:
    if isinstance(value, str) and value.strip().lower() in UNLIMITED_WORDS:
        return None
    if isinstance(value, float) and math.isinf(value) and value > 0:
        return None
    if isinstance(value, str) and value.strip().isdigit():  # a CLI flag's text
        value = int(value.strip())
    if not is_int(value) or not 1 <= value <= MAX_BYTES:
        raise BadInput(f"{where}: must be an integer number of bytes in 1..{MAX_BYTES} or "
                       f"\"inf\", got {value!r}")
    return int(value)


def _positive(where, value, allow_zero=False) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value >= 0 if allow_zero else value > 0))
    if not ok:
        raise BadInput(f"{where}: must be a {'non-negative' if allow_zero else 'positive'} "
                       f"number, got {value!r}")
    return float(value)


def _points(where, value) -> tuple:
    ok = isinstance(value, list) and value and all(
        isinstance(p, list) and len(p) == 2 for p in value)
    if not ok:
        raise BadInput(f"{where}: must be a list of [buffer_bytes, pJ_per_byte] pairs, "
                       f"got {value!r}")
    points = tuple((_positive(where, s), _positive(where, e)) for s, e in value)
    if any(b[0] <= a[0] for a, b in zip(points, points[1:])):
        raise BadInput(f"{where}: buffer sizes must increase, got {value!r}")
    return points


def _mac_table(where, value) -> dict:
    if not isinstance(value, dict):
        raise BadInput(f"{where}: must be a table of format = pJ, got {value!r}")
    table = {}
    for name, pj in value.items():
        operand_format(name, f"{where}")
        table[name] = _positive(f"{where}.{name}", pj)
    return table


def _parse_value(where: str, kind: str, value):
    if kind == "int":
        if not is_int(value):
            raise BadInput(f"{where}: must be an integer, got {value!r}")
        return int(value)
    if kind == "bytes":
        return parse_bytes(where, value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise BadInput(f"{where}: must be true or false, got {value!r}")
        return value
    if kind == "bandwidth":
        return parse_bandwidth(where, value)
    if kind == "str":
        if not isinstance(value, str):
            raise BadInput(f"{where}: must be a string, got {value!r}")
        return value
    if kind == "positive":
        return _positive(where, value)
    if kind == "nonnegative":
        return _positive(where, value, allow_zero=True)
    if kind == "points":
        return _points(where, value)
    return _mac_table(where, value)


def read_toml(path) -> dict:
    """The TOML file as a dict; unreadable or malformed -> BadInput naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise BadInput(f"{path}: cannot read: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise BadInput(f"{path}: malformed TOML: {error}") from None


def parse_config(data: dict, source: str) -> dict:
    """Validated ``{key: value}`` of an accelerator TOML document (flattened)."""
    values = {}
    for section, table in data.items():
        if section not in SCHEMA:
            raise BadInput(f"{source}: unknown section [{section}] (expected "
                           f"{', '.join(f'[{s}]' for s in SCHEMA)})")
        if not isinstance(table, dict):
            raise BadInput(f"{source}: [{section}] must be a table, got {table!r}")
        for key, value in table.items():
            if key not in SCHEMA[section]:
                raise BadInput(f"{source}: [{section}] unknown key {key!r} (expected "
                               f"{', '.join(SCHEMA[section])})")
            where = f"{source}: [{section}] {key}"
            values[(section, key)] = (where, _parse_value(where, SCHEMA[section][key], value))
    return values


def load_accelerator(path=None, *, rows=None, cols=None, mant_bits=None, dram_bw=None,
                     buffer_kib=None, operand=None, double_buffered=None) -> Accelerator:
    """An :class:`Accelerator` from the TOML file ``path`` (optional), then the keyword
    overrides (CLI flags: ``dram_bw`` text/number or "inf", ``buffer_kib`` the total of
    the A and B buffers, split evenly). Defaults for everything but rows and cols."""
    values = parse_config(read_toml(path), str(path)) if path is not None else {}
    energy = EnergyTable()
    energy_keys = {k: v for (s, k), (_, v) in values.items() if s == "energy"}
    if energy_keys:
        energy = replace(energy, **energy_keys)

    def setting(section, key, override, default, flag):
        """(value, where it came from): the flag if given, else the file, else the default."""
        if override is not None:
            return override, flag
        if (section, key) in values:
            where, value = values[(section, key)]
            return value, where
        return default, f"[{section}] {key}"

    fields = {}
    for name, override, flag, low, high, default in (
            ("rows", rows, "--rows", ARRAY_DIM_MIN, ARRAY_DIM_MAX, None),
            ("cols", cols, "--cols", ARRAY_DIM_MIN, ARRAY_DIM_MAX, None),
            ("mant_bits", mant_bits, "--mant-bits", MANT_BITS_MIN, MANT_BITS_MAX, MANT_BITS_MAX)):
        value, where = setting("array", name, override, default, flag)
        if value is None:
            raise BadInput(f"array {name}: not given (set [array] {name} in the accelerator "
                           f"TOML or {flag})")
        fields[name] = _check_range(where, name, value, low, high)
    fields["double_buffered"] = setting("buffers", "double_buffered", double_buffered, True,
                                        "")[0]
    fields["clock_mhz"] = setting("clock", "mhz", None, DEFAULT_CLOCK_MHZ, "")[0]
    fields["operand"], where = setting("formats", "operand", operand, "s2fp8", "--formats")
    operand_format(fields["operand"], where)
    fields["output"], where = setting("formats", "output", None, "fp32", "")
    output_format(fields["output"], where)

    fields["dram_bw"] = (parse_bandwidth("--dram-bw", dram_bw) if dram_bw is not None
                         else values.get(("dram", "bytes_per_cycle"), (None, DEFAULT_DRAM_BW))[1])
    if buffer_kib is not None:
        total = parse_bytes("--buffer-kib", buffer_kib)
        if total is not None:
            if total * KIB > MAX_BYTES or total < 2:
                raise BadInput(f"--buffer-kib: must be in 2..{MAX_BYTES // KIB} or \"inf\", "
                               f"got {buffer_kib!r}")
            total = total * KIB // 2
        fields["a_bytes"] = fields["b_bytes"] = total
    else:
        fields["a_bytes"] = values.get(("buffers", "a_bytes"), (None, DEFAULT_A_BYTES))[1]
        fields["b_bytes"] = values.get(("buffers", "b_bytes"), (None, DEFAULT_B_BYTES))[1]
    fields["results_bytes"] = values.get(("buffers", "results_bytes"),
                                         (None, DEFAULT_RESULT_BYTES))[1]
    try:
        return Accelerator(**fields, energy=energy)
    except BadInput as error:
        raise BadInput(f"{path}: {error}" if path is not None else str(error)) from None
