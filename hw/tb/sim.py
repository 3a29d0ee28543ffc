"""Build-once Verilator cache and the run step of the cocotb benches (the host side).

``build(top_name, verilog_path)`` compiles one configuration into
``sim_build/<module>-<hash>``, where the hash covers the Verilog text, the build options
and the Verilator version; when that directory already holds a finished build (a stamp
file written after the binary), nothing is rebuilt. ``run(build, test_module, ...)``
runs one cocotb test module against a build, handing it the vectors through an .npz
file named by environment variables and reading back the results .npz the bench wrote.

Waves: only when the environment has ``WAVES=1`` (a separate, traced build; the VCD lands
in the run directory, ``dump.vcd``). Seeds: passed to the bench and logged by it; cocotb's
own ``COCOTB_RANDOM_SEED`` is set to the same value.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import itertools
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.toolchain import ensure_verilator
from hw.verilog import LINT_WAIVERS, REPO_ROOT, verilog_text
from pysim.files import atomic_write

#: Default cache root (gitignored).
BUILD_ROOT = REPO_ROOT / "sim_build"
#: Verilator options on top of cocotb's own (-cc --exe --vpi --public-flat-rw ...).
#: -Wno-fatal: lint is a separate test (tests/test_rtl_fp32.py::test_lint_clean); -O3:
#: Verilator's highest optimization level (no measurable build-time cost here);
#: --no-public-flat-rw undoes cocotb's "every signal of every instance is VPI-visible",
#: whose symbol tables made the 8x8 array take ~8 minutes to compile: the benches only
#: touch top-level ports, which a generated control file makes public (``_PUBLIC_PORTS``).
BUILD_ARGS = ("-Wno-fatal", "-O3", "--no-public-flat-rw")
_PUBLIC_PORTS = 'public_flat_rw -module "{top}" -var "*"\n'
#: Environment variables through which the host talks to the bench in the simulator.
ENV_VECTORS, ENV_RESULTS, ENV_SEED, ENV_PARAMS = (
    "S2FP8_TB_VECTORS", "S2FP8_TB_RESULTS", "S2FP8_TB_SEED", "S2FP8_TB_PARAMS")
_STAMP = "s2fp8_build.json"


class SimError(RuntimeError):
    """A build or simulation did not complete (the message names the log file)."""


def waves_enabled() -> bool:
    return os.environ.get("WAVES", "0").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Build:
    top: str            # HDL top-level module name
    directory: Path     # sim_build/<top>-<hash>
    waves: bool
    seconds: float      # build time (0.0 when the cache was hit)
    cached: bool

    @property
    def binary(self) -> Path:
        return self.directory / self.top


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def build(top_name: str, verilog_path=None, build_root=None, *, waves: bool | None = None
          ) -> Build:
    """Compile ``top_name`` (from ``verilog_path``, or freshly generated from hw.verilog)
    once per distinct Verilog text; later calls with the same text reuse the binary."""
    info = ensure_verilator()
    waves = waves_enabled() if waves is None else waves
    text = (Path(verilog_path).read_text(encoding="utf-8") if verilog_path is not None
            else verilog_text(top_name))
    config = {"top": top_name, "verilator": info.version_text, "args": list(BUILD_ARGS),
              "waves": waves, "python": sys.version_info[:2],
              "waivers": LINT_WAIVERS.read_text() if LINT_WAIVERS.is_file() else ""}
    digest = hashlib.sha256((json.dumps(config, sort_keys=True) + "\n" + text).encode())
    suffix = digest.hexdigest()[:12] + ("-waves" if waves else "")
    directory = Path(build_root or BUILD_ROOT).resolve() / f"{top_name}-{suffix}"
    stamp = directory / _STAMP
    if stamp.is_file() and (directory / top_name).is_file():
        return Build(top_name, directory, waves, 0.0, True)
    directory.mkdir(parents=True, exist_ok=True)
    # Two processes (a pytest run and `s2fp8 regress`, say) building the same configuration
    # in one directory corrupt each other's precompiled headers: the second waits for the
    # first and then finds its stamp.
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and (directory / top_name).is_file():
            return Build(top_name, directory, waves, 0.0, True)
        return _build_locked(top_name, directory, text, config, waves)


def _build_locked(top_name, directory: Path, text: str, config: dict, waves: bool) -> Build:
    from cocotb_tools.runner import get_runner
    stamp = directory / _STAMP
    source = directory / f"{top_name}.v"
    atomic_write(source, text)
    log = directory / "build.log"
    public = directory / "public_ports.vlt"
    atomic_write(public, "`verilator_config\n" + _PUBLIC_PORTS.format(top=top_name))
    sources = [source, public] + ([LINT_WAIVERS] if LINT_WAIVERS.is_file() else [])
    runner = get_runner("verilator")
    start = time.monotonic()
    try:
        runner.build(sources=sources, hdl_toplevel=top_name, build_dir=directory,
                     build_args=list(BUILD_ARGS), waves=waves, log_file=log,
                     timescale=("1ns", "1ps"))
    except (RuntimeError, SystemExit) as error:
        raise SimError(f"Verilator build of {top_name} failed ({error}); log {log}:\n"
                       f"{_tail(log)}") from None
    seconds = time.monotonic() - start
    atomic_write(stamp, json.dumps({**config, "seconds": round(seconds, 1)}, indent=1) + "\n")
    return Build(top_name, directory, waves, seconds, False)


_RUN_COUNTER = itertools.count()


def save_npz(path: Path, arrays: dict) -> None:
    """np.savez to ``path`` atomically (``pysim.files``, the one atomic writer)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


