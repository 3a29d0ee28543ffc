"""Shared pytest fixtures."""
import pytest


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
