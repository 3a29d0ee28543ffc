"""Every RTL regression check, collected from the check modules (``CHECK_MODULES``).

``s2fp8 regress`` runs them with a summary table; tests/test_rtl_registry.py turns each
into a pytest case, so a new check is a new test without another list to keep.
"""
from __future__ import annotations

import importlib

from .runner import Check

#: modules exposing ``CHECKS: list[Check]``, in the order the regression runs them
CHECK_MODULES = ("hw.tb.fp32_checks", "hw.tb.mac_checks", "hw.tb.array_checks",
                 "hw.tb.outpath_checks", "hw.tb.bulk_checks")


def all_checks() -> list[Check]:
    return [check for name in CHECK_MODULES for check in importlib.import_module(name).CHECKS]
