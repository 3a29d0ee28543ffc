"""Bit-exact golden model of the S2FP8 MAC/GEMM unit, its performance model, workloads,
accuracy studies and the ``s2fp8`` command line.

Layers, each importing only the ones before it (``tests/test_architecture.py`` reads every
import and enforces this; ``hw`` uses the first three only)::

    errors, validate, files           leaves: error types, the integer check, atomic writes
    pysim.numerics                    formats, rounding, E5M2, S2FP8, golden FP32 MAC/GEMM
    pysim.perf                        array config, GEMM shapes, tiler, cycle model, reports
    pysim.workload                    layers, models, traces, importers, PyTorch capture
    pysim.accuracy                    error of S2FP8 vs other formats on real tensors
    pysim.cli                         the ``s2fp8`` commands (may also use ``hw``)

docs/architecture.md draws it. The module paths of the flat layout before this one
(``pysim.fp8``, ``pysim.cycles``, ...) still import: :data:`LEGACY_MODULES` maps each to
its home, resolved lazily on first import so no layer loads another it does not need.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

#: old flat module path -> its home
LEGACY_MODULES = {
    "pysim.formats": "pysim.numerics.formats",
    "pysim.rounding": "pysim.numerics.rounding",
    "pysim.fp8": "pysim.numerics.fp8",
    "pysim.s2fp8": "pysim.numerics.s2fp8",
    "pysim.golden": "pysim.numerics.golden",
    "pysim.testfloat": "pysim.numerics.testfloat",
    "pysim.arch": "pysim.perf.arch",
    "pysim.tiler": "pysim.perf.tiler",
    "pysim.cycles": "pysim.perf.cycles",
    "pysim.report": "pysim.perf.report",
    "pysim.layers": "pysim.workload.layers",
    "pysim.models": "pysim.workload.models",
    "pysim.trace": "pysim.workload.trace",
    "pysim.capture": "pysim.workload.capture",
    "pysim.importers": "pysim.workload.importers",
    "pysim.zoo": "pysim.workload.zoo",
    "pysim.demo": "pysim.cli.demo",
    "pysim.cmd_cycles": "pysim.cli.cycles",
    "pysim.cmd_trace": "pysim.cli.trace",
    "pysim.cmd_accuracy": "pysim.cli.accuracy",
    "pysim.cmd_capture": "pysim.cli.capture",
}


class _LegacyAlias:
    """Finds ``pysim.<old>`` (and its submodules) and hands back the module at its home.

    A meta path finder and loader by protocol (find_spec, create_module, exec_module):
    the importlib.abc base classes would import importlib.resources, tempfile and
    shutil, 9.5 ms of every ``s2fp8`` start-up."""

    def find_spec(self, fullname, path=None, target=None):
        for old, new in LEGACY_MODULES.items():
            if fullname == old or fullname.startswith(old + "."):
                return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        for old, new in LEGACY_MODULES.items():
            if spec.name == old or spec.name.startswith(old + "."):
                return importlib.import_module(new + spec.name[len(old):])

    def exec_module(self, module):
        pass


if not any(isinstance(finder, _LegacyAlias) for finder in sys.meta_path):
    sys.meta_path.append(_LegacyAlias())
