"""Shared pytest fixtures: the RTL build fixture and the one seed of the randomized tests."""
import os

import pytest

#: the seed of every randomized RTL bench and generator test, unless S2FP8_SEED is set
DEFAULT_SEED = 20240601


def _seed() -> int:
    text = os.environ.get("S2FP8_SEED", str(DEFAULT_SEED))
    try:
        return int(text)
    except ValueError:
        raise pytest.UsageError(f"S2FP8_SEED must be an integer, got {text!r}") from None


def pytest_report_header(config):
    return f"S2FP8_SEED={_seed()} (override with the environment variable S2FP8_SEED)"


@pytest.fixture(scope="session")
def seed() -> int:
    """The session's seed: ``S2FP8_SEED`` or DEFAULT_SEED, printed in the report header
    and by each test that uses it (shown with the test's output when it fails)."""
    value = _seed()
    print(f"seed {value}")
    return value


@pytest.fixture(scope="session")
def rtl_build():
    """``rtl_build(top)`` -> hw.tb.sim.Build: the Verilator build of a registered top-level
    block (hw.verilog.TOPS), built at most once per session (and cached on disk in
    sim_build/ across sessions, keyed by a hash of the Verilog). Fails when no Verilator:
    it is a dependency of the project, so its absence is a broken install, not a skip."""
    from hw.tb import runner
    from hw.toolchain import ToolchainError, ensure_verilator
    try:
        ensure_verilator()
    except ToolchainError as error:
        pytest.fail(str(error))
    return runner.get_build
