"""The one place that turns Amaranth components into Verilog (``s2fp8 verilog`` is its CLI).

Every top-level block the project simulates or hands to a synthesis flow is listed in
``TOPS``: a module-name template and a constructor. A template containing ``{W}`` is
emitted once per decoded-significand width W (the requested widths, plus any
``always`` widths); a template without it is emitted once. Adding a block is one line::

    Top("s2fp8_mac_w{W}", lambda W: _mac().S2FP8MAC(mant_bits=W))

Output is deterministic: the ``src`` attributes Amaranth attaches (file:line of the
Python that built each signal) are made relative to the repository root (project files)
or to site-packages (library files), so the text does not depend on where the checkout
or the virtualenv lives. Files are written atomically (temporary file + rename).
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from pysim.files import atomic_write
from pysim.numerics.formats import FP32, check_mant_bits
from pysim.perf.arch import LIFTED_ACC_STAGES, ArrayConfig

#: Repository root (this file is hw/verilog.py).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Default widths W emitted by ``s2fp8 verilog``.
DEFAULT_MANT_BITS = (FP32.precision, 8)
DEFAULT_OUT_DIR = "rtl_out"
#: Verilator control file with the documented lint waivers (see docs/verilog.md).
LINT_WAIVERS = Path(__file__).resolve().parent / "lint_waivers.vlt"


def _fp32():
    return importlib.import_module("hw.fp32")


def _mac():
    return importlib.import_module("hw.mac")


def _array():
    return importlib.import_module("hw.array")


def _pe(config: ArrayConfig):
    """The array's processing element, generated once as its own module."""
    return config.pe_name, _array().ProcessingElement(
        mant_bits=config.mant_bits, acc_stages=config.acc_stages, mul_stages=config.mul_stages)


def _systolic_array(config: ArrayConfig):
    """The array of ``config``, instantiating the shared PE; its module name is the
    config's ``top_name`` (checked in ``verilog_text``)."""
    return _array().S2FP8Array(config=config, pe_module=config.pe_name)


def _array_top(rows: int, cols: int, template_w: str = "{W}", always=(FP32.precision,),
               acc_stages: int = 1) -> "Top":
    """The ``Top`` of an R x C array (``always``: the widths always emitted)."""
    def config(w):
        return ArrayConfig(rows, cols, w, acc_stages)
    template = ArrayConfig(rows, cols, FP32.precision, acc_stages).top_name.replace(
        f"_w{FP32.precision}", f"_w{template_w}")
    return Top(template, lambda W: _systolic_array(config(W)), always=always, emit_src=False,
               modules=lambda W: [_pe(config(W))])


@dataclass(frozen=True)
class Top:
    """One top-level block: ``template`` ("fp32_mul_w{W}" or "fp32_add") and ``build(W)``."""

    template: str
    build: Callable[[int], object]
    #: widths always emitted for a ``{W}`` template, whatever is requested
    always: tuple[int, ...] = field(default=())
    #: keep Amaranth's ``src`` attributes (file:line of each signal); the arrays repeat
    #: one PE many times, so theirs are dropped to keep the files small
    emit_src: bool = True
    #: ``modules(W)``: (name, component) pairs of separately generated modules the block
    #: instantiates by name (the array's PE), written into the same file before it
    modules: Callable[[int], list] | None = None

    @property
    def parametric(self) -> bool:
        return "{W}" in self.template

    def names(self, mant_bits_list: Sequence[int]) -> list[tuple[str, int]]:
        """(module name, W) pairs this block emits for the requested widths."""
        if not self.parametric:
            return [(self.template, FP32.precision)]
        widths = list(dict.fromkeys([*self.always, *mant_bits_list]))
        return [(self.template.format(W=w), w) for w in widths]


#: Registry of every top-level block. Constructors import lazily: hw.fp32 / hw.mac load
#: only when Verilog is actually generated.
TOPS: list[Top] = [
    Top("fp32_mul_w{W}", lambda W: _fp32().FPMul(sig_bits=W), always=(FP32.precision,)),
    Top("fp32_add", lambda W: _fp32().FPAddUnit()),
    Top("s2fp8_mac_w{W}", lambda W: _mac().S2FP8MAC(mant_bits=W), always=(FP32.precision,)),
    # the pipelined ("lifted clock") MAC and array, at W = 24 only
    Top(f"s2fp8_mac_w{FP32.precision}_l{LIFTED_ACC_STAGES}",
        lambda W: _mac().S2FP8MAC(mant_bits=W, acc_stages=LIFTED_ACC_STAGES)),
    _array_top(4, 4),
    _array_top(4, 4, template_w=str(FP32.precision), always=(), acc_stages=LIFTED_ACC_STAGES),
    _array_top(8, 8, template_w="24", always=()),
    Top("s2fp8_outpath_c4", lambda W: importlib.import_module("hw.outpath").OutputPath(lanes=4),
        emit_src=False),  # five 1024-entry log2 ROMs: src attributes would add 40 %
    Top("s2fp8_engine_4x4_w24", lambda W: importlib.import_module("hw.engine").S2FP8LayerEngine(
        config=ArrayConfig(4, 4, W), pe_module=ArrayConfig(4, 4, W).pe_name), emit_src=False,
        modules=lambda W: [_pe(ArrayConfig(4, 4, W))]),
]


