"""Every registered RTL regression check (hw.tb.registry.all_checks) as one pytest case,
at the ``full`` level of vectors (the counts live in the check's ``Check.counts``, nowhere
else): a new check in a module of ``CHECK_MODULES`` is a new test here. cocotb under
Verilator; each configuration is built once per session (and cached on disk)."""
import pytest

from hw.tb.registry import all_checks

#: the level pytest runs every check at (``s2fp8 regress`` defaults to quick)
LEVEL = "full"


@pytest.mark.parametrize("check", all_checks(), ids=lambda check: check.name)
def test_registered_check(check, rtl_build, seed):
    report = check.run(check.vectors(LEVEL), seed)
    print(f"{check.name}: {report.vectors:,} vectors, {report.mismatches} mismatches, "
          f"{report.seconds:.1f} s; " + "; ".join(report.notes))
    assert report.ok, "\n".join(report.errors)
