"""Light ``s2fp8`` commands stay light: which modules they import (issue 14).

``s2fp8 --help`` and ``s2fp8 cycles`` must start in well under 0.3 s (``python -m
bench.startup`` prints the times). Time is not asserted here (the machine is shared);
what makes it is: each command runs in a fresh interpreter, and the modules it imported
are checked. matplotlib, onnx, torch, amaranth, cocotb, scipy, numba and dask each cost
0.1-2 s to import and belong only to the commands that use them.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: imported by no light command
HEAVY = ("matplotlib", "onnx", "torch", "amaranth", "cocotb", "cocotb_tools", "scipy",
         "numba", "llvmlite", "dask", "distributed", "tqdm", "ml_dtypes")

#: imported by ``s2fp8 cycles`` only with the options that need them
LIGHT_CYCLES_UNUSED = ("pysim.perf.memory", "pysim.perf.roofline", "pysim.numerics.kernels",
                       "pysim.numerics.s2fp8", "pysim.numerics.golden")

CHILD = """\
import json, sys
from pysim.cli import main
try:
    main(json.loads(sys.argv[1]))
except SystemExit:
    pass
sys.stderr.write("MODULES=" + json.dumps(sorted(sys.modules)) + "\\n")
"""


def imported_by(argv: list[str]) -> set[str]:
    """Top-level package names (and full names) imported by ``s2fp8 <argv>``."""
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(argv)],
                          capture_output=True, text=True, timeout=120)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES=")]
    assert line, f"s2fp8 {' '.join(argv)} did not finish:\n{proc.stderr[-3000:]}"
    modules = set(json.loads(line[-1][len("MODULES="):]))
    return modules | {name.split(".")[0] for name in modules}


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("startup") / "small.csv"
    path.write_text("layer,M,N,K\nconv1,64,64,64\nfc1,128,32,256\nfc2,10,20,30\n")
    return str(path)


def test_help_imports_no_heavy_module_not_even_numpy():
    modules = imported_by(["--help"])
    heavy = sorted(m for m in HEAVY + ("numpy",) if m in modules)
    assert not heavy, f"s2fp8 --help imports {heavy}: import them inside the command's run()"


@pytest.mark.parametrize("argv", [["cycles", "CSV", "--rows", "16", "--cols", "16"],
                                  ["cycles", "resnet50", "--rows", "16", "--cols", "16", "-q"]],
                         ids=["csv", "builtin-model"])
def test_cycles_imports_no_heavy_module(argv, small_csv):
    argv = [small_csv if a == "CSV" else a for a in argv]
    modules = imported_by(argv)
    assert "pysim.perf.report" in modules  # the command did its work
    heavy = sorted(m for m in HEAVY if m in modules)
    assert not heavy, f"s2fp8 {' '.join(argv)} imports {heavy}"
    # only the command that runs is imported: not the RTL (verilog, synth, regress)
    others = sorted(m for m in modules if m == "hw" or m.startswith("hw.")
                    or m in ("pysim.cli.verilog", "pysim.cli.synth", "pysim.cli.accuracy"))
    assert not others, f"s2fp8 cycles imports other commands' modules {others}"
    # nor the models of what it does not compute: no value is encoded (numba's compiled
    # kernels, 0.45 s of CPU to import) and no memory option is given (17-20 ms)
    unused = sorted(m for m in LIGHT_CYCLES_UNUSED if m in modules)
    assert not unused, f"s2fp8 {' '.join(argv)} imports {unused}"


def test_cycles_with_a_memory_option_imports_the_memory_model(small_csv):
    """The other side of the lazy import: a memory option still reaches the model."""
    modules = imported_by(["cycles", small_csv, "--rows", "16", "--cols", "16",
                           "--dram-bw", "8", "-q"])
    assert "pysim.perf.memory" in modules