def module_names(mant_bits_list: Sequence[int] = DEFAULT_MANT_BITS) -> list[str]:
    return [name for top in TOPS for name, _ in top.names(mant_bits_list)]


def _find_top(name: str) -> tuple[Top, int]:
    for top in TOPS:
        if not top.parametric:
            if name == top.template:
                return top, FP32.precision
            continue
        prefix, _, suffix = top.template.partition("{W}")
        if name.startswith(prefix) and name.endswith(suffix):
            digits = name[len(prefix):len(name) - len(suffix)]
            if digits.isdigit():
                return top, check_mant_bits(int(digits))
    known = ", ".join(top.template for top in TOPS)
    raise KeyError(f"no top-level block named {name!r} (known: {known})")


_SRC_ATTR = re.compile(r'(\(\* src = ")([^"]*)(" \*\))')


def _path_prefixes() -> list[str]:
    """Absolute path prefixes stripped from ``src`` attributes, longest first."""
    prefixes = {str(REPO_ROOT) + os.sep}
    for entry in sys.path:
        if entry and entry.rstrip(os.sep).endswith(("site-packages", "dist-packages")):
            prefixes.add(str(Path(entry).resolve()) + os.sep)
            prefixes.add(entry.rstrip(os.sep) + os.sep)
    import amaranth
    prefixes.add(str(Path(amaranth.__file__).resolve().parent.parent) + os.sep)
    return sorted(prefixes, key=len, reverse=True)


def _relativize_src(text: str) -> str:
    prefixes = _path_prefixes()

    def fix(match: re.Match) -> str:
        value = match.group(2)
        for prefix in prefixes:
            value = value.replace(prefix, "")
        return match.group(1) + value + match.group(3)

    return _SRC_ATTR.sub(fix, text)


def verilog_text(name: str) -> str:
    """The Verilog of the registered top-level block ``name`` (e.g. "fp32_mul_w24")."""
    from amaranth.back import verilog
    top, width = _find_top(name)
    component = top.build(width)
    config = getattr(component, "config", None)
    if isinstance(config, ArrayConfig) and config.top_name != name:
        raise AssertionError(f"TOPS entry {top.template!r} builds {config.top_name}, not {name}")
    parts = [verilog.convert(module, name=module_name, emit_src=top.emit_src)
             for module_name, module in (top.modules(width) if top.modules else [])]
    parts.append(verilog.convert(component, name=name, emit_src=top.emit_src))
    return _relativize_src("".join(parts))


def generate_one(name: str, out_dir) -> Path:
    """Write ``<out_dir>/<name>.v``; returns its path. Unchanged files are not rewritten."""
    return _write_if_changed(Path(out_dir) / f"{name}.v", verilog_text(name))


def _write_if_changed(path: Path, text: str) -> Path:
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
    return path


def generate(mant_bits_list: Iterable[int] = DEFAULT_MANT_BITS, out_dir=DEFAULT_OUT_DIR,
             on_written=None) -> list[Path]:
    """Write every top-level block (each ``{W}`` block once per width) into ``out_dir``,
    plus a copy of the lint waivers (``lint_waivers.vlt``). Returns the .v paths;
    ``on_written(path)`` is called as each one is done (progress)."""
    widths = [check_mant_bits(w) for w in mant_bits_list]
    paths = []
    for name in module_names(widths):
        paths.append(generate_one(name, out_dir))
        if on_written is not None:
            on_written(paths[-1])
    _write_if_changed(Path(out_dir) / LINT_WAIVERS.name, LINT_WAIVERS.read_text())
    return paths


def lint(paths: Iterable[Path]) -> tuple[bool, str]:
    """``verilator --lint-only -Wall`` with the waivers on each file: (all clean, output).
    Clean means exit code 0 and no %Warning/%Error line."""
    import subprocess
    from hw.toolchain import ensure_verilator
    info = ensure_verilator()
    clean, output = True, []
    for path in paths:
        done = subprocess.run([str(info.path), "--lint-only", "-Wall", str(LINT_WAIVERS),
                               str(path)], capture_output=True, text=True)
        text = done.stdout + done.stderr
        problems = [line for line in text.splitlines() if line.startswith(("%Warning", "%Error"))]
        if done.returncode != 0 or problems:
            clean = False
            output.append(f"{path}: exit {done.returncode}\n" + text)
    return clean, "\n".join(output)