@dataclass
class RunResult:
    results: dict            # arrays written by the bench
    seconds: float           # wall time of the simulator process
    run_dir: Path


def run(built: Build, test_module: str, vectors: dict, *, seed: int, params: dict | None = None,
        testcase: str | None = None, keep: bool | None = None) -> RunResult:
    """Run cocotb ``test_module`` (dotted name) on ``built`` with ``vectors`` (name -> array).

    The bench reads them with ``hw.tb.harness.load_job()`` and writes its results with
    ``save_results()``; they come back as ``RunResult.results``. The run directory (vectors,
    results, log, results.xml, dump.vcd) is removed afterwards unless waves are on,
    ``keep`` is true, or the run failed.
    """
    from cocotb_tools.runner import get_runner
    ensure_verilator()
    keep = built.waves if keep is None else keep
    run_dir = built.directory / "runs" / f"{test_module.rsplit('.', 1)[-1]}-{os.getpid()}-" \
                                         f"{next(_RUN_COUNTER)}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    vectors_path, results_path = run_dir / "vectors.npz", run_dir / "results.npz"
    save_npz(vectors_path, vectors)
    log = run_dir / "sim.log"
    env = {ENV_VECTORS: str(vectors_path), ENV_RESULTS: str(results_path), ENV_SEED: str(seed),
           ENV_PARAMS: json.dumps(params or {}),
           "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "INFO")}
    # (cocotb's runner adds os.environ and PYTHONPATH = this process's sys.path itself)
    runner = get_runner("verilator")
    start = time.monotonic()
    # cocotb's runner calls sys.exit() when a test fails under pytest: treat it as an error.
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        runner.test(test_module=test_module, hdl_toplevel=built.top, build_dir=built.directory,
                    test_dir=run_dir, testcase=testcase, seed=seed, extra_env=env,
                    hdl_toplevel_lang="verilog",
                    waves=built.waves, results_xml=str(run_dir / "results.xml"), log_file=log)
    except (RuntimeError, SystemExit) as error:
        raise SimError(f"simulation of {built.top} with {test_module} failed ({error}); "
                       f"log {log}:\n{_tail(log)}") from None
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    seconds = time.monotonic() - start
    from cocotb_tools.runner import get_results
    try:
        _, failed = get_results(run_dir / "results.xml")
    except RuntimeError as error:
        raise SimError(f"{test_module} left no results ({error}); log {log}:\n"
                       f"{_tail(log)}") from None
    if failed or not results_path.is_file():
        raise SimError(f"{test_module} on {built.top} failed; log {log}:\n{_tail(log)}")
    with np.load(results_path) as data:
        results = {name: data[name] for name in data.files}
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return RunResult(results, seconds, run_dir)
